"""The session on the server side of a connection, and the commands that shape it.

A server connection carries a session on the server: a schema, a character set, session
variables, prepared statements, a wait_timeout. ServerSession keeps proxyd's picture of
that session (learnt from the server's session trackers) and holds the commands of
proxyd's own that set it up and bring it to a client's state: session tracking at login,
state replay, re-prepare, reset, ping. It rests on one primitive, ``command()``, which
the connection (proxyd/server/connection.py) implements over its socket; nothing here
reads or writes a socket, and nothing here knows a client session's type.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

from pymysql.charset import charset_by_id

from proxyd.protocol.constants import (
    COM_RESET_CONNECTION,
    COMMAND,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_SYSTEM_VARIABLES,
)
from proxyd.protocol.messages import (
    ErrPacket,
    OkPacket,
    StateChange,
    build_command,
    parse_err,
    parse_stmt_prepare_ok,
)
from proxyd.protocol.resultset import column_names, decode_text_result
from proxyd.variables import CHARSET_VARIABLES, REPORTED_VARIABLES, UNMOVABLE_VARIABLES

SESSION_TRACKING_SETUP = (
    b"SET SESSION session_track_schema=ON, session_track_state_change=ON,"
    b" session_track_system_variables='*',"
    b" session_track_transaction_info='CHARACTERISTICS'"
)
MAX_STATEMENTS_PER_BACKEND = 256
ER_MAX_PREPARED_STMT_COUNT_REACHED = 1461


class BackendError(Exception):
    """The server refused or lost this connection."""

    def __init__(self, message: str, err: ErrPacket | None = None) -> None:
        super().__init__(message)
        self.err = err


class BackendGone(BackendError):
    """The connection closed (reset, EOF, or timeout) while proxyd needed it."""


def quote_value(value: bytes) -> bytes:
    """A session-tracker value as a SQL literal for SET (numbers unquoted)."""
    text = value.strip()
    try:
        float(text)
        return text
    except ValueError:
        pass
    if text.upper() == b"NULL":
        return b"NULL"
    return b"'" + value.replace(b"\\", b"\\\\").replace(b"'", b"\\'") + b"'"


def set_names_sql(charset_id: int) -> bytes:
    cs = charset_by_id(charset_id)
    return f"NAMES {cs.name} COLLATE {cs.collation}".encode()


class ServerSession:
    """proxyd's picture of one server session, and the commands that shape it."""

    def __init__(self, charset: int, schema: bytes | None, multi_statements: bool) -> None:
        self.capabilities = 0
        self.wait_timeout = 28800.0
        self.default_wait_timeout = 28800.0
        self.max_allowed_packet = 0
        self.last_ping = 0.0
        self.charset = charset
        self.schema = schema
        self.vars: dict[bytes, bytes] = {}
        self.needs_reset = False
        self.last_insert_id = 0
        # Binary-protocol statements prepared here: SQL text -> server statement id, LRU order.
        self.statements: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self.multi_statements = multi_statements

    async def command(self, command: int, argument: bytes = b"") -> list[bytes]:
        """Send one command of proxyd's own; return the answer's packets."""
        raise NotImplementedError

    def send_unanswered(self, payload: bytes) -> None:
        """Send a command that has no answer (COM_STMT_CLOSE), if the connection is open."""
        raise NotImplementedError

    async def setup_session(self) -> None:
        """Switch on session tracking and learn this session's wait_timeout."""
        await self.query(SESSION_TRACKING_SETUP)
        rows = await self.query(b"SELECT @@wait_timeout, @@max_allowed_packet")
        if isinstance(rows, list) and rows and rows[0][0] is not None:
            self.wait_timeout = self.default_wait_timeout = float(rows[0][0])
            if len(rows[0]) > 1:
                self.max_allowed_packet = int(rows[0][1] or 0)
        self.vars.clear()

    async def query(self, sql: bytes) -> OkPacket | list[tuple[bytes | None, ...]]:
        return (await self._query(sql))[1]

    async def query_named(self, sql: bytes) -> list[dict[str, bytes | None]]:
        """The rows of a SHOW or SELECT, each by column name (SHOW SLAVE STATUS has
        dozens of columns whose order differs between servers)."""
        packets, result = await self._query(sql)
        if not isinstance(result, list):
            return []
        names = [name.decode("utf-8", "replace") for name in column_names(packets)]
        return [dict(zip(names, row, strict=True)) for row in result]

    async def _query(
        self, sql: bytes
    ) -> tuple[list[bytes], OkPacket | list[tuple[bytes | None, ...]]]:
        """One of proxyd's own statements: its packets and decoded answer; an ERR raises."""
        packets = await self.command(COMMAND.COM_QUERY, sql)
        result = decode_text_result(packets, self.capabilities)
        if isinstance(result, ErrPacket):
            raise BackendError(
                f"{sql[:60]!r} failed: {result.error_code} "
                f"{result.message.decode(errors='replace')}",
                result,
            )
        return packets, result

    async def ping(self, timeout: float) -> None:
        packets = await asyncio.wait_for(self.command(COMMAND.COM_PING), timeout)
        if packets and packets[0][:1] == b"\xff":
            raise BackendError("ping refused", parse_err(packets[0]))
        self.last_ping = time.monotonic()

    async def reset(self) -> None:
        """Return the server session to a fresh state (COM_RESET_CONNECTION)."""
        packets = await self.command(COM_RESET_CONNECTION)
        if packets and packets[0][:1] == b"\xff":
            raise BackendError("reset refused", parse_err(packets[0]))
        self.statements.clear()
        self.last_insert_id = 0
        await self.setup_session()
        self.needs_reset = False

    async def prepare(self, sql: bytes) -> int | ErrPacket:
        """Prepare a statement for a client that prepared it elsewhere; return its id here."""
        for _ in range(2):
            packets = await self.command(COMMAND.COM_STMT_PREPARE, sql)
            if packets and packets[0][:1] == b"\xff":
                err = parse_err(packets[0])
                if err.error_code == ER_MAX_PREPARED_STMT_COUNT_REACHED and self.statements:
                    # The server-wide limit: make room from our own least recently used.
                    for _ in range(max(1, len(self.statements) // 2)):
                        self.forget_statement()
                    continue
                return err
            stmt_id = parse_stmt_prepare_ok(packets[0]).statement_id
            self.remember_statement(sql, stmt_id)
            return stmt_id
        return err

    def remember_statement(self, sql: bytes, stmt_id: int) -> None:
        old = self.statements.pop(sql, None)
        if old is not None and old != stmt_id:
            self._close_statement(old)
        self.statements[sql] = stmt_id
        while len(self.statements) > MAX_STATEMENTS_PER_BACKEND:
            self.forget_statement()

    def forget_statement(self, sql: bytes | None = None) -> None:
        """Close one statement on the server (the least recently used by default)."""
        if sql is None:
            if not self.statements:
                return
            sql, stmt_id = self.statements.popitem(last=False)
        else:
            stmt_id = self.statements.pop(sql)
        self._close_statement(stmt_id)

    def _close_statement(self, stmt_id: int) -> None:
        # COM_STMT_CLOSE has no answer, so it can go out between two commands.
        self.send_unanswered(build_command(COMMAND.COM_STMT_CLOSE, stmt_id.to_bytes(4, "little")))

    def statement_id(self, sql: bytes) -> int | None:
        stmt_id = self.statements.get(sql)
        if stmt_id is not None:
            self.statements.move_to_end(sql)
        return stmt_id

    async def set_multi_statements(self, on: bool) -> None:
        packets = await self.command(COMMAND.COM_SET_OPTION, (0 if on else 1).to_bytes(2, "little"))
        if packets and packets[0][:1] == b"\xff":
            raise BackendError("COM_SET_OPTION refused", parse_err(packets[0]))
        self.multi_statements = on

    async def take_state(
        self,
        schema: bytes | None,
        charset: int,
        variables: dict[bytes, bytes],
        multi_statements: bool,
        stats: Any,
    ) -> ErrPacket | None:
        """Bring this server session to a client's (schema, multi-statements, character
        set, session variables) with as few round trips as it takes; the server's ERR if
        it refuses a part."""
        if schema is not None and self.schema != schema:
            stats.inc("state_replays")
            err = await self.init_db(schema)
            if err is not None:
                return err
        if self.multi_statements != multi_statements:
            await self.set_multi_statements(multi_statements)
        if self.charset != charset or self.vars != variables:
            stats.inc("state_replays")
            return await self.apply_state(charset, variables)
        return None

    async def init_db(self, schema: bytes) -> ErrPacket | None:
        packets = await self.command(COMMAND.COM_INIT_DB, schema)
        if packets and packets[0][:1] == b"\xff":
            return parse_err(packets[0])
        self.schema = schema
        return None

    async def apply_state(self, charset: int, variables: dict[bytes, bytes]) -> ErrPacket | None:
        """Bring charset and session variables to a client's, in one SET."""
        assignments: list[bytes] = []
        names_reset = any(v in self.vars and v not in variables for v in CHARSET_VARIABLES)
        if charset != self.charset or names_reset:
            assignments.append(set_names_sql(charset))
        for name, value in variables.items():
            if self.vars.get(name) != value or (names_reset and name in CHARSET_VARIABLES):
                # The tracker reports character_set_results=NULL as an empty value.
                literal = b"NULL" if not value and name in CHARSET_VARIABLES else quote_value(value)
                assignments.append(b"@@session." + name + b"=" + literal)
        for name in self.vars:
            if name not in variables and name not in CHARSET_VARIABLES:
                assignments.append(b"@@session." + name + b"=DEFAULT")
        if not assignments:
            return None
        try:
            await self.query(b"SET " + b", ".join(assignments))
        except BackendError as exc:
            if exc.err is None:
                raise
            return exc.err
        self.charset = charset
        self.vars = dict(variables)
        self._note_wait_timeout()
        return None

    def _learn(self, per_ok: list[list[StateChange]]) -> None:
        """Keep this connection's picture of its server session up to date."""
        for change in (c for changes in per_ok for c in changes):
            if change.type == SESSION_TRACK_SCHEMA:
                self.schema = change.name or None
            elif change.type == SESSION_TRACK_SYSTEM_VARIABLES:
                # Unmovable ones pin their session here and are never replayed: compared
                # with the client's (which leaves them out) they would be reset to DEFAULT.
                name = change.name
                if (
                    name.startswith(b"session_track_")
                    or name in UNMOVABLE_VARIABLES
                    or name in REPORTED_VARIABLES
                ):
                    continue
                self.vars[change.name] = change.value
        self._note_wait_timeout()

    def _note_wait_timeout(self) -> None:
        value = self.vars.get(b"wait_timeout")
        if value is None:
            self.wait_timeout = self.default_wait_timeout
        else:
            with contextlib.suppress(ValueError):
                self.wait_timeout = float(value)
