-- A frozen clock: SET timestamp holds for every later statement of the session.
SET timestamp = UNIX_TIMESTAMP('2001-01-01 10:20:30');
SELECT NOW();
SELECT NOW(), CURDATE(), CURTIME(), UNIX_TIMESTAMP();
SELECT 'another statement' AS stage;
SELECT NOW() AS still_frozen, CURRENT_TIMESTAMP(3), UTC_DATE() >= '2001-01-01' AS utc_date_set;
CREATE TABLE st_t (id INT PRIMARY KEY, at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
  dt DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6));
INSERT INTO st_t (id) VALUES (1);
SELECT id, at, dt FROM st_t ORDER BY id;
SELECT @@timestamp, @@session.timestamp;
SET timestamp = 978344430.123456;
SELECT NOW(6), SYSDATE() > '2020-01-01' AS sysdate_ignores_it;
INSERT INTO st_t (id) VALUES (2);
SELECT id, at, dt FROM st_t ORDER BY id;
SELECT NOW(6);
DO 1;
SELECT NOW(6), @@timestamp;
SET timestamp = 0;
SELECT YEAR(NOW()) > 2020 AS back_to_the_clock;
SET timestamp = 86400 * 365;
SELECT NOW(), FROM_UNIXTIME(@@timestamp);
SELECT NOW();
SET timestamp = DEFAULT;
SELECT YEAR(NOW()) > 2020 AS back_to_the_clock;
DROP TABLE st_t;
