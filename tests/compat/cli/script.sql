-- Run by tests/compat/test_cli.py with the mariadb client's `source`, through proxyd and
-- directly; the two outputs must be the same.
DROP TABLE IF EXISTS cli_compat;
CREATE TABLE cli_compat (id INT PRIMARY KEY, name VARCHAR(30), price DECIMAL(8,2), note TEXT)
  DEFAULT CHARSET = utf8mb4;
INSERT INTO cli_compat VALUES (1, 'Zoë 🐘', 12.50, NULL), (2, 'tab\there', 0.10, 'multi\nline');
SELECT * FROM cli_compat ORDER BY id\G
SELECT COUNT(*) AS n, SUM(price) AS total FROM cli_compat;
SET @x = 41;
SELECT @x + 1 AS answer\G
source tests/compat/cli/more.sql
DROP TABLE cli_compat;
