"""One connection id per client, wherever the server would show one.

Under transaction pooling a client's statements run on whichever server connection is
free, and the server names each of those by its own thread id. A client knows one id:
the thread id of proxyd's handshake, which ``CONNECTION_ID()`` already answers. This
module rewrites the few statements through which a server id reaches the client, so that
they speak of client ids instead:

- ``SHOW [FULL] PROCESSLIST`` and ``information_schema.PROCESSLIST``: a server connection
  held by a client is shown with that client's id, user and address (and, for the asking
  client's own row, the statement as it wrote it); proxyd's own connections
  held by no client (the idle pool) are left out; a client of the same pool that holds no
  server connection right now is shown as the server shows an idle connection (``Sleep``,
  idle time, its schema). Threads that are no client's (other applications, the server's
  own) are shown as the server has them.
- ``performance_schema.threads``: ``PROCESSLIST_ID``, ``_USER``, ``_HOST`` and ``_INFO``
  mapped the same way, proxyd's idle connections left out (idle clients have no row: a
  thread row is the server's own bookkeeping).
- ``IS_USED_LOCK(name)``: the holder's client id; ``information_schema.INNODB_TRX`` and
  MariaDB's ``METADATA_LOCK_INFO`` (where the server has it): their thread id column.

Pure functions over statement text and a ProcessView (a snapshot the session takes when
it forwards the statement: only then is its own server connection known). Client ids are
counted down from 2^31 - 1 (proxyd/session/base.py), server thread ids up from 1, so the
two cannot meet before a server has had about two billion connections.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from proxyd.session.hints import is_select_item

CLIENT_ID_TOP = 2**31 - 1  # the first client id; signed 32-bit drivers still hold it

# The two tables, by the columns the server gives them (learned at its first connect);
# these are used when the server could not be asked.
PROCESSLIST_COLUMNS = (
    "ID",
    "USER",
    "HOST",
    "DB",
    "COMMAND",
    "TIME",
    "STATE",
    "INFO",
)
THREADS_COLUMNS = ("THREAD_ID", "NAME", "TYPE", "PROCESSLIST_ID", "PROCESSLIST_USER",
                   "PROCESSLIST_HOST", "PROCESSLIST_DB", "PROCESSLIST_COMMAND",
                   "PROCESSLIST_TIME", "PROCESSLIST_STATE", "PROCESSLIST_INFO",
                   "PARENT_THREAD_ID", "ROLE", "INSTRUMENTED")  # fmt: skip

_SHOW_PROCESSLIST = re.compile(rb"^\s*SHOW\s+(FULL\s+)?PROCESSLIST\s*;?\s*$", re.I)
_IS_PROCESSLIST = re.compile(rb"`?information_schema`?\s*\.\s*`?processlist`?(?![\w$`])", re.I)
_PS_THREADS = re.compile(rb"`?performance_schema`?\s*\.\s*`?threads`?(?![\w$`])", re.I)
# Tables that name a connection by its thread id and nothing else of it: (the table, its
# name, the id column). METADATA_LOCK_INFO lists GET_LOCK() holders (MariaDB's plugin).
_ID_TABLES = (
    (
        re.compile(rb"`?information_schema`?\s*\.\s*`?innodb_trx`?(?![\w$`])", re.I),
        "INNODB_TRX",
        "trx_mysql_thread_id",
    ),
    (
        re.compile(rb"`?information_schema`?\s*\.\s*`?metadata_lock_info`?(?![\w$`])", re.I),
        "METADATA_LOCK_INFO",
        "THREAD_ID",
    ),
)
_IS_USED_LOCK = re.compile(rb"\bIS_USED_LOCK\s*\(", re.I)
# After a table reference: the client's own alias, or a word that starts the next clause.
_ALIAS = re.compile(rb"\s*(?:AS\s+)?(`[^`]+`|[A-Za-z_$][\w$]*)", re.I)
_NOT_ALIASES = frozenset(
    b"WHERE ORDER GROUP LIMIT JOIN INNER LEFT RIGHT CROSS NATURAL STRAIGHT_JOIN ON USING"
    b" UNION EXCEPT INTERSECT HAVING WINDOW FOR LOCK USE FORCE IGNORE INTO PROCEDURE"
    b" RETURNING OFFSET FETCH FULL".split()
)
_PROCESSLIST_MAPPED = {
    "ID": "id",
    "USER": "user",
    "HOST": "host",
    "INFO": "info",
    "INFO_BINARY": "info",
}
_THREADS_MAPPED = {
    "PROCESSLIST_ID": "id",
    "PROCESSLIST_USER": "user",
    "PROCESSLIST_HOST": "host",
    "PROCESSLIST_INFO": "info",
}
_TEXT_OF_IDLE = {"COMMAND": "Sleep", "STATE": ""}
_NULL_OF_IDLE = frozenset({"INFO", "INFO_BINARY"})


@dataclass(frozen=True, slots=True)
class Client:
    """A client as the process list shows it."""

    id: int
    user: str
    host: str
    db: bytes | None = None
    idle: float = 0.0


@dataclass(slots=True)
class ProcessView:
    """Who holds which server connection, the moment a statement is forwarded."""

    held: dict[int, Client] = field(default_factory=dict)  # server thread id -> its client
    hidden: list[int] = field(default_factory=list)  # proxyd's, held by no client
    idle: list[Client] = field(default_factory=list)  # same pool, no server connection now
    own_thread: int = 0  # the asking client's server connection
    own_info: bytes = b""  # its statement as the client wrote it (before this rewrite)
    processlist_columns: tuple[str, ...] = PROCESSLIST_COLUMNS
    threads_columns: tuple[str, ...] = THREADS_COLUMNS
    # Tables of _ID_TABLES the server has (METADATA_LOCK_INFO is a plugin's), by name.
    other_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)


def rewrite_ids(sql: bytes, view: ProcessView) -> bytes:
    """``sql`` speaking of client ids where it would show server ids."""
    show = _SHOW_PROCESSLIST.match(sql)
    if show is not None:
        return show_processlist(view, full=show.group(1) is not None)
    sql = _replace_tables(sql, _IS_PROCESSLIST, lambda: processlist(view))
    sql = _replace_tables(sql, _PS_THREADS, lambda: threads(view))
    for table, name, id_column in _ID_TABLES:
        columns = view.other_columns.get(name)
        if columns and view.held:
            sql = _replace_tables(sql, table, partial(_id_table, view, name, columns, id_column))
    return _map_lock_owners(sql, view)


def show_processlist(view: ProcessView, full: bool) -> bytes:
    """SHOW [FULL] PROCESSLIST as a SELECT of the same columns over the mapped table."""
    columns = view.processlist_columns
    info = b"INFO" if full else b"LEFT(INFO, 100)"
    items = [
        b"ID AS Id",
        b"USER AS User",
        b"HOST AS Host",
        b"DB AS db",
        b"COMMAND AS Command",
        b"TIME AS Time",
        b"STATE AS State",
        info + b" AS Info",
    ]
    if "PROGRESS" in columns:  # MariaDB's
        items.append(b"PROGRESS AS Progress")
    return b"SELECT " + b", ".join(items) + b" FROM " + processlist(view) + b" AS p"


def processlist(view: ProcessView) -> bytes:
    """A derived table standing for information_schema.PROCESSLIST."""
    columns = view.processlist_columns
    selected = [_mapped(c, "ID", _PROCESSLIST_MAPPED, view) for c in columns]
    parts = [
        b"SELECT "
        + b", ".join(selected)
        + b" FROM information_schema.PROCESSLIST"
        + _without(b"ID", view.hidden)
    ]
    for client in view.idle:
        parts.append(b"SELECT " + b", ".join(_idle_value(c, client) for c in columns))
    return b"(" + b" UNION ALL ".join(parts) + b")"


def threads(view: ProcessView) -> bytes:
    """A derived table standing for performance_schema.threads."""
    selected = [_mapped(c, "PROCESSLIST_ID", _THREADS_MAPPED, view) for c in view.threads_columns]
    where = _without(b"PROCESSLIST_ID", view.hidden)
    if where:
        where += b" OR PROCESSLIST_ID IS NULL"
    return b"(SELECT " + b", ".join(selected) + b" FROM performance_schema.threads" + where + b")"


def _id_table(view: ProcessView, name: str, columns: tuple[str, ...], id_column: str) -> bytes:
    """A derived table standing for one that names connections by thread id only."""
    mapped = {id_column: "id"}
    selected = [_mapped(c, id_column, mapped, view) for c in columns]
    return b"(SELECT " + b", ".join(selected) + b" FROM information_schema." + name.encode() + b")"


def _mapped(column: str, id_column: str, mapped: dict[str, str], view: ProcessView) -> bytes:
    """One column of a held server connection's row as its client's: id, user, address,
    and for the asking client's own row the statement it wrote."""
    quoted = b"`" + column.encode() + b"`"
    what = mapped.get(column)
    ids = b"`" + id_column.encode() + b"`"
    if what == "info":
        if not view.own_thread:
            return quoted
        return b"CASE %s WHEN %d THEN %s ELSE %s END AS %s" % (
            ids,
            view.own_thread,
            _text(view.own_info),
            quoted,
            quoted,
        )
    if what is None or not view.held:
        return quoted
    whens = b" ".join(
        b"WHEN %d THEN %s" % (thread, _client_value(client, what))
        for thread, client in view.held.items()
    )
    return b"CASE %s %s ELSE %s END AS %s" % (ids, whens, quoted, quoted)


