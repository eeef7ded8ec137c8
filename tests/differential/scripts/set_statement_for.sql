-- SET STATEMENT ... FOR changes variables for that one statement only: nothing persists.
CREATE TABLE ss_t (id INT PRIMARY KEY, word VARCHAR(10));
INSERT INTO ss_t VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma');
SET STATEMENT div_precision_increment = 2 FOR SELECT 1 / 3;
SELECT 1 / 3 AS default_precision, @@div_precision_increment;
SET STATEMENT time_zone = '+09:00' FOR SELECT FROM_UNIXTIME(0);
SELECT @@time_zone = @@global.time_zone AS tz_unchanged;
SET STATEMENT sql_mode = 'PIPES_AS_CONCAT' FOR SELECT 'a' || 'b' AS piped;
SELECT 'a' || 'b' AS not_piped, @@sql_mode = @@global.sql_mode AS mode_unchanged;
SET STATEMENT lc_time_names = 'fr_FR' FOR SELECT DAYNAME('2001-01-01');
SELECT DAYNAME('2001-01-01');
SET STATEMENT group_concat_max_len = 5 FOR SELECT GROUP_CONCAT(word ORDER BY id) FROM ss_t;
SELECT GROUP_CONCAT(word ORDER BY id) FROM ss_t;
SET STATEMENT max_statement_time = 0.05 FOR SELECT SLEEP(2) AS interrupted;
SELECT SLEEP(0.1) AS not_interrupted, @@max_statement_time;
SET STATEMENT sql_select_limit = 1 FOR SELECT id FROM ss_t ORDER BY id;
SELECT id FROM ss_t ORDER BY id;
SET STATEMENT timestamp = 978344430 FOR SELECT NOW();
SELECT YEAR(NOW()) > 2020 AS clock_runs;
SET STATEMENT div_precision_increment = 1, lc_time_names = 'de_DE' FOR
  SELECT 2 / 3, MONTHNAME('2001-03-01');
SELECT 2 / 3, MONTHNAME('2001-03-01');
-- Inside a session setting, SET STATEMENT overrides and then restores the session's value.
SET div_precision_increment = 6;
SET STATEMENT div_precision_increment = 1 FOR SELECT 1 / 7;
SELECT 1 / 7 AS session_precision, @@div_precision_increment;
SET div_precision_increment = DEFAULT;
SET STATEMENT no_such_variable = 1 FOR SELECT 1;
SET STATEMENT character_set_client = latin1 FOR SELECT 1;
DROP TABLE ss_t;
