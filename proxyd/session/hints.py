"""What a statement's text says about session state the server's trackers don't name.

The session trackers tell proxyd *that* unmovable state changed (a bare
state-change entry) but not what: a user variable, a temporary table, an SQL
PREPARE. Some state changes report nothing at all (``GET_LOCK``, ``SELECT
@y:=5``). This module looks at the text of a COM_QUERY for those few cases;
it is pure, and one precompiled regex decides in a single scan whether a
statement needs a closer look, so ordinary statements pay almost nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# One scan over every statement: is there anything here worth a closer look?
_INTERESTING = re.compile(
    rb"LAST_INSERT_ID|FOUND_ROWS|ROW_COUNT|_LOCK\s*\(|RELEASE_ALL_LOCKS|CONNECTION_ID|:=|@"
    rb"|TEMPORARY|PREPARE|FLUSH|LOCK|\bXA\b|\bKILL\b|\bDROP\b|\bNAMES\b"
    rb"|WARNINGS|ERRORS|DIAGNOSTICS|_COUNT\b|PROCESSLIST|performance_schema|INNODB_TRX",
    re.IGNORECASE,
)
_LEADING = re.compile(rb"^(?:\s|/\*.*?\*/|--[^\n]*\n|#[^\n]*\n)*", re.DOTALL)

# State that stays with the server connection: temporary tables, prepared SQL, locks,
# user variables.
_CREATE_TEMP = re.compile(
    rb"CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([`\w.$]+)", re.I
)
_DROP_TABLE = re.compile(rb"DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?(.+)", re.I | re.S)
_PREPARE = re.compile(rb"PREPARE\s+([`\w$]+)\s+FROM", re.I)
_DEALLOCATE = re.compile(rb"(?:DEALLOCATE|DROP)\s+PREPARE\s+([`\w$]+)", re.I)
_GET_LOCK = re.compile(rb"\bGET_LOCK\s*\(", re.I)
_RELEASE_LOCK = re.compile(rb"\bRELEASE_LOCK\s*\(", re.I)
_RELEASE_ALL = re.compile(rb"\bRELEASE_ALL_LOCKS\s*\(", re.I)
_LOCK_NAME = re.compile(rb"\b(GET|RELEASE)_LOCK\s*\(\s*'((?:[^'\\]|\\.)*)'", re.I)
_USER_VAR_NAME = re.compile(rb"(?<![@\w])@(`[^`]+`|[\w$.]+)")
_USER_VAR_ASSIGN = re.compile(rb":=|\bINTO\s+@|^SET\s+@(?!@)|,\s*@(?!@)\w+\s*=", re.I)

# Statements proxyd answers or rewrites itself.
_CONNECTION_ID = re.compile(rb"\bCONNECTION_ID\s*\(\s*\)", re.I)
# Statements that would show the client server thread ids (identity.py rewrites them).
_SERVER_IDS = re.compile(
    rb"\bPROCESSLIST\b|\bIS_USED_LOCK\s*\(|performance_schema`?\s*\.\s*`?threads\b"
    rb"|\bINNODB_TRX\b|\bMETADATA_LOCK_INFO\b",
    re.I,
)
_KILL = re.compile(rb"^KILL\s+(?:(CONNECTION|QUERY)\s+)?(\d+)\s*;?\s*$", re.I)
_SET_NAMES = re.compile(
    rb"^SET\s+NAMES\s+['\"`]?(\w+)['\"`]?(?:\s+COLLATE\s+['\"`]?(\w+)['\"`]?)?\s*;?\s*$", re.I
)

# Statements that read what the client's previous statement left: diagnostics, counts, ids.
_DIAGNOSTICS = re.compile(
    rb"^(?:SHOW\s+(?:COUNT\s*\(\s*\*\s*\)\s+)?(?:WARNINGS|ERRORS)"
    rb"|GET\s+(?:CURRENT\s+|STACKED\s+)?DIAGNOSTICS)"
    rb"|^SELECT\s+@@(?:SESSION\.)?(?:WARNING|ERROR)_COUNT\s*;?\s*$",
    re.I,
)
_LAST_INSERT_ID = re.compile(rb"\bLAST_INSERT_ID\s*\(", re.I)
_FOUND_ROWS = re.compile(rb"\bSQL_CALC_FOUND_ROWS\b", re.I)
_FOUND_ROWS_CALL = re.compile(rb"\bFOUND_ROWS\s*\(\s*\)", re.I)
_ROW_COUNT_CALL = re.compile(rb"\bROW_COUNT\s*\(\s*\)", re.I)

# A select-list item of the statement itself: after its SELECT or a comma at the top level,
# before a comma, FROM, another clause or the end, with no alias of the client's own.
_SELECT_LIST_START = re.compile(rb"\s*SELECT\b", re.I)
_ITEM_BEFORE = re.compile(rb"(?:\bSELECT|,)\s*$", re.I)
_CLAUSE = re.compile(rb"\b(?:FROM|WHERE|HAVING|GROUP|ORDER|LIMIT|INTO|UNION|SET|VALUES)\b", re.I)
_ITEM_AFTER = re.compile(
    rb"\s*(?:,|;|$|(?:FROM|INTO|UNION|LIMIT|WHERE|ORDER|GROUP|HAVING|FOR|LOCK)\b)", re.I
)


def _strip(sql: bytes) -> bytes:
    m = _LEADING.match(sql)
    return sql[m.end() :] if m else sql


def _name(raw: bytes) -> bytes:
    return raw.strip(b"`").lower()


@dataclass(slots=True)
class StatementHints:
    """What one statement may do to unmovable session state."""

    reads_last_insert_id: bool = False
    calc_found_rows: bool = False
    reads_found_rows: bool = False
    reads_row_count: bool = False
    user_variables: bool = False
    get_locks: int = 0
    release_locks: int = 0
    release_all_locks: bool = False
    lock_names: list[bytes] = field(default_factory=list)  # GET_LOCK('name', ...)
    released_lock_names: list[bytes] = field(default_factory=list)
    user_variable_names: list[bytes] = field(default_factory=list)  # for the loss message
    lock_tables: bool = False
    unlock_tables: bool = False
    xa_start: bool = False
    xa_end: bool = False
    temp_tables_created: list[bytes] = field(default_factory=list)
    tables_dropped: list[bytes] = field(default_factory=list)
    prepared: list[bytes] = field(default_factory=list)
    deallocated: list[bytes] = field(default_factory=list)
    connection_id: bool = False
    kill: tuple[bool, int] | None = None  # (query only, id)
    set_names: tuple[str, str | None] | None = None  # (charset, collation)
    diagnostics: bool = False  # reads the previous statement's warnings/errors
    server_ids: bytes | None = None  # the statement as written, when it shows thread ids


NO_HINTS = StatementHints()


def analyse(sql: bytes) -> StatementHints:
    """Hints for one COM_QUERY text; NO_HINTS (shared, never mutate) when there are none."""
    if not _INTERESTING.search(sql):
        return NO_HINTS
    text = _strip(sql)
    upper = text[:40].upper()
    h = StatementHints()
    h.reads_last_insert_id = bool(_LAST_INSERT_ID.search(text))
    h.calc_found_rows = bool(_FOUND_ROWS.search(text))
    h.reads_found_rows = bool(_FOUND_ROWS_CALL.search(text))
    h.reads_row_count = bool(_ROW_COUNT_CALL.search(text))
    h.user_variables = bool(_USER_VAR_ASSIGN.search(text))
    if h.user_variables:
        h.user_variable_names = [_name(n) for n in _USER_VAR_NAME.findall(text)]
    h.get_locks = len(_GET_LOCK.findall(text))
    h.release_locks = len(_RELEASE_LOCK.findall(text))
    if h.get_locks or h.release_locks:
        for verb, name in _LOCK_NAME.findall(text):
            named = h.lock_names if verb.upper() == b"GET" else h.released_lock_names
            named.append(name)
    h.release_all_locks = bool(_RELEASE_ALL.search(text))
    h.connection_id = bool(_CONNECTION_ID.search(text))
    if _SERVER_IDS.search(text):
        h.server_ids = sql
    if upper.startswith((b"LOCK TABLE", b"LOCK TABLES")) or (
        upper.startswith(b"FLUSH") and re.search(rb"WITH\s+READ\s+LOCK", text, re.I)
    ):
        h.lock_tables = True
    if upper.startswith(b"UNLOCK"):
        h.unlock_tables = True
    if upper.startswith(b"XA"):
        word = text[2:].split(None, 1)[0].upper() if text[2:].split() else b""
        h.xa_start = word in (b"START", b"BEGIN")
        h.xa_end = word in (b"COMMIT", b"ROLLBACK")
    m = _CREATE_TEMP.search(text)
    if m and upper.startswith(b"CREATE"):
        h.temp_tables_created.append(_name(m.group(1)))
    m = _DROP_TABLE.match(text)
    if m:
        names = m.group(1).split(b";")[0]
        h.tables_dropped = [_name(n.strip()) for n in names.split(b",") if n.strip()]
    m = _PREPARE.match(text)
    if m:
        h.prepared.append(_name(m.group(1)))
    m = _DEALLOCATE.match(text)
    if m:
        h.deallocated.append(_name(m.group(1)))
    h.diagnostics = bool(_DIAGNOSTICS.match(text))
    m = _SET_NAMES.match(text)
    if m:
        collation = m.group(2).decode().lower() if m.group(2) else None
        h.set_names = (m.group(1).decode().lower(), collation)
    m = _KILL.match(text)
    if m:
        h.kill = ((m.group(1) or b"").upper() == b"QUERY", int(m.group(2)))
    return h


def replace_previous_results(sql: bytes, row_count: int, found_rows: int) -> bytes:
    """ROW_COUNT() and FOUND_ROWS() as literals, for a statement that runs on another
    server connection than the client's previous one (whose counts those were)."""
    sql = _as_literal(_ROW_COUNT_CALL, row_count, sql)
    return _as_literal(_FOUND_ROWS_CALL, found_rows, sql)


