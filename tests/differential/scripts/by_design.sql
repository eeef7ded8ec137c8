-- Values that proxyd changes on purpose, printed so that every mask in BY_DESIGN
-- (test_differential.py) is exercised and still needed. Vertical output (\G) keeps
-- column widths out of it: it carries no column metadata and no padding.
SHOW SESSION STATUS WHERE Variable_name IN ('Com_select', 'Com_set_option', 'Com_show_status')\G
SELECT 1 AS one;
SHOW SESSION STATUS WHERE Variable_name IN ('Com_select', 'Com_set_option', 'Com_show_status')\G
SELECT CONNECTION_ID() AS connection_id\G
SELECT CONNECTION_ID() = CONNECTION_ID() AS stable, CONNECTION_ID() > 0 AS positive;
