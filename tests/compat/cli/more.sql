-- Sourced from script.sql.
SELECT name FROM cli_compat WHERE id = 2\G
SHOW WARNINGS;