def replace_connection_id(sql: bytes, session_id: int) -> bytes:
    """CONNECTION_ID() as the client knows it: proxyd's id for its session."""
    return _as_literal(_CONNECTION_ID, session_id, sql)


def _as_literal(call: re.Pattern[bytes], value: int, sql: bytes) -> bytes:
    """Each ``call`` in ``sql`` replaced by ``value``. Where the call is a whole item of the
    statement's own select list, the literal is named as the server names that column,
    after the call as written (``SELECT ROW_COUNT()`` answers a column `ROW_COUNT()`, not
    `5`). Elsewhere (a WHERE clause, an argument, an item the client aliased) it is the bare
    literal. A statement this reads wrongly only loses the column's name, never its value."""
    literal = str(value).encode()

    def substitute(match: re.Match[bytes]) -> bytes:
        if is_select_item(sql, match.start(), match.end()):
            return literal + b" AS `" + match.group(0) + b"`"
        return literal

    return call.sub(substitute, sql)


def is_select_item(sql: bytes, start: int, end: int) -> bool:
    before = sql[:start]
    return (
        _SELECT_LIST_START.match(before) is not None
        and _ITEM_BEFORE.search(before) is not None
        and before.count(b"(") == before.count(b")")
        and _CLAUSE.search(before) is None
        and _ITEM_AFTER.match(sql, end) is not None
    )
