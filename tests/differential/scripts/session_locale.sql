-- lc_messages (the language of error messages) and lc_time_names (names of days and
-- months) set once hold for every later statement.
SET lc_time_names = 'fr_FR';
SELECT @@lc_time_names;
SELECT DATE_FORMAT('2001-01-01', '%W %e %M %Y') AS french, MONTHNAME('2001-02-01'), DAYNAME('2001-02-01');
SELECT 'another statement' AS stage;
SELECT DATE_FORMAT('2001-07-14', '%a %b %W %M') AS still_french;
SET lc_time_names = 'ru_RU';
SELECT DATE_FORMAT('2001-03-08', '%W %e %M %Y') AS russian;
SET lc_time_names = 'de_DE';
SELECT DATE_FORMAT('2001-12-24', '%W, %e. %M %Y') AS german;
SET lc_messages = 'de_DE';
SELECT @@lc_messages;
SELECT * FROM lc_no_such_table;
SELECT 'another statement' AS stage;
SELECT lc_no_such_column;
SET lc_messages = 'fr_FR';
SELECT * FROM lc_no_such_table;
SELEC 1;
SET lc_messages = 'ja_JP';
SELECT * FROM lc_no_such_table;
SET lc_messages = 'no_SUCH';
SET lc_messages = DEFAULT, lc_time_names = DEFAULT;
SELECT @@lc_messages, @@lc_time_names, DATE_FORMAT('2001-01-01', '%W %M');
SELECT * FROM lc_no_such_table;
