-- OUT and INOUT parameters of a procedure, called with user variables directly and
-- through a prepared CALL, and a stored function.
CREATE TABLE op_t (id INT PRIMARY KEY, v VARCHAR(10));
INSERT INTO op_t VALUES (1, 'a'), (2, 'b'), (3, 'c');
DELIMITER //
CREATE PROCEDURE op_p(IN in_id INT, OUT out_v VARCHAR(10), INOUT counter INT, OUT out_at DATETIME(3))
BEGIN
  SELECT v INTO out_v FROM op_t WHERE id = in_id;
  SET counter = counter + 1;
  SET out_at = '2001-02-03 04:05:06.789';
END//
CREATE PROCEDURE op_with_result(IN in_id INT, OUT total INT)
BEGIN
  SELECT id, v FROM op_t WHERE id <= in_id ORDER BY id;
  SELECT SUM(id) INTO total FROM op_t WHERE id <= in_id;
END//
CREATE PROCEDURE op_not_found(OUT out_v VARCHAR(10))
BEGIN
  SELECT v INTO out_v FROM op_t WHERE id = 99;
END//
CREATE FUNCTION op_f(a INT) RETURNS VARCHAR(20) DETERMINISTIC
  RETURN CONCAT('f(', a, ')')//
DELIMITER ;

SET @op_counter = 10;
CALL op_p(2, @op_v, @op_counter, @op_at);
SELECT @op_v, @op_counter, @op_at;
CALL op_p(3, @op_v, @op_counter, @op_at);
SELECT @op_v, @op_counter;
CALL op_with_result(2, @op_total);
SELECT @op_total;
CALL op_not_found(@op_missing);
SELECT @op_missing;
CALL op_p(1, 'literal', @op_counter, @op_at);
PREPARE op_call FROM 'CALL op_p(?, ?, ?, ?)';
SET @op_id = 1;
EXECUTE op_call USING @op_id, @op_v2, @op_counter, @op_at2;
SELECT @op_v2, @op_counter, @op_at2;
PREPARE op_call2 FROM 'CALL op_with_result(?, ?)';
EXECUTE op_call2 USING 3, @op_total2;
SELECT @op_total2;
DEALLOCATE PREPARE op_call;
DEALLOCATE PREPARE op_call2;
SELECT op_f(7), op_f(NULL);
SELECT id, op_f(id) FROM op_t ORDER BY id;
SET @op_from_function = op_f(42);
SELECT @op_from_function, @op_never_set;
DROP PROCEDURE op_p;
DROP PROCEDURE op_with_result;
DROP PROCEDURE op_not_found;
DROP FUNCTION op_f;
DROP TABLE op_t;