def _client_value(client: Client, what: str) -> bytes:
    if what == "id":
        return str(client.id).encode()
    return _text(client.user if what == "user" else client.host)


def _without(column: bytes, ids: list[int]) -> bytes:
    if not ids:
        return b""
    return b" WHERE " + column + b" NOT IN (" + b", ".join(b"%d" % i for i in ids) + b")"


def _idle_value(column: str, client: Client) -> bytes:
    quoted = b"`" + column.encode() + b"`"
    if column == "ID":
        value = str(client.id).encode()
    elif column == "USER":
        value = _text(client.user)
    elif column == "HOST":
        value = _text(client.host)
    elif column == "DB":
        value = b"NULL" if client.db is None else _text(client.db)
    elif column == "TIME":
        value = str(int(client.idle)).encode()
    elif column == "TIME_MS":
        value = b"%.3f" % (client.idle * 1000)
    elif column in _TEXT_OF_IDLE:
        value = _text(_TEXT_OF_IDLE[column])
    elif column in _NULL_OF_IDLE:
        value = b"NULL"
    else:
        value = b"0"
    return value + b" AS " + quoted


def _text(value: str | bytes) -> bytes:
    """A string literal whatever the client's sql_mode (no quotes or backslashes to escape)."""
    raw = value.encode() if isinstance(value, str) else value
    if not raw:
        return b"''"
    return b"CONVERT(X'" + raw.hex().encode() + b"' USING utf8mb4)"


