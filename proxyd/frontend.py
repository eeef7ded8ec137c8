"""Client sessions: the MySQL server that applications see.

A ClientSession authenticates the client against the configured users, then
takes its commands one at a time. For each, it borrows a backend from the
user's pool (or keeps the one it holds), brings that backend's session to the
client's state (schema, character set, session variables), forwards the
command and lets the backend stream the answer straight back.

When a command is answered, the session decides whether to keep the backend:
in ``session`` mode always; in ``transaction`` mode only while the server
reports a transaction open or the client holds state that cannot move
(user variables, temporary tables, prepared statements, table locks...).
A backend that dies while the client is idle is replaced before its next
command, with schema, character set and variables restored, so the client
never sees it.

Session states, and the moves between them, are in TRANSITIONS below.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from typing import TYPE_CHECKING

from proxyd.backend import CHARSET_VARIABLES, PROFILE_CAPABILITIES, BackendConnection, BackendError
from proxyd.pool import AcquireError
from proxyd.protocol import auth
from proxyd.protocol.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COMMAND,
    SERVER_STATUS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
    SESSION_TRACK_TRANSACTION_STATE,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    ErrPacket,
    HandshakeV10,
    OkPacket,
    StateChange,
    build_auth_more_data,
    build_auth_switch_request,
    build_err,
    build_handshake_v10,
    build_ok,
    is_ssl_request,
    parse_handshake_response,
)
from proxyd.protocol.packets import PacketReader, Reader, encode_packet
from proxyd.protocol.response import ResponseTracker, expects_response

if TYPE_CHECKING:
    from proxyd.daemon import Daemon
    from proxyd.pool import Pool

log = logging.getLogger("proxyd.frontend")

# What proxyd offers clients (and so what it must be able to honour).
SERVER_CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.FOUND_ROWS
    | CLIENT.LONG_FLAG
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.IGNORE_SPACE
    | CLIENT.PROTOCOL_41
    | CLIENT.INTERACTIVE
    | CLIENT.IGNORE_SIGPIPE
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
    | CLIENT.PLUGIN_AUTH
    | CLIENT.CONNECT_ATTRS
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.SESSION_TRACK
    | CLIENT.DEPRECATE_EOF
    | CLIENT.LOCAL_FILES
)
DEFAULT_SERVER_VERSION = b"5.5.5-10.11.0-MariaDB-proxyd"

ER_ACCESS_DENIED = 1045
ER_CON_COUNT = 1040
ER_UNKNOWN_COM = 1047
ER_NET_PACKETS_OUT_OF_ORDER = 1156
ER_LOCK_DEADLOCK = 1213
ER_UNKNOWN_ERROR = 1105
ER_HANDSHAKE = 1043
ER_TOO_MANY_USER_CONNECTIONS = 1203

# Variables whose value cannot be replayed on another connection.
UNMOVABLE_VARIABLES = frozenset(
    (
        b"insert_id",
        b"last_insert_id",
        b"identity",
        b"timestamp",
        b"rand_seed1",
        b"rand_seed2",
        b"pseudo_thread_id",
        b"gtid_seq_no",
        b"gtid_domain_id",
        b"server_id",
        b"sql_log_bin",
        b"skip_replication",
    )
)
# Commands proxyd refuses: replication and server administration over a pool.
REFUSED_COMMANDS = frozenset(
    (
        COMMAND.COM_BINLOG_DUMP,
        COMMAND.COM_BINLOG_DUMP_GTID,
        COMMAND.COM_REGISTER_SLAVE,
        COMMAND.COM_TABLE_DUMP,
        COMMAND.COM_CONNECT_OUT,
        COMMAND.COM_SHUTDOWN,
        COMMAND.COM_SLEEP,
        COMMAND.COM_CONNECT,
        COMMAND.COM_TIME,
        COMMAND.COM_DELAYED_INSERT,
        COMMAND.COM_DAEMON,
    )
)
# Statements that cannot change data: safe to run again on a new backend when
# the old one died before answering.
_READ_ONLY_PREFIXES = (
    b"SELECT",
    b"SHOW",
    b"DESCRIBE",
    b"DESC",
    b"EXPLAIN",
    b"HELP",
    b"SET",
    b"USE",
)
_UNSAFE_READ_WORDS = (
    b"FOR UPDATE",
    b"LOCK IN SHARE MODE",
    b"INTO",
    b"GET_LOCK",
    b"SLEEP(",
    b"NEXTVAL",
)


class State(enum.Enum):
    AUTHENTICATING = "authenticating"
    IDLE = "idle"
    ACQUIRING = "acquiring"  # waiting for a backend, or bringing it to our state
    IN_COMMAND = "in_command"  # a command forwarded, its answer streaming back
    INFILE = "infile"  # relaying a LOCAL INFILE's contents to the server
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.AUTHENTICATING: frozenset({State.IDLE, State.CLOSED}),
    State.IDLE: frozenset({State.ACQUIRING, State.IN_COMMAND, State.CLOSED, State.IDLE}),
    State.ACQUIRING: frozenset({State.IN_COMMAND, State.IDLE, State.CLOSED}),
    State.IN_COMMAND: frozenset({State.IDLE, State.INFILE, State.ACQUIRING, State.CLOSED}),
    State.INFILE: frozenset({State.IN_COMMAND, State.IDLE, State.CLOSED}),
    State.CLOSED: frozenset({State.CLOSED}),
}

_session_ids = itertools.count(1)
MAX_BUFFERED_INPUT = 1 << 20


def _is_retry_safe(payload: bytes) -> bool:
    """A command that changes no data if it ran, so it may run again elsewhere."""
    command = payload[0]
    if command in (
        COMMAND.COM_PING,
        COMMAND.COM_INIT_DB,
        COMMAND.COM_STMT_PREPARE,
        COMMAND.COM_FIELD_LIST,
        COMMAND.COM_STATISTICS,
    ):
        return True
    if command != COMMAND.COM_QUERY:
        return False
    sql = bytes(payload[1:200]).lstrip(b" \t\r\n(").upper()
    if not sql.startswith(_READ_ONLY_PREFIXES):
        return False
    if sql.startswith(b"SET") and (b"@" in sql.split(b"=", 1)[0].replace(b"@@", b"")):
        return False  # user variables: retried state would pin anyway
    whole = bytes(payload[1:]).upper()
    return not any(word in whole for word in _UNSAFE_READ_WORDS) and b";" not in whole.rstrip(
        b"; \n"
    )


class ClientSession(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.id = next(_session_ids)
        self.state = State.AUTHENTICATING
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.user = ""
        self.pool: Pool | None = None
        self.backend: BackendConnection | None = None
        self.capabilities = 0
        self.profile = 0
        self.connected_at = time.monotonic()
        self.last_active = self.connected_at
        # The session state the client believes it has.
        self.schema: bytes | None = None
        self.charset = 45
        self.vars: dict[bytes, bytes] = {}
        self.status_flags = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
        self.pins: dict[str, str] = {}  # reason key -> description, for the admin console
        self.prepared: set[int] = set()
        self.lost_transaction = False
        self._reader = PacketReader()
        self._scramble = auth.new_scramble()
        self._auth_stage = 0
        self._handshake_user = b""
        self._pending_db: bytes | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._tracker: ResponseTracker | None = None
        self._command: bytes = b""
        self._attempts = 0
        self._started = 0.0
        self._paused = False
        self._waiting_ready = False

    # -- state machine -----------------------------------------------------------

    def _to(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"session {self.id}: {self.state.value} -> {state.value}")
        self.state = state

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    @property
    def pinned(self) -> bool:
        return bool(self.pins) or bool(self.prepared)

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        daemon = self.daemon
        if not daemon.accepting:
            self._refuse(ER_CON_COUNT, "proxyd: shutting down", seq=0)
            return
        if len(daemon.sessions) >= daemon.config.max_client_connections:
            daemon.stats.inc("clients_refused")
            self._refuse(ER_CON_COUNT, "Too many connections", seq=0)
            return
        daemon.sessions.add(self)
        self._login_timer = asyncio.get_running_loop().call_later(
            daemon.config.client_login_timeout, self._login_timed_out
        )
        greeting = HandshakeV10(
            server_version=daemon.server_version(),
            connection_id=self.id,
            auth_plugin_data=self._scramble,
            capability_flags=SERVER_CAPABILITIES,
            character_set=daemon.server_charset(),
            status_flags=self.status_flags,
            auth_plugin_name=auth.NATIVE_PASSWORD,
        )
        self._write(build_handshake_v10(greeting), 0)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self._reader.feed(data)
        try:
            if self.state is State.AUTHENTICATING:
                self._authenticate()
            self._pump()
        except ProtocolError as exc:
            self._protocol_violation(str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_session()

    def pause_writing(self) -> None:
        # The client reads slower than the server sends: stop reading the server.
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.pause_reading()

    def resume_writing(self) -> None:
        backend = self.backend
        if backend is not None and backend.transport is not None:
            backend.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    # -- connection phase ----------------------------------------------------------

    def _authenticate(self) -> None:
        packet = self._reader.next_packet()
        if packet is None:
            return
        seq, payload = packet
        if self._auth_stage == 0:
            if is_ssl_request(payload):
                self._refuse(ER_HANDSHAKE, "proxyd: TLS is not enabled on this listener", seq + 1)
                return
            response = parse_handshake_response(payload)
            self.capabilities = response.capability_flags & SERVER_CAPABILITIES
            self.charset = response.character_set or self.daemon.server_charset()
            self._handshake_user = response.username
            self._pending_db = response.database
            plugin = response.auth_plugin_name or auth.NATIVE_PASSWORD
            if (
                plugin == auth.CACHING_SHA2_PASSWORD
                or (plugin == auth.NATIVE_PASSWORD and self.capabilities & CLIENT.PLUGIN_AUTH)
                or plugin == auth.NATIVE_PASSWORD
            ):
                self._check_password(plugin, response.auth_response, seq)
            else:
                # Unknown plugin: ask for the one we can check.
                self._auth_stage = 1
                self._write(
                    build_auth_switch_request(auth.NATIVE_PASSWORD, self._scramble), seq + 1
                )
        else:
            self._check_password(auth.NATIVE_PASSWORD, payload, seq)

    def _check_password(self, plugin: bytes, response: bytes, seq: int) -> None:
        name = self._handshake_user.decode("utf-8", "replace")
        user = self.daemon.config.users.get(name)
        password = user.password.encode() if user is not None else b"\x00invalid"
        if plugin == auth.CACHING_SHA2_PASSWORD:
            ok = auth.check_caching_sha2(response, self._scramble, password)
        else:
            ok = auth.check_native(response, self._scramble, password)
        if not ok or user is None:
            self.daemon.stats.inc("auth_failures")
            log.warning("client %s: access denied for user %r", self.peer, name)
            host = self.peer.rsplit(":", 1)[0]
            self._refuse(
                ER_ACCESS_DENIED,
                f"Access denied for user '{name}'@'{host}' "
                f"(using password: {'YES' if response else 'NO'})",
                seq + 1,
                sql_state=b"28000",
            )
            return
        pool = self.daemon.pools[name]
        limit = user.max_connections
        if limit and sum(1 for s in self.daemon.sessions if s.user == name) >= limit:
            self._refuse(
                ER_TOO_MANY_USER_CONNECTIONS,
                f"User '{name}' has exceeded the 'max_connections' resource "
                f"(current value: {limit})",
                seq + 1,
                sql_state=b"42000",
            )
            return
        if plugin == auth.CACHING_SHA2_PASSWORD:
            seq += 1
            self._write(build_auth_more_data(auth.SHA2_FAST_AUTH_OK), seq)
        self.user = name
        self.pool = pool
        self.profile = self.capabilities & PROFILE_CAPABILITIES
        self.schema = self._pending_db
        self.vars = self._charset_vars(self.charset)
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._to(State.IDLE)
        self._write(self._ok(), seq + 1)
        log.debug("client %s: session %s logged in as %s", self.peer, self.id, name)

    def _charset_vars(self, charset: int) -> dict[bytes, bytes]:
        # The handshake's character set is applied with SET NAMES, not variable by variable.
        return {k: v for k, v in self.vars.items() if k not in CHARSET_VARIABLES}

    def _login_timed_out(self) -> None:
        if self.state is State.AUTHENTICATING:
            log.info("client %s: no login within client_login_timeout", self.peer)
            self._refuse(ER_HANDSHAKE, "proxyd: login timed out", seq=2)

    # -- command phase -------------------------------------------------------------

    def _pump(self) -> None:
        """Take client packets while nothing else is in flight."""
        while self.state is State.IDLE or self.state is State.INFILE:
            packet = self._reader.next_packet()
            if packet is None:
                break
            seq, payload = packet
            if self.state is State.INFILE:
                self._relay_infile(seq, payload)
                continue
            if seq != 0:
                raise ProtocolError(f"command with sequence id {seq} (expected 0)")
            if not payload:
                raise ProtocolError("empty command packet")
            self._dispatch(payload)
        if self._reader.buffered > MAX_BUFFERED_INPUT and self.state is not State.IDLE:
            self.pause_reading()
        elif self._paused and self.state is State.IDLE:
            self.resume_reading()

    def _dispatch(self, payload: bytes) -> None:
        command = payload[0]
        self.daemon.stats.inc("commands")
        if command == COMMAND.COM_QUIT:
            self._close()
            return
        if command == COMMAND.COM_PING and self.backend is None:
            self._write(self._ok(), 1)
            return
        if command in REFUSED_COMMANDS or command > COM_RESET_CONNECTION:
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
            return
        if command == COM_RESET_CONNECTION:
            self._start(self._reset_connection())
            return
        if command == COMMAND.COM_CHANGE_USER:
            self._write(
                build_err(ER_UNKNOWN_COM, "proxyd: COM_CHANGE_USER is not supported yet", b"08S01"),
                1,
            )
            return
        if command == COMMAND.COM_STMT_CLOSE:
            self._stmt_close(payload)
            return
        if command == COMMAND.COM_QUERY:
            self.daemon.stats.inc("queries")
        self._command = payload
        self._attempts = 0
        backend = self.backend
        if backend is None:
            assert self.pool is not None
            backend = self.pool.take_idle(self.profile, self.schema)
            if backend is not None:
                self._hold(backend)
        if backend is not None and not backend.busy and self._in_sync(backend):
            self._forward(backend)
        else:
            self._start(self._acquire_and_forward())

    def _start(self, coro: object) -> None:
        self._to(State.ACQUIRING)
        self._task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]

    def _in_sync(self, backend: BackendConnection) -> bool:
        return (
            backend.charset == self.charset
            and backend.vars == self.vars
            and (self.schema is None or backend.schema == self.schema)
        )

    def _hold(self, backend: BackendConnection) -> None:
        self.backend = backend
        backend.holder = self

    async def _acquire_and_forward(self) -> None:
        """Slow path: get a backend, bring it to our state, then forward."""
        if self.lost_transaction:
            self.lost_transaction = False
            self.status_flags &= ~SERVER_STATUS.SERVER_STATUS_IN_TRANS
            self._finish_local(
                build_err(
                    ER_LOCK_DEADLOCK,
                    "proxyd: the connection to the server was lost inside a transaction; "
                    "the transaction was rolled back, retry it",
                    b"40001",
                )
            )
            return
        retry = self.daemon.config.retry
        deadline = time.monotonic() + retry.timeout
        while True:
            try:
                backend = await self._ready_backend()
            except AcquireError as exc:
                err = exc.err
                payload = (
                    build_err(err.error_code, err.message, err.sql_state)
                    if err is not None
                    else build_err(ER_UNKNOWN_ERROR, str(exc))
                )
                self._finish_local(payload)
                return
            except BackendError as exc:
                # The backend died while we prepared it: nothing of the command was sent.
                log.info("session %s: backend lost before forwarding (%s); retrying", self.id, exc)
                self._drop_backend()
                if time.monotonic() < deadline:
                    continue
                self._finish_local(build_err(ER_UNKNOWN_ERROR, f"proxyd: {exc}"))
                return
            if isinstance(backend, ErrPacket):
                self._finish_local(
                    build_err(backend.error_code, backend.message, backend.sql_state)
                )
                return
            if self.state is State.CLOSED:
                return
            self._forward(backend)
            return

    async def _ready_backend(self) -> BackendConnection | ErrPacket:
        assert self.pool is not None
        backend = self.backend
        if backend is None or backend.closed:
            self.backend = None
            backend = await self.pool.acquire(self.profile)
            if self.state is State.CLOSED:
                self.pool.release(backend)
                raise AcquireError("client went away")
            self._hold(backend)
        while backend.busy:
            # A janitor ping is in flight; it calls backend_ready() when done.
            await asyncio.sleep(0.005)
            if backend.closed:
                raise BackendError("backend closed during ping")
        if self.schema is not None and backend.schema != self.schema:
            err = await backend.init_db(self.schema)
            if err is not None:
                return err
        err = await backend.apply_state(self.charset, self.vars)
        if err is not None:
            return err
        return backend

    def _forward(self, backend: BackendConnection) -> None:
        assert self.transport is not None
        self._to(State.IN_COMMAND)
        tracker = ResponseTracker(self._command[0], backend.capabilities, self.capabilities)
        self._tracker = tracker
        self._started = time.monotonic()
        backend.forward(encode_packet(self._command, 0), tracker, self.transport, self._answered)

    def _answered(self, tracker: ResponseTracker) -> None:
        """The backend streamed the whole answer (or paused for LOCAL INFILE)."""
        if self.state is State.CLOSED:
            return
        if tracker.awaiting_infile:
            self._to(State.INFILE)
            self._pump()
            return
        self._tracker = None
        self.daemon.stats.observe_query(time.monotonic() - self._started)
        self._absorb(tracker)
        self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    def _relay_infile(self, seq: int, payload: bytes) -> None:
        backend = self.backend
        tracker = self._tracker
        if backend is None or tracker is None:
            return
        backend.forward_more(encode_packet(payload, seq))
        if not payload:
            self._to(State.IN_COMMAND)
            backend.resume_after_infile(tracker)

    def _absorb(self, tracker: ResponseTracker) -> None:
        """Learn the client's new session state from the server's answer."""
        if tracker.status_flags:
            self.status_flags = tracker.status_flags & ~SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
        command = self._command[0] if self._command else 0
        if command == COMMAND.COM_STMT_PREPARE and tracker.prepare_ok is not None:
            self.prepared.add(tracker.prepare_ok.statement_id)
        for changes in tracker.state_changes:
            self._apply_changes(changes)

    def _apply_changes(self, changes: list[StateChange]) -> None:
        movable = False
        bare = False
        for c in changes:
            if c.type == SESSION_TRACK_SCHEMA:
                self.schema = c.name or None
                movable = True
            elif c.type == SESSION_TRACK_SYSTEM_VARIABLES:
                movable = True
                if c.name in UNMOVABLE_VARIABLES:
                    self.pins["variable"] = f"session variable {c.name.decode()} set"
                elif not c.name.startswith(b"session_track_"):
                    self.vars[c.name] = c.value
            elif c.type == SESSION_TRACK_STATE_CHANGE:
                bare = True
            elif c.type == SESSION_TRACK_TRANSACTION_CHARACTERISTICS:
                if c.name and not self.in_transaction:
                    self.pins["characteristics"] = "SET TRANSACTION for the next transaction"
                else:
                    self.pins.pop("characteristics", None)
            elif c.type == SESSION_TRACK_TRANSACTION_STATE:
                if c.name.endswith(b"L"):
                    self.pins["locks"] = "LOCK TABLES"
                else:
                    self.pins.pop("locks", None)
        if bare and not movable:
            self.pins["state"] = "user variables, temporary tables or prepared statements"

    def _maybe_release(self) -> None:
        backend = self.backend
        if backend is None or self.pool is None:
            return
        if self.daemon.config.pool.mode == "session":
            return
        if self.in_transaction or self.pinned:
            return
        self.backend = None
        self.pool.release(backend)

    def _finish_local(self, payload: bytes) -> None:
        """Answer the current command ourselves and go back to idle."""
        if self.state is State.CLOSED:
            return
        self._write(payload, 1)
        self._tracker = None
        self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    def _stmt_close(self, payload: bytes) -> None:
        try:
            stmt_id = Reader(payload, 1).u32()
        except ProtocolError:
            return
        self.prepared.discard(stmt_id)
        backend = self.backend
        if backend is not None and not backend.busy and not backend.closed:
            assert backend.transport is not None
            backend.transport.write(encode_packet(payload, 0))
        if not self.prepared:
            self._maybe_release()

    async def _reset_connection(self) -> None:
        """COM_RESET_CONNECTION: forget session state; reset the backend we hold."""
        self.vars = {}
        self.pins.clear()
        self.prepared.clear()
        self.status_flags = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
        self.lost_transaction = False
        backend = self.backend
        if backend is not None:
            backend.needs_reset = True
            self.backend = None
            assert self.pool is not None
            self.pool.release(backend)
        self._finish_local(self._ok())

    # -- backend events (called by the pool) ---------------------------------------

    def backend_lost(self, backend: BackendConnection, reason: str) -> None:
        if backend is not self.backend:
            return
        self.backend = None
        if self.state is State.CLOSED:
            return
        tracker = self._tracker
        if self.state in (State.IN_COMMAND, State.INFILE) and tracker is not None:
            self._tracker = None
            self._command_failed(tracker, reason)
            return
        if self.in_transaction:
            # The client is idle inside a transaction that no longer exists.
            self.lost_transaction = True
            log.warning("session %s: backend lost inside a transaction (%s)", self.id, reason)
        elif self.pinned:
            log.warning(
                "session %s: backend holding session state (%s) lost (%s); state is gone",
                self.id,
                ", ".join(self.pins.values()) or "prepared statements",
                reason,
            )
            self.pins.clear()
            self.prepared.clear()

    def backend_ready(self, backend: BackendConnection) -> None:
        """A background ping finished; nothing to do, the slow path polls."""

    def _command_failed(self, tracker: ResponseTracker, reason: str) -> None:
        """The backend died with our command in flight."""
        nothing_sent = not tracker.in_result_rows and tracker.last_seq < 0
        was_in_trans = self.in_transaction
        if nothing_sent and not was_in_trans and not self.pinned and _is_retry_safe(self._command):
            self._attempts += 1
            if self._attempts <= self.daemon.config.retry.max_attempts:
                self.daemon.stats.inc("retries")
                log.info(
                    "session %s: backend lost (%s); re-running a read-only command", self.id, reason
                )
                self._to(State.ACQUIRING)
                self._task = asyncio.get_running_loop().create_task(self._acquire_and_forward())
                return
        self.daemon.stats.inc("errors_passed_on")
        self.status_flags &= ~SERVER_STATUS.SERVER_STATUS_IN_TRANS
        self.pins.clear()
        self.prepared.clear()
        if was_in_trans:
            err = build_err(
                ER_LOCK_DEADLOCK,
                "proxyd: the connection to the server was lost inside a transaction; "
                "the transaction was rolled back, retry it",
                b"40001",
            )
        elif nothing_sent:
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: the connection to the server was lost ({reason}) while this statement "
                "ran; it may or may not have been applied",
            )
        else:
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: the connection to the server was lost ({reason}) "
                "in the middle of the result",
            )
        seq = tracker.last_seq + 1 if tracker.last_seq >= 0 else 1
        if self.state is State.INFILE:
            self._to(State.IN_COMMAND)
        self._write(err, seq)
        self._to(State.IDLE)
        self._pump()

    # -- helpers ---------------------------------------------------------------------

    def _ok(self) -> bytes:
        return build_ok(OkPacket(status_flags=self.status_flags), self.capabilities)

    def _write(self, payload: bytes, seq: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_packet(payload, seq))

    def _refuse(self, code: int, message: str, seq: int, sql_state: bytes = b"HY000") -> None:
        self._write(build_err(code, message, sql_state), seq)
        self._close()

    def _protocol_violation(self, reason: str) -> None:
        log.warning("client %s: protocol error: %s; closing", self.peer, reason)
        self.daemon.stats.inc("client_protocol_errors")
        self._refuse(ER_NET_PACKETS_OUT_OF_ORDER, f"proxyd: malformed packet: {reason}", seq=1)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._close_session()

    def _drop_backend(self) -> None:
        backend = self.backend
        self.backend = None
        if backend is not None:
            backend.holder = None
            backend.close("dropped")

    def _close_session(self) -> None:
        if self.state is State.CLOSED:
            return
        self._to(State.CLOSED)
        if self._login_timer is not None:
            self._login_timer.cancel()
        self.daemon.sessions.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        backend = self.backend
        self.backend = None
        if backend is not None:
            backend.holder = None
            if backend.busy:
                backend.abandon_forward()
                backend.close("client_gone")
            elif self.pool is not None:
                if self.pinned or self.in_transaction or backend.vars:
                    backend.needs_reset = bool(self.pinned or self.in_transaction)
                self.pool.release(backend)

    def idle_time(self) -> float:
        return time.monotonic() - self.last_active

    def wants_to_finish(self) -> bool:
        """For graceful shutdown: is something in flight that should complete?"""
        return (
            self.state in (State.ACQUIRING, State.IN_COMMAND, State.INFILE) or self.in_transaction
        )

    def goodbye(self) -> None:
        self._close()

    __slots_doc__ = "command_phase"


def expects_answer(command: int) -> bool:
    return expects_response(command)
