-- Procedures whose CALL answers with several result sets, an empty one, and results
-- followed by an error: every answer shape of a CALL must end where the server ends it.
CREATE TABLE pm_rows (id INT PRIMARY KEY, label VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO pm_rows VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE pm_cursor (a INT);

DELIMITER //
CREATE PROCEDURE pm_three_results()
BEGIN
  SELECT id, label FROM pm_rows ORDER BY id;
  SELECT COUNT(*) AS n FROM pm_rows;
  SELECT label FROM pm_rows WHERE id > 100 ORDER BY id;
END//

CREATE PROCEDURE pm_loop(IN times INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < times DO
    SELECT i AS iteration, i * i AS square;
    SET i = i + 1;
  END WHILE;
END//

CREATE PROCEDURE pm_result_then_signal()
BEGIN
  SELECT 'before the error' AS stage;
  SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'raised after a result', MYSQL_ERRNO = 1644;
END//

-- The case from issue 9: a result set from the handler, then ERROR 1329 at once.
CREATE PROCEDURE pm_resignal()
BEGIN
  DECLARE x INT;
  DECLARE cur CURSOR FOR SELECT * FROM pm_cursor;
  DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN SELECT 'before RESIGNAL'; RESIGNAL; END;
  OPEN cur; FETCH cur INTO x; CLOSE cur;
END//

CREATE PROCEDURE pm_handled()
BEGIN
  DECLARE done INT DEFAULT 0;
  DECLARE v VARCHAR(20);
  DECLARE cur CURSOR FOR SELECT label FROM pm_rows ORDER BY id;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
  OPEN cur;
  fetching: LOOP
    FETCH cur INTO v;
    IF done THEN LEAVE fetching; END IF;
    SELECT v AS fetched;
  END LOOP;
  CLOSE cur;
  SELECT 'after the cursor' AS stage;
END//

CREATE PROCEDURE pm_error_in_middle()
BEGIN
  SELECT 'first' AS stage;
  SELECT no_such_column FROM pm_rows;
  SELECT 'never' AS stage;
END//

CREATE PROCEDURE pm_warning_then_result()
BEGIN
  DECLARE CONTINUE HANDLER FOR SQLEXCEPTION
    SELECT 'handled' AS stage;
  INSERT INTO pm_rows VALUES (1, 'duplicate');
  SELECT id FROM pm_rows ORDER BY id;
  SIGNAL SQLSTATE '01000' SET MESSAGE_TEXT = 'a warning at the end';
END//

CREATE PROCEDURE pm_no_result()
BEGIN
  UPDATE pm_rows SET label = UPPER(label) WHERE id = 2;
END//

CREATE PROCEDURE pm_nested()
BEGIN
  SELECT 'outer' AS stage;
  CALL pm_three_results();
  CALL pm_loop(2);
END//

CREATE PROCEDURE pm_recurse(IN depth INT)
BEGIN
  SELECT depth;
  CALL pm_recurse(depth + 1);
END//
DELIMITER ;

CALL pm_three_results();
SELECT 'after three results' AS stage;
CALL pm_loop(4);
CALL pm_loop(0);
CALL pm_result_then_signal();
SELECT 'after result then signal' AS stage;
CALL pm_resignal();
SELECT 'after RESIGNAL' AS stage;
CALL pm_resignal();
CALL pm_handled();
CALL pm_error_in_middle();
SELECT 'after error in the middle' AS stage;
CALL pm_warning_then_result();
SHOW WARNINGS;
CALL pm_no_result();
SELECT id, label FROM pm_rows ORDER BY id;
CALL pm_nested();
-- max_sp_recursion_depth is 0: the first nested call is refused after one result.
CALL pm_recurse(1);
SET max_sp_recursion_depth = 3;
CALL pm_recurse(1);
SET max_sp_recursion_depth = DEFAULT;
SELECT 'the end' AS stage;

DROP PROCEDURE pm_three_results;
DROP PROCEDURE pm_loop;
DROP PROCEDURE pm_result_then_signal;
DROP PROCEDURE pm_resignal;
DROP PROCEDURE pm_handled;
DROP PROCEDURE pm_error_in_middle;
DROP PROCEDURE pm_warning_then_result;
DROP PROCEDURE pm_no_result;
DROP PROCEDURE pm_nested;
DROP PROCEDURE pm_recurse;
DROP TABLE pm_rows, pm_cursor;
