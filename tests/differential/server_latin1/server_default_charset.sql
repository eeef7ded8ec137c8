-- Run against a server started with character_set_server=latin1, by a client that names
-- no character set of its own: what the session gets from the handshake (its
-- character_set_* variables, the collation of literals and new tables, the
-- character_set_client a view is recorded with) must be what the server itself gives.
SELECT @@character_set_client, @@character_set_connection, @@character_set_results,
  @@collation_connection;
SELECT @@character_set_server, @@collation_server, @@character_set_database;
SELECT 'literal' AS literal, CHARSET('literal'), COLLATION('literal'), COERCIBILITY('literal');
SELECT 'a' COLLATE latin1_german1_ci AS german, 'ß' = 'ss' COLLATE latin1_german1_ci AS eq;
CREATE TABLE hs_t (id INT PRIMARY KEY, name VARCHAR(20), u8 VARCHAR(20) CHARACTER SET utf8mb4);
SHOW CREATE TABLE hs_t;
INSERT INTO hs_t VALUES (1, 'café', 'café'), (2, 'Grüße', 'Grüße'), (3, '€uro', '€uro');
SELECT * FROM hs_t ORDER BY id;
SELECT id, HEX(name), HEX(u8), LENGTH(name), CHAR_LENGTH(u8) FROM hs_t ORDER BY id;
SELECT id, name FROM hs_t WHERE name = 'CAFÉ' ORDER BY id;
INSERT INTO hs_t VALUES (1, 'dupé', 'dupé');
SELECT * FROM hs_no_such_tablé;
CREATE VIEW hs_v AS SELECT id, name, 'é' AS accent FROM hs_t;
SHOW CREATE VIEW hs_v;
SELECT VIEW_DEFINITION, CHARACTER_SET_CLIENT, COLLATION_CONNECTION
  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'hs_v';
SELECT * FROM hs_v ORDER BY id;
DELIMITER //
CREATE PROCEDURE hs_p() SELECT 'é' AS accent, CHARSET('é') AS cs//
DELIMITER ;
SELECT ROUTINE_NAME, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION
  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_NAME = 'hs_p';
CALL hs_p();
SELECT 'another statement' AS stage, @@character_set_client, @@collation_connection;
DROP PROCEDURE hs_p;
DROP VIEW hs_v;
DROP TABLE hs_t;