def _replace_tables(sql: bytes, table: re.Pattern[bytes], derived: Callable[[], bytes]) -> bytes:
    if not table.search(sql):
        return sql
    body = derived()
    out = []
    pos = 0
    for match in table.finditer(sql):
        out.append(sql[pos : match.start()])
        out.append(body)
        alias = _ALIAS.match(sql, match.end())
        if alias is None or alias.group(1).upper() in _NOT_ALIASES:
            # The table's name as written, which the client's columns may qualify.
            name = match.group(0).rsplit(b".", 1)[-1].strip().strip(b"`")
            out.append(b" AS `" + name + b"`")
        pos = match.end()
    out.append(sql[pos:])
    return b"".join(out)


def _map_lock_owners(sql: bytes, view: ProcessView) -> bytes:
    """IS_USED_LOCK(...) answering the holder's client id."""
    if not view.held or not _IS_USED_LOCK.search(sql):
        return sql
    out = []
    pos = 0
    for match in _IS_USED_LOCK.finditer(sql):
        if match.start() < pos:
            continue  # inside the previous call's arguments
        end = _closing_paren(sql, match.end())
        if end is None:
            return sql  # unbalanced: the server will say what is wrong with it
        call = sql[match.start() : end]
        whens = b" ".join(b"WHEN %d THEN %d" % (t, c.id) for t, c in view.held.items())
        mapped = b"(CASE %s %s ELSE %s END)" % (call, whens, call)
        if is_select_item(sql, match.start(), end):
            mapped += b" AS `" + call.replace(b"`", b"``") + b"`"
        out.append(sql[pos : match.start()])
        out.append(mapped)
        pos = end
    out.append(sql[pos:])
    return b"".join(out)


def _closing_paren(sql: bytes, start: int) -> int | None:
    """The index just past the parenthesis that closes the one before ``start``."""
    depth = 1
    quote = 0
    i = start
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == 0x5C:  # backslash
                i += 1
            elif ch == quote:
                quote = 0
        elif ch in (0x27, 0x22, 0x60):  # ' " `
            quote = ch
        elif ch == 0x28:
            depth += 1
        elif ch == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None
