-- max_statement_time set once limits every later statement of the session.
SET max_statement_time = 0.05;
SELECT @@max_statement_time;
SELECT 'another statement' AS stage;
SELECT SLEEP(2) AS interrupted;
SELECT 'the session goes on' AS stage, @@max_statement_time;
SELECT SLEEP(2) AS interrupted_again;
SET max_statement_time = 0;
SELECT SLEEP(0.1) AS not_interrupted;
SELECT @@max_statement_time;
