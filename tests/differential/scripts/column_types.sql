-- Every common column type, at its limits and as NULL: values and column metadata
-- (type, collation, length, decimals, flags, extended type info) as the client sees them.
CREATE TABLE ct_ints (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED,
  si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  zf INT(6) UNSIGNED ZEROFILL,
  flag BOOLEAN
);
INSERT INTO ct_ints VALUES
  (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0, FALSE),
  (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
   9223372036854775807, 18446744073709551615, 42, TRUE),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT * FROM ct_ints ORDER BY id;

CREATE TABLE ct_numbers (
  id INT PRIMARY KEY,
  d DECIMAL(10,2), du DECIMAL(10,2) UNSIGNED, dwide DECIMAL(65,30), dint DECIMAL(20,0),
  f FLOAT, fm FLOAT(7,3), dbl DOUBLE, dm DOUBLE(12,4),
  b1 BIT(1), b8 BIT(8), b64 BIT(64)
);
INSERT INTO ct_numbers VALUES
  (1, -12345678.90, 0.00, 12345678901234567890.123456789012345678901234567890,
   -99999999999999999999, -3.40282e38, -9999.999, -1.7976931348623157e308, 12345678.1234,
   b'0', b'00000000', b'0'),
  (2, 99999999.99, 99999999.99, -0.000000000000000000000000000001,
   99999999999999999999, 1.17549e-38, 1234.5, 2.2250738585072014e-308, -0.0001,
   b'1', b'10100101', b'1111111111111111111111111111111111111111111111111111111111111111'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT id, d, du, dwide, dint, f, fm, dbl, dm, b1 + 0, BIN(b8), HEX(b64) FROM ct_numbers ORDER BY id;
-- BIT columns as they are sent: raw bytes.
SELECT id, b1, b8, b64 FROM ct_numbers ORDER BY id;
SELECT 1.5 + 1, 1e0 / 3, 10 DIV 3, 7 % 3, -0.0, 0.1 + 0.2, 0.1e0 + 0.2e0, ~0, -~0;
SELECT CAST(1 AS UNSIGNED) - 2;

CREATE TABLE ct_temporal (
  id INT PRIMARY KEY,
  d DATE, t TIME, t6 TIME(6), dt DATETIME, dt3 DATETIME(3), dt6 DATETIME(6),
  ts TIMESTAMP(6) NULL DEFAULT NULL, y YEAR
);
INSERT INTO ct_temporal VALUES
  (1, '1000-01-01', '-838:59:59', '-838:59:58.999999', '1000-01-01 00:00:00',
   '1000-01-01 00:00:00.001', '1000-01-01 00:00:00.000001', '1970-01-01 00:00:01.000000', 1901),
  (2, '9999-12-31', '838:59:59', '12:34:56.789012', '9999-12-31 23:59:59',
   '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155),
  (3, '2024-02-29', '00:00:00', '00:00:00.5', '2024-02-29 12:00:00', '2024-02-29 12:00:00.5',
   '2024-02-29 12:00:00.25', '2024-02-29 12:00:00.125', 0),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT * FROM ct_temporal ORDER BY id;
SELECT DATE '2001-02-03', TIME '04:05:06.7', TIMESTAMP '2001-02-03 04:05:06.789',
  DATE_ADD('2001-02-03', INTERVAL 1 MONTH), TIMEDIFF('10:00:00', '11:30:00.5'),
  CAST('2001-02-03 04:05:06.123456' AS DATETIME(6));

CREATE TABLE ct_strings (
  id INT PRIMARY KEY,
  c CHAR(5), vc VARCHAR(20), tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  bn BINARY(4), vb VARBINARY(8),
  e ENUM('small', 'medium', 'large'), s SET('red', 'green', 'blue'),
  j JSON
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
INSERT INTO ct_strings VALUES
  (1, 'ab', 'variable', 'tiny', 'text', 'medium', 'long', 'tb', 'blob', 'mb', 'lb',
   'ab', 'vb', 'medium', 'red,blue', '{"a": 1, "b": [true, null, "x"]}'),
  (2, '', '', '', '', '', '', '', '', '', '', '', '', 'small', '', '[]'),
  (3, 'x    ', '  padded  ', REPEAT('t', 255), REPEAT('text ', 100), 'm', 'l',
   X'00FF7F', X'0001020304', X'DEADBEEF', X'CAFE', X'00010203', X'0000',
   'large', 'green,red', '"just a string"'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL);
SELECT id, c, CONCAT('[', c, ']') AS c_bracketed, vc, tt, tx, mt, lt, e, s, j
  FROM ct_strings ORDER BY id;
SELECT id, HEX(tb), HEX(bl), HEX(mb), HEX(lb), HEX(bn), HEX(vb) FROM ct_strings ORDER BY id;
-- Binary columns as they are sent: raw bytes, NUL included.
SELECT id, tb, bl, bn, vb FROM ct_strings ORDER BY id;
SELECT id, e + 0 AS enum_index, s + 0 AS set_bits, JSON_TYPE(j), JSON_EXTRACT(j, '$.b[0]')
  FROM ct_strings ORDER BY id;
SELECT JSON_OBJECT('k', 1, 'l', JSON_ARRAY(1, 2)), JSON_VALID('{'), JSON_QUERY('{"a":[1]}', '$.a');

CREATE TABLE ct_other (
  id INT PRIMARY KEY, ip INET6, u UUID, pt POINT, g GEOMETRY
);
INSERT INTO ct_other VALUES
  (1, '::1', '123e4567-e89b-12d3-a456-426655440000', POINT(1, 2),
   ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)')),
  (2, '::ffff:192.0.2.1', '00000000-0000-0000-0000-000000000000', POINT(-1.5, 2.25),
   ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))')),
  (3, NULL, NULL, NULL, NULL);
SELECT id, ip, u, ST_AsText(pt), ST_AsText(g) FROM ct_other ORDER BY id;
SELECT id, HEX(pt), pt FROM ct_other ORDER BY id;
SELECT NULL, NULL IS NULL, COALESCE(NULL, 'fallback'), CAST(NULL AS DATE), NULLIF(1, 1);

DROP TABLE ct_ints, ct_numbers, ct_temporal, ct_strings, ct_other;
