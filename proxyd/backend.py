"""One connection from proxyd to the MySQL/MariaDB server.

A BackendConnection logs in with a user's credentials, switches on the
server's session trackers, learns ``@@wait_timeout``, and then does one of two
things at a time: runs a command of proxyd's own (ping, state replay, reset),
or forwards a client's command and streams the answer straight to that
client's transport through a ResponseTracker. It notices at once when the
server closes it (KILL, wait_timeout, shutdown) and tells its owner.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pymysql.charset import charset_by_id

from proxyd.protocol.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COMMAND,
    MARIADB_CLIENT_EXTENDED_METADATA,
    SERVER_STATUS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_SYSTEM_VARIABLES,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import ClientLogin, LoginRefused
from proxyd.protocol.messages import (
    ErrPacket,
    OkPacket,
    StateChange,
    build_command,
    parse_err,
    parse_stmt_prepare_ok,
)
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.protocol.resultset import decode_text_result
from proxyd.variables import CHARSET_VARIABLES, UNMOVABLE_VARIABLES

if TYPE_CHECKING:
    from proxyd.config import Address

log = logging.getLogger("proxyd.backend")

# What proxyd asks of every server, whatever the client asked of proxyd.
BASE_CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.LONG_FLAG
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.SESSION_TRACK
    | CLIENT.CONNECT_ATTRS
    # Switched per client with COM_SET_OPTION, so it does not split the pool.
    | CLIENT.MULTI_STATEMENTS
)
# Client capabilities that change what a server sends or accepts: a backend is
# only shared between clients that agree on these (the pool keys on them). A profile
# holds them, and above bit 32 the MARIADB_PROFILE_CAPABILITIES the client asked for.
PROFILE_CAPABILITIES = (
    CLIENT.FOUND_ROWS
    | CLIENT.DEPRECATE_EOF
    | CLIENT.LOCAL_FILES
    | CLIENT.IGNORE_SPACE
    # Without them the server keeps results from the client (a prepared CALL's OUT
    # parameters, a procedure's result sets): asking for them anyway would send a client
    # answers it cannot read.
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
)
# MariaDB's extended capabilities that proxyd passes on: they change what the server
# puts in a column definition, never how many packets an answer has.
MARIADB_PROFILE_CAPABILITIES = MARIADB_CLIENT_EXTENDED_METADATA

SESSION_TRACKING_SETUP = (
    b"SET SESSION session_track_schema=ON, session_track_state_change=ON,"
    b" session_track_system_variables='*',"
    b" session_track_transaction_info='CHARACTERISTICS'"
)

_ids = itertools.count(1)

MAX_STATEMENTS_PER_BACKEND = 256
# close_reason of a connection whose answer proxyd could not follow.
PROTOCOL_ERROR = "protocol error from server"
UNPLACED_LOGGED = 256
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


class BackendConnection(asyncio.Protocol):
    """A server connection; see the module docstring."""

    def __init__(
        self,
        address: Address,
        user: bytes,
        password: bytes,
        profile: int,
        charset: int,
        schema: bytes | None,
        on_lost: Callable[[BackendConnection, str], None],
    ) -> None:
        self.id = next(_ids)
        self.address = address
        self.user = user
        self._password = password
        self.profile = profile
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_reason = ""
        self.server_version = b""
        self.server_charset = 0  # the server's default collation, from its greeting
        self.server_mariadb_capabilities = 0  # MariaDB's extended ones, from its greeting
        self.thread_id = 0
        self.capabilities = 0
        self.server_capabilities = 0
        self.wait_timeout = 28800.0
        self.default_wait_timeout = 28800.0
        self.created_at = time.monotonic()
        self.last_active = self.created_at
        self.last_ping = 0.0
        self.uses = 0
        self.status_flags = 0
        # What the session on the server looks like now.
        self.charset = charset
        self.schema = schema
        self.vars: dict[bytes, bytes] = {}
        self.needs_reset = False
        self.last_insert_id = 0
        # Binary-protocol statements prepared here: SQL text -> server statement id, LRU order.
        self.statements: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self.multi_statements = bool(profile & CLIENT.MULTI_STATEMENTS)
        # Connection phase.
        self._reader: PacketReader | None = PacketReader()
        self._packet_waiter: asyncio.Future[tuple[int, bytes]] | None = None
        # Command phase.
        self._tracker: ResponseTracker | None = None
        self._sink: asyncio.Transport | None = None
        self._done: Callable[[ResponseTracker], None] | None = None
        self._internal: asyncio.Future[list[bytes]] | None = None
        self._internal_packets: PacketReader | None = None
        self._internal_tracker: ResponseTracker | None = None
        self.read_timeout: float | None = None  # for forwarded statements; None: no limit
        self.command_timeout = 30.0  # for proxyd's own commands (backend.ping_timeout)
        self.max_allowed_packet = 0
        self._last_data = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.pool: Any = None  # the owning Pool, set by it
        self.stats: Any = None  # the daemon's Stats, set by the Server that opened it
        self.holder: Any = None  # the client session using it, if any
        self.last_session: Any = None  # whose statement ran here last

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)

    def data_received(self, data: bytes) -> None:
        tracker = self._tracker
        if tracker is not None:
            self._last_data = time.monotonic()
            # Hot path: a client's command is in flight.
            try:
                rest = tracker.feed(data)
            except ProtocolError as exc:
                self._relay(tracker, data)  # the whole packets before the offender
                self._unplaced(tracker, str(exc), tracker.unplaced or b"")
                return
            self._relay(tracker, data)
            if tracker.done or tracker.awaiting_infile:
                if rest:
                    # The answer ended early by our reckoning: the client may wait for the
                    # rest, or take it for the answer to its next command.
                    self._unplaced(tracker, f"{len(rest)} bytes after the answer's end", rest)
                    return
                self._finish_forward(tracker)
            return
        if self._internal is not None and self._internal_packets is not None:
            self._internal_packets.feed(data)
            self._internal_answer(data)
            return
        if self._reader is not None:
            self._reader.feed(data)
            self._wake_packet_waiter()
            return
        # Unsolicited bytes while idle: the server's last words before closing
        # (ERR 4031 idle timeout on MySQL 8.0.24+, 1927 connection killed...).
        self._note_unsolicited(data)

    def _relay(self, tracker: ResponseTracker, data: bytes) -> None:
        out = tracker.take_output()
        sink = self._sink
        if sink is not None and out:
            if len(out) == 1:
                sink.write(out[0])
            else:
                sink.writelines(out)
            if self.stats is not None:
                self.stats.counters["bytes_sent"] += len(data)

    def _unplaced(self, tracker: ResponseTracker, what: str, offender: bytes) -> None:
        """Bytes of an answer that proxyd cannot place: never wait on them. The connection
        is closed; its holder answers the client through the loss path (see
        PROTOCOL_ERROR), which neither hides nor re-runs it."""
        log.error(
            "backend %s (thread %s): answer to command 0x%02x: %s, after packet %d; "
            "closing. Bytes: %s",
            self.id,
            self.thread_id,
            tracker.command,
            what,
            tracker.last_seq,
            offender[:UNPLACED_LOGGED].hex(" "),
        )
        if self.stats is not None:
            self.stats.inc("server_protocol_errors")
        self.close(f"{PROTOCOL_ERROR}: {what}")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            reason = "server_closed"
        elif isinstance(exc, ConnectionResetError):
            reason = "server_reset"
        else:
            reason = f"error: {exc}"
        self._mark_closed(reason)

    def pause_writing(self) -> None:
        holder = self.holder
        if holder is not None:
            holder.pause_reading()

    def resume_writing(self) -> None:
        holder = self.holder
        if holder is not None:
            holder.resume_reading()

    # -- lifecycle ---------------------------------------------------------------

    def _mark_closed(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        waiter = self._packet_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(BackendGone(f"server closed the connection ({reason})"))
        internal = self._internal
        if internal is not None and not internal.done():
            internal.set_exception(BackendGone(f"server closed the connection ({reason})"))
        self.on_lost(self, self.close_reason)

    def _fail(self, reason: str) -> None:
        log.warning("backend %s (thread %s): %s", self.id, self.thread_id, reason)
        self.close(reason)

    def close(self, reason: str = "closed") -> None:
        """Close now; tell the owner through on_lost."""
        if not self.close_reason:
            self.close_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            if not self.busy and not self._reader:
                # A polite COM_QUIT so the server logs no aborted connection.
                self.transport.write(encode_packet(build_command(COMMAND.COM_QUIT), 0))
            self.transport.close()
        self._mark_closed(reason)

    @property
    def busy(self) -> bool:
        return self._tracker is not None or self._internal is not None

    @property
    def idle_for(self) -> float:
        return time.monotonic() - self.last_active

    @property
    def age(self) -> float:
        return time.monotonic() - self.created_at

    def _note_unsolicited(self, data: bytes) -> None:
        reader = PacketReader()
        reader.feed(data)
        try:
            packet = reader.next_packet()
        except ProtocolError:
            packet = None
        if packet and packet[1][:1] == b"\xff":
            err = parse_err(packet[1])
            self.close_reason = (
                f"server error {err.error_code}: {err.message.decode(errors='replace')}"
            )
            if err.error_code in (1927, 4031):
                self.close_reason = "killed" if err.error_code == 1927 else "server_idle_timeout"
        else:
            self.close_reason = "unexpected data from server"
        self.close(self.close_reason)

    # -- connection phase --------------------------------------------------------

    def _wake_packet_waiter(self) -> None:
        waiter = self._packet_waiter
        if waiter is None or waiter.done() or self._reader is None:
            return
        try:
            packet = self._reader.next_packet()
        except ProtocolError as exc:
            waiter.set_exception(BackendError(f"malformed packet from server: {exc}"))
            return
        if packet is not None:
            waiter.set_result(packet)

    async def _read_packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        packet = self._reader.next_packet()
        if packet is not None:
            return packet
        if self.closed:
            raise BackendGone(f"server closed the connection ({self.close_reason})")
        self._packet_waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._packet_waiter
        finally:
            self._packet_waiter = None

    def _send(self, payload: bytes, seq: int) -> None:
        assert self.transport is not None
        self.transport.write(encode_packet(payload, seq))

    async def login(self, timeout: float) -> None:
        """Run the connection phase and the session setup; raise BackendError."""
        await asyncio.wait_for(self._login(), timeout)
        self.last_active = time.monotonic()

    async def _login(self) -> None:
        await self._authenticate()
        self._reader = None
        await self.setup_session()

    async def _authenticate(self) -> None:
        login = ClientLogin(
            self.user,
            self._password,
            self.charset,
            self.schema,
            (BASE_CAPABILITIES | self.profile) & 0xFFFFFFFF,
            self.profile >> 32,
            {b"_client_name": b"proxyd", b"program_name": b"proxyd"},
        )
        seq, payload = await self._read_packet()
        try:
            self._send(login.greeting(payload), seq + 1)
            greeting = login.server
            assert greeting is not None
            self.server_version = greeting.server_version
            self.server_charset = greeting.character_set
            self.server_mariadb_capabilities = login.server_mariadb_capabilities
            self.thread_id = greeting.connection_id
            self.server_capabilities = greeting.capability_flags
            self.status_flags = greeting.status_flags
            self.capabilities = login.capabilities
            self.multi_statements = bool(login.capabilities & CLIENT.MULTI_STATEMENTS)
            while not login.done:
                seq, payload = await self._read_packet()
                for answer in login.receive(payload):
                    self._send(answer, seq + 1)
        except LoginRefused as exc:
            raise BackendError(str(exc), exc.err) from None
        except ProtocolError as exc:
            raise BackendError(f"during login: {exc}") from None

    async def setup_session(self) -> None:
        """Switch on session tracking and learn this session's wait_timeout."""
        await self.query(SESSION_TRACKING_SETUP)
        rows = await self.query(b"SELECT @@wait_timeout, @@max_allowed_packet")
        if isinstance(rows, list) and rows and rows[0][0] is not None:
            self.wait_timeout = self.default_wait_timeout = float(rows[0][0])
            if len(rows[0]) > 1:
                self.max_allowed_packet = int(rows[0][1] or 0)
        self.vars.clear()

    # -- proxyd's own commands ---------------------------------------------------

    async def command(self, command: int, argument: bytes = b"") -> list[bytes]:
        """Send one command of proxyd's own; return the answer's packets."""
        if self.closed:
            raise BackendGone(f"connection closed ({self.close_reason})")
        if self.busy:
            raise RuntimeError("backend is busy")
        tracker = ResponseTracker(command, self.capabilities)
        loop = asyncio.get_running_loop()
        self._internal = fut = loop.create_future()
        self._internal_packets = PacketReader()
        self._internal_tracker = tracker
        self._send(build_command(command, argument), 0)
        try:
            packets = await asyncio.wait_for(fut, self.command_timeout)
        except asyncio.TimeoutError:
            # A server that does not answer proxyd's own command is as good as gone.
            self._fail(f"no answer to proxyd's own command in {self.command_timeout:g}s")
            raise BackendGone("server did not answer") from None
        finally:
            self._internal = None
            self._internal_packets = None
            self._internal_tracker = None
        self.last_active = time.monotonic()
        self.status_flags = tracker.status_flags or self.status_flags
        self._learn(tracker.state_changes)
        return packets

    def _internal_answer(self, data: bytes) -> None:
        """The tracker finds where the answer ends; then its packets are decoded once."""
        tracker = self._internal_tracker
        reader = self._internal_packets
        fut = self._internal
        assert tracker is not None and reader is not None and fut is not None
        try:
            tracker.feed(data)
            tracker.take_output()
            if not tracker.done:
                return
            packets = []
            while (packet := reader.next_packet()) is not None:
                packets.append(packet[1])
        except ProtocolError as exc:
            self._fail(f"protocol error from server: {exc}")
            return
        if not fut.done():
            fut.set_result(packets)

    async def query(self, sql: bytes) -> OkPacket | list[tuple[bytes | None, ...]]:
        packets = await self.command(COMMAND.COM_QUERY, sql)
        result = decode_text_result(packets, self.capabilities)
        if isinstance(result, ErrPacket):
            raise BackendError(
                f"{sql[:60]!r} failed: {result.error_code} "
                f"{result.message.decode(errors='replace')}",
                result,
            )
        return result

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
        if self.transport is not None and not self.transport.is_closing():
            self._send(build_command(COMMAND.COM_STMT_CLOSE, stmt_id.to_bytes(4, "little")), 0)

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
                if change.name.startswith(b"session_track_") or change.name in UNMOVABLE_VARIABLES:
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

    # -- forwarding a client's command -----------------------------------------

    def forward(
        self,
        packet: bytes,
        tracker: ResponseTracker,
        sink: asyncio.Transport,
        done: Callable[[ResponseTracker], None],
    ) -> None:
        """Send a client's framed command and stream the answer to ``sink``."""
        assert self.transport is not None
        self.uses += 1
        self.last_active = time.monotonic()
        if tracker.done:
            # Commands without an answer (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
            self.transport.write(packet)
            done(tracker)
            return
        self._tracker = tracker
        self._sink = sink
        self._done = done
        self.transport.write(packet)
        if self.read_timeout is not None:
            self._last_data = time.monotonic()
            self._arm_watchdog(self.read_timeout)

    def _arm_watchdog(self, delay: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._check_silence)

    def _check_silence(self) -> None:
        """backend.read_timeout: a server silent this long mid-answer is taken as gone."""
        self._watchdog = None
        if self._tracker is None or self.read_timeout is None or self.closed:
            return
        silent = time.monotonic() - self._last_data
        if silent >= self.read_timeout:
            self._fail(f"no answer for {silent:.1f}s (backend.read_timeout)")
            self.close_reason = "read_timeout"
        else:
            self._arm_watchdog(self.read_timeout - silent)

    def forward_more(self, packet: bytes) -> None:
        """More bytes of the same command (LOCAL INFILE contents)."""
        assert self.transport is not None
        self.transport.write(packet)

    def resume_after_infile(self, tracker: ResponseTracker) -> None:
        tracker.infile_sent()
        self._tracker = tracker

    def _finish_forward(self, tracker: ResponseTracker) -> None:
        done = self._done
        self._tracker = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if tracker.done:
            self._sink = None
            self._done = None
        self.last_active = time.monotonic()
        if tracker.status_flags:
            self.status_flags = tracker.status_flags
        if tracker.state_changes:
            self._learn(tracker.state_changes)
        if done is not None:
            try:
                done(tracker)
            except Exception:
                # A bug must cost one client its connection, never the daemon.
                log.exception("backend %s: error handling a response; closing", self.id)
                holder = self.holder
                self.close("internal_error")
                if holder is not None:
                    holder.goodbye()

    @property
    def forwarding(self) -> bool:
        """A client's command is in flight (not one of proxyd's own)."""
        return self._tracker is not None

    def drain(self, done: Callable[[ResponseTracker], None]) -> None:
        """The client went away mid-answer: read the rest of it, send it nowhere, then
        call ``done``. The connection stays open (and counted) until then."""
        self._sink = None
        self._done = done

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


async def open_backend(
    address: Address,
    user: bytes,
    password: bytes,
    profile: int,
    charset: int,
    schema: bytes | None,
    on_lost: Callable[[BackendConnection, str], None],
    timeout: float,
    login_timeout: float | None = None,
) -> BackendConnection:
    """Connect (within ``timeout``), log in and set up a server session (within
    ``login_timeout``, by default ``timeout`` too), or raise BackendError."""
    loop = asyncio.get_running_loop()
    conn = BackendConnection(address, user, password, profile, charset, schema, on_lost)
    conn.command_timeout = timeout if login_timeout is None else login_timeout
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: conn, address.host, address.port), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise BackendGone(f"cannot connect to {address}: {exc or 'timed out'}") from None
    try:
        await conn.login(timeout if login_timeout is None else login_timeout)
    except TimeoutError:
        conn.close("login timed out")
        raise BackendGone(f"login to {address} timed out") from None
    except BackendError:
        conn.close("login failed")
        raise
    return conn
