"""Which statements may read on a replica (``backend.reads: replicas``).

A pure function over a statement's text. Only what proxyd can tell is a read goes to a
replica: one ``SELECT`` (or ``SHOW``, ``DESCRIBE``, ``EXPLAIN``) without a locking clause,
without ``INTO``, without user variables, calling only built-in functions known to have
no side effects and to answer the same on any server. Anything else (a stored function,
which may write; ``GET_LOCK``; ``NEXTVAL``; ``LAST_INSERT_ID()``; a statement proxyd cannot
read) goes to the primary, as does every statement carrying ``/* proxyd:primary */``.
"""

from __future__ import annotations

import re

from proxyd.session.statements import words

PRIMARY_HINT = b"proxyd:primary"

_LEADING = re.compile(rb"^(?:\s|\(|/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)*", re.S)
_READS = (b"SELECT", b"SHOW", b"DESCRIBE", b"DESC ", b"EXPLAIN")
_NOT_HERE = re.compile(  # no leading \b: it would cost a test at every byte
    rb"FOR\s+(?:UPDATE|SHARE)\b|LOCK\s+IN\s+SHARE\s+MODE|INTO\b"
    rb"|NEXT\s+VALUE\s+FOR\b|PREVIOUS\s+VALUE\s+FOR\b|`\s*\("
)
_USER_VARIABLE = re.compile(rb"(?<!@)@(?!@)")
# What any of the checks below looks for; a statement without any passes at once. (Every
# alternative of _NOT_HERE holds FOR, LOCK, INTO or a backquote; SHOW is checked by name.)
_SUSPECT = re.compile(rb"[@`(;]|FOR|LOCK|INTO|^SHOW")
# SHOW statements whose answer is one server's own, or the client's previous statement's.
_SHOW_ELSEWHERE = re.compile(
    rb"^SHOW\s+(?:FULL\s+|GLOBAL\s+|SESSION\s+)?(?:MASTER|SLAVE|REPLICA|BINLOG|BINARY|RELAYLOG"
    rb"|PROCESSLIST|WARNINGS|ERRORS|COUNT|PROFILE|ENGINE|ENGINES|STATUS|ALL\s+SLAVES)\b"
)
# The name right before a "(" (within the 64 bytes before it, which a name fits in).
_NAME_AT_END = re.compile(rb"([.`]?)([A-Z_][A-Z0-9_$]*)\s*$")

