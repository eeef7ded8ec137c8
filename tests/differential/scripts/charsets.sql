-- Character sets: columns in latin1, utf8mb4 (4-byte characters too) and cp1251, the
-- connection's character set changed with SET NAMES and SET character_set_*, and the
-- metadata (collation id, length) that follows it.
CREATE TABLE cs_text (
  id INT PRIMARY KEY,
  l1 VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
  l1g VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_german1_ci,
  u8 VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  u3 VARCHAR(20) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci,
  cy VARCHAR(20) CHARACTER SET cp1251 COLLATE cp1251_general_ci,
  bin VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin
);
INSERT INTO cs_text VALUES
  (1, 'ascii', 'ascii', 'ascii', 'ascii', 'ascii', 'ascii'),
  (2, 'café', 'Straße', 'naïve 日本語', 'Ærø', 'Привет', 'ÀÉÎ'),
  (3, 'Ü€', 'ÄÖÜ', '😀 𝄞 𠜎', 'ĳ', 'ёЁ №', '😀'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT @@character_set_client, @@character_set_connection, @@character_set_results,
  @@collation_connection;
SELECT * FROM cs_text ORDER BY id;
SELECT id, HEX(l1), HEX(l1g), HEX(u8), HEX(u3), HEX(cy), CHAR_LENGTH(u8), LENGTH(u8)
  FROM cs_text ORDER BY id;
SELECT id, u8 FROM cs_text ORDER BY u8, id;
SELECT id, l1g FROM cs_text WHERE l1g = 'STRASSE' ORDER BY id;
SELECT 'ä' = 'a' COLLATE utf8mb4_general_ci AS general, 'ä' = 'a' COLLATE utf8mb4_bin AS bin;
SELECT 'a' COLLATE latin1_german1_ci AS c;
SELECT _latin1 X'E9' AS latin1_e_acute, _cp1251 X'CFF0E8E2E5F2' AS cp1251_privet,
  CONVERT('Привет' USING cp1251) AS converted, CHARSET(CONVERT('x' USING cp1251));
-- utf8mb3 cannot hold a 4-byte character: strict mode refuses the row.
INSERT INTO cs_text (id, u3) VALUES (5, 'a😀b');
SELECT id, u3, HEX(u3) FROM cs_text WHERE id = 5;

-- The connection's character set moves with the session.
SET NAMES latin1;
SELECT @@character_set_client, @@character_set_results, @@collation_connection;
SELECT id, l1, u8, cy FROM cs_text ORDER BY id;
SELECT 'abc' AS literal, CHARSET('abc'), COLLATION('abc');
SELECT id, l1 FROM cs_text ORDER BY id;
SET NAMES cp1251 COLLATE cp1251_bulgarian_ci;
SELECT @@character_set_client, @@collation_connection, COLLATION('x');
SELECT id, cy FROM cs_text ORDER BY id;
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
SELECT @@collation_connection, COLLATION('x');
SELECT id, u8 FROM cs_text ORDER BY id;
SET character_set_results = binary;
SELECT id, l1, cy, u8 FROM cs_text ORDER BY id;
SET character_set_results = NULL;
SELECT id, l1, cy FROM cs_text ORDER BY id;
SELECT @@character_set_results;
SET character_set_results = utf8mb4, collation_connection = utf8mb4_general_ci;
SELECT @@character_set_client, @@character_set_connection, @@character_set_results,
  @@collation_connection;
SET CHARACTER SET cp1251;
SELECT @@character_set_client, @@character_set_connection, @@character_set_results;
SELECT id, cy FROM cs_text ORDER BY id;
SET NAMES utf8mb4;
SELECT 'after SET NAMES utf8mb4' AS stage, @@character_set_client, @@collation_connection;
SELECT id, u8, cy FROM cs_text ORDER BY id;
DROP TABLE cs_text;
