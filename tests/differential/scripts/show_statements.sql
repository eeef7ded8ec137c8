-- SHOW statements: their own result set shapes and column metadata.
CREATE TABLE sh_t (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT,
  name VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL DEFAULT '' COMMENT 'display name',
  price DECIMAL(8,2) DEFAULT NULL,
  created DATETIME(3) NOT NULL DEFAULT '2001-01-01 00:00:00.000',
  kind ENUM('a', 'b') NOT NULL DEFAULT 'a',
  PRIMARY KEY (id),
  UNIQUE KEY sh_name (name),
  KEY sh_kind_price (kind, price)
) ENGINE=InnoDB DEFAULT CHARSET=latin1 COMMENT='for SHOW';
INSERT INTO sh_t (name, price) VALUES ('x', 1.50), ('y', NULL);
CREATE VIEW sh_v AS SELECT id, name FROM sh_t WHERE price IS NOT NULL;
-- Routines record when they were created, which SHOW PROCEDURE STATUS shows: a fixed time.
DELIMITER //
SET STATEMENT timestamp = 978307200 FOR CREATE PROCEDURE sh_p(IN a INT, OUT b VARCHAR(10)) COMMENT 'shown'
BEGIN
  SET b = CONCAT('got ', a);
END//
SET STATEMENT timestamp = 978307200 FOR CREATE FUNCTION sh_f(a INT) RETURNS INT DETERMINISTIC RETURN a * 2//
DELIMITER ;

SHOW CREATE TABLE sh_t;
SHOW CREATE VIEW sh_v;
SHOW CREATE PROCEDURE sh_p;
SHOW CREATE FUNCTION sh_f;
SHOW COLUMNS FROM sh_t;
SHOW FULL COLUMNS FROM sh_t;
SHOW COLUMNS FROM sh_t LIKE 'pr%';
-- Fresh statistics, so that the cardinality shown does not depend on when InnoDB computes them.
ANALYZE TABLE sh_t;
SHOW INDEX FROM sh_t;
SHOW TABLES;
SHOW FULL TABLES WHERE Table_type = 'VIEW';
SHOW DATABASES LIKE 'information_schema';
SHOW CHARACTER SET LIKE 'latin1';
SHOW COLLATION WHERE Collation IN ('latin1_swedish_ci', 'utf8mb4_unicode_ci', 'cp1251_general_ci');
SHOW SESSION VARIABLES LIKE 'sql_mode';
SHOW SESSION VARIABLES LIKE 'character_set_c%';
SHOW SESSION VARIABLES WHERE Variable_name IN ('autocommit', 'time_zone', 'tx_isolation',
  'lc_time_names', 'div_precision_increment', 'group_concat_max_len', 'max_statement_time',
  'collation_connection', 'sql_select_limit', 'big_tables');
SHOW VARIABLES LIKE 'no_such_variable%';
SHOW ENGINES;
SHOW ERRORS;
SELECT 1 / 0;
SHOW WARNINGS;
SELECT * FROM sh_no_such_table;
SHOW ERRORS;
SHOW COUNT(*) ERRORS;
SHOW PROCEDURE STATUS WHERE Db = DATABASE() AND Name = 'sh_p';
SHOW GRANTS FOR CURRENT_USER;
SHOW PRIVILEGES;
SHOW OPEN TABLES FROM mysql LIKE 'no_such_table';
SHOW TABLE STATUS LIKE 'no_such_table';
DESCRIBE sh_t;
DESC sh_v;
EXPLAIN SELECT * FROM sh_t WHERE id = 1;
SELECT * FROM sh_v ORDER BY id;
DROP VIEW sh_v;
DROP PROCEDURE sh_p;
DROP FUNCTION sh_f;
DROP TABLE sh_t;