# Words before "(" that are syntax, not calls.
_SYNTAX = frozenset(
    b"""IN EXISTS ON AND OR NOT XOR FROM JOIN USING WHERE SELECT AS OVER BY INTERVAL ALL ANY
    SOME WHEN THEN ELSE CASE UNION EXCEPT INTERSECT HAVING LIMIT VALUES VALUE INDEX KEY IS
    LIKE BETWEEN DISTINCT ROW WITH LATERAL ROWS PARTITION DIV MOD AGAINST MATCH OFFSET
    DECIMAL DEC NUMERIC CHAR VARCHAR NCHAR SIGNED UNSIGNED INT INTEGER DOUBLE FLOAT DATETIME
    TIME DATE TIMESTAMP BINARY""".split()
)
# Built-in functions with no side effects whose answer does not depend on which server of
# a replication set runs them.
_PURE = frozenset(
    b"""COUNT SUM AVG MIN MAX GROUP_CONCAT STD STDDEV STDDEV_POP STDDEV_SAMP VARIANCE VAR_POP
    VAR_SAMP BIT_AND BIT_OR BIT_XOR JSON_ARRAYAGG JSON_OBJECTAGG ROW_NUMBER RANK DENSE_RANK
    PERCENT_RANK CUME_DIST NTILE LAG LEAD FIRST_VALUE LAST_VALUE NTH_VALUE MEDIAN
    PERCENTILE_CONT PERCENTILE_DISC ABS ACOS ASIN ATAN ATAN2 CEIL CEILING CONV COS COT CRC32
    DEGREES EXP FLOOR GREATEST LEAST LN LOG LOG10 LOG2 OCT PI POW POWER RADIANS RAND ROUND
    SIGN SIN SQRT TAN TRUNCATE ASCII BIN BIT_LENGTH BIT_COUNT CHAR_LENGTH CHARACTER_LENGTH
    CHR CONCAT CONCAT_WS ELT EXPORT_SET FIELD FIND_IN_SET FORMAT FROM_BASE64 HEX INSERT INSTR
    LCASE LEFT LENGTH LENGTHB LOCATE LOWER LPAD LTRIM MAKE_SET MID NATURAL_SORT_KEY
    OCTET_LENGTH ORD POSITION QUOTE REPEAT REPLACE REVERSE RIGHT RPAD RTRIM SFORMAT SOUNDEX
    SPACE STRCMP SUBSTR SUBSTRING SUBSTRING_INDEX TO_BASE64 TO_CHAR TRIM UCASE UNHEX UPPER
    WEIGHT_STRING REGEXP_INSTR REGEXP_REPLACE REGEXP_SUBSTR ADDDATE ADDTIME CONVERT_TZ
    CURDATE CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURTIME DATE_ADD DATE_FORMAT
    DATE_SUB DATEDIFF DAY DAYNAME DAYOFMONTH DAYOFWEEK DAYOFYEAR EXTRACT FROM_DAYS
    FROM_UNIXTIME GET_FORMAT HOUR LAST_DAY LOCALTIME LOCALTIMESTAMP MAKEDATE MAKETIME
    MICROSECOND MINUTE MONTH MONTHNAME NOW PERIOD_ADD PERIOD_DIFF QUARTER SEC_TO_TIME SECOND
    STR_TO_DATE SUBDATE SUBTIME SYSDATE TIME_FORMAT TIME_TO_SEC TIMEDIFF TIMESTAMPADD
    TIMESTAMPDIFF TO_DAYS TO_SECONDS UNIX_TIMESTAMP UTC_DATE UTC_TIME UTC_TIMESTAMP WEEK
    WEEKDAY WEEKOFYEAR YEAR YEARWEEK IF IFNULL NULLIF COALESCE ISNULL NVL NVL2 CAST CONVERT
    CHARSET COLLATION COERCIBILITY DATABASE SCHEMA USER CURRENT_USER CURRENT_ROLE
    SESSION_USER SYSTEM_USER VERSION CONNECTION_ID BENCHMARK SLEEP UUID SYS_GUID MD5 SHA
    SHA1 SHA2 AES_ENCRYPT AES_DECRYPT COMPRESS UNCOMPRESS UNCOMPRESSED_LENGTH RANDOM_BYTES
    INET_ATON INET_NTOA INET6_ATON INET6_NTOA IS_IPV4 IS_IPV6 IS_IPV4_COMPAT IS_IPV4_MAPPED
    COLUMN_GET COLUMN_JSON COLUMN_LIST COLUMN_EXISTS COLUMN_CHECK COLUMN_CREATE COLUMN_ADD
    COLUMN_DELETE DEFAULT""".split()
)


_FAMILIES = (b"JSON_", b"ST_")


def is_replica_read(sql: bytes) -> bool:
    """One statement that reads and changes nothing, as far as proxyd can tell."""
    if PRIMARY_HINT in sql:
        return False
    # Literals emptied (words inside them say nothing); most statements have none.
    whole = words(sql) if b"'" in sql or b'"' in sql else sql.upper()
    text = whole if whole[:1].isalpha() else whole[_LEADING.match(whole).end() :]  # type: ignore[union-attr]
    if not text.startswith(_READS):
        return False
    if _SUSPECT.search(text) is None:
        return True  # a plain SELECT, as most are: nothing below can refuse it
    if b";" in text.rstrip(b"; \t\r\n"):
        return False
    if b"@" in text and _USER_VARIABLE.search(text):
        return False
    if _NOT_HERE.search(text):
        return False
    if text.startswith(b"SHOW") and _SHOW_ELSEWHERE.match(text):
        return False
    return _calls_only_pure_functions(text)


def _calls_only_pure_functions(text: bytes) -> bool:
    find = text.find
    at = find(b"(")
    while at >= 0:
        name = _NAME_AT_END.search(text, max(0, at - 64), at)
        if name is not None:
            qualifier, word = name.groups()
            if qualifier or (
                word not in _PURE and word not in _SYNTAX and not word.startswith(_FAMILIES)
            ):
                return False
        at = find(b"(", at + 1)
    return True
