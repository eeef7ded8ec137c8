-- Warnings and notes, shown by --show-warnings after each statement, and read back with
-- SHOW WARNINGS, SHOW COUNT(*) WARNINGS, @@warning_count and GET DIAGNOSTICS.
DROP TABLE IF EXISTS wn_missing;
DROP TABLE IF EXISTS wn_missing, wn_missing_too;
SHOW WARNINGS;
SHOW COUNT(*) WARNINGS;
SELECT @@warning_count, @@error_count;
DROP VIEW IF EXISTS wn_no_view;
DROP PROCEDURE IF EXISTS wn_no_procedure;
CREATE TABLE wn_t (id INT PRIMARY KEY, short VARCHAR(3), n TINYINT, d DATE);
CREATE TABLE IF NOT EXISTS wn_t (id INT);

SET SESSION sql_mode = '';
INSERT INTO wn_t VALUES (1, 'truncated', 1000, '2001-02-30');
SHOW WARNINGS;
SELECT * FROM wn_t ORDER BY id;
INSERT INTO wn_t VALUES (2, 'ok', -1000, 'not a date'), (3, 'abcd', 1, '2001-01-01');
SHOW WARNINGS LIMIT 1;
SHOW WARNINGS LIMIT 1, 10;
SELECT @@warning_count;
UPDATE wn_t SET short = CONCAT(short, 'xyz') ORDER BY id;
SELECT * FROM wn_t ORDER BY id;
SELECT 1 / 0, 5 DIV 0, MOD(5, 0);
SET SESSION sql_mode = 'ERROR_FOR_DIVISION_BY_ZERO';
SELECT 1 / 0 AS division;
SHOW WARNINGS;
SELECT CAST('12abc' AS SIGNED), CAST('abc' AS DOUBLE), CAST('2001-13-01' AS DATE);
SELECT 'x' + 1, '1e400' + 0;
SELECT CONVERT('Привет' USING latin1);
SELECT DATE_ADD('2001-01-01', INTERVAL 1 FORTNIGHT_DOES_NOT_EXIST);
SELECT 'no warnings here' AS stage;
SHOW WARNINGS;
SELECT @@warning_count;

-- Many warnings at once: max_error_count limits what SHOW WARNINGS keeps, not the count.
SET SESSION max_error_count = 3;
INSERT INTO wn_t VALUES (10, 'aaaa', 1, NULL), (11, 'bbbb', 1, NULL), (12, 'cccc', 1, NULL),
  (13, 'dddd', 1, NULL), (14, 'eeee', 1, NULL);
SHOW COUNT(*) WARNINGS;
SHOW WARNINGS;
SET SESSION max_error_count = DEFAULT;
SET SESSION sql_mode = DEFAULT;

-- A warning, then an unrelated statement, then the diagnostics area of the second one.
SELECT CAST('9x' AS UNSIGNED);
GET DIAGNOSTICS @wn_count = NUMBER;
GET DIAGNOSTICS CONDITION 1 @wn_sqlstate = RETURNED_SQLSTATE, @wn_errno = MYSQL_ERRNO,
  @wn_text = MESSAGE_TEXT;
SELECT @wn_count, @wn_sqlstate, @wn_errno, @wn_text;
SIGNAL SQLSTATE '01000' SET MESSAGE_TEXT = 'a warning raised by SIGNAL';
SHOW WARNINGS;
DROP TABLE wn_t;
DROP TABLE IF EXISTS wn_t;
