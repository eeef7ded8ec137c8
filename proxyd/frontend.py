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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from proxyd.backend import (
    MARIADB_PROFILE_CAPABILITIES,
    PROFILE_CAPABILITIES,
    PROTOCOL_ERROR,
    BackendConnection,
    BackendError,
)
from proxyd.pool import AcquireError
from proxyd.protocol import auth
from proxyd.protocol.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COMMAND,
    MAX_PACKET_PAYLOAD,
    SERVER_STATUS,
)
from proxyd.protocol.errors import PacketTooLarge, ProtocolError
from proxyd.protocol.login import Outcome, ServerLogin
from proxyd.protocol.messages import (
    ErrPacket,
    HandshakeV10,
    OkPacket,
    build_eof,
    build_err,
    build_handshake_v10,
    build_ok,
    is_ssl_request,
    parse_handshake_response,
)
from proxyd.protocol.packets import PacketReader, Reader, encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.session_state import ClientState, PreparedStatement, charset_id
from proxyd.sqlhints import NO_HINTS, analyse, replace_connection_id, replace_previous_results
from proxyd.statements import cannot_commit, is_plain_rollback, is_retry_safe, uses_tables

if TYPE_CHECKING:
    from proxyd.config import Config
    from proxyd.metrics import Stats
    from proxyd.pool import Pool, Server


class Host(Protocol):
    """What a client session uses of the running daemon, which passes itself."""

    stats: Stats
    config: Config
    sessions: set[ClientSession]
    server: Server
    pools: dict[str, Pool]
    accepting: bool

    @property
    def paused(self) -> bool: ...

    async def wait_unpaused(self) -> None: ...

    def server_version(self) -> bytes: ...

    def server_charset(self) -> int: ...


log = logging.getLogger("proxyd.frontend")

# What proxyd offers clients (and so what it must be able to honour).
# CLIENT_MYSQL (the old LONG_PASSWORD bit) is left out, as MariaDB leaves it out: clients
# then send MariaDB's extended capabilities (see MARIADB_PROFILE_CAPABILITIES).
SERVER_CAPABILITIES = (
    CLIENT.FOUND_ROWS
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
ER_UNKNOWN_STMT_HANDLER = 1243
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
ER_NO_SUCH_THREAD = 1094
ER_NET_PACKET_TOO_LARGE = 1153
ER_QUERY_INTERRUPTED = 1317

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
class State(enum.Enum):
    # Members are singletons: hash them as objects, in C, not by name in Python (a
    # TRANSITIONS lookup happens twice per statement).
    __hash__ = object.__hash__

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
RETRY_PAUSE = 0.05  # before the first re-run; doubles for each further one
MAX_LOGIN_PACKET = 64 * 1024
MAX_CHANGE_USER_FAILURES = 3  # then COM_CHANGE_USER is refused on that connection
CHANGE_USER_FAILURE_PAUSE = 1.0  # the server's own pause before answering a failure


class ClientSession(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self.id = next(_session_ids)
        self.state = State.AUTHENTICATING
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.user = ""
        self.pool: Pool | None = None
        self.backend: BackendConnection | None = None
        self.capabilities = 0
        self.mariadb_capabilities = 0
        self.profile = 0
        self.connected_at = time.monotonic()
        self.last_active = self.connected_at
        self.cs = ClientState(0, 45, None)  # replaced at login
        # The answer owed to the next command after state held on a server connection
        # (a transaction, locks, variables...) was lost with it; see _gate().
        self._loss: bytes | None = None
        # Before login a peer gets to send a handshake response, nothing big.
        self._reader = PacketReader(max_payload=MAX_LOGIN_PACKET)
        self._auth = ServerLogin(self._password_for)
        self._auth_stage = False  # waiting for the answer to an AuthSwitchRequest
        self._pending_db: bytes | None = None
        self._pending_charset = 45
        self._change_user = False
        self._change_user_failures = 0
        self._login_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._tracker: ResponseTracker | None = None
        self._command: bytes = b""
        self._hints = NO_HINTS
        self._stmt: PreparedStatement | None = None
        self._last_backend: BackendConnection | None = None
        self._attempts = 0
        self._retry_deadline = 0.0
        self._verify_after = 0.0
        self._started = 0.0
        self._paused = False

    # -- state machine -----------------------------------------------------------

    def _to(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"session {self.id}: {self.state.value} -> {state.value}")
        self.state = state

    @property
    def in_transaction(self) -> bool:
        return self.cs.in_transaction

    @property
    def pinned(self) -> bool:
        return self.cs.pinned

    @property
    def pins(self) -> dict[str, str]:
        return self.cs.pins

    def pin_reasons(self) -> str:
        return self.cs.pin_reasons()

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
            log.warning("client %s: refused, max_client_connections reached", self.peer)
            self._refuse(ER_CON_COUNT, "Too many connections", seq=0)
            return
        daemon.sessions.add(self)
        self._login_timer = asyncio.get_running_loop().call_later(
            daemon.config.client_login_timeout, self._login_timed_out
        )
        greeting = HandshakeV10(
            server_version=daemon.server_version(),
            connection_id=self.id,
            auth_plugin_data=self._auth.scramble,
            capability_flags=SERVER_CAPABILITIES,
            character_set=daemon.server_charset(),
            status_flags=SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT,
            auth_plugin_name=auth.NATIVE_PASSWORD,
            mariadb_capabilities=daemon.server.mariadb_capabilities & MARIADB_PROFILE_CAPABILITIES,
        )
        self._write(build_handshake_v10(greeting), 0)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self.daemon.stats.counters["bytes_received"] += len(data)
        self._reader.feed(data)
        try:
            if self.state is State.AUTHENTICATING:
                self._authenticate()
            self._pump()
        except PacketTooLarge as exc:
            if self.state is State.AUTHENTICATING:
                self._protocol_violation(f"login {exc}")
                return
            # What the server itself answers, and like it, proxyd closes the connection.
            log.warning("client %s: packet above max_allowed_packet; closing", self.peer)
            self.daemon.stats.inc("client_protocol_errors")
            self._refuse(
                ER_NET_PACKET_TOO_LARGE,
                "Got a packet bigger than 'max_allowed_packet' bytes",
                seq=1,
                sql_state=b"08S01",
            )
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
        if self._auth_stage:
            self._authenticated(self._auth.switched(payload, seq))
            return
        if seq != 1:
            raise ProtocolError(f"handshake response with sequence id {seq} (expected 1)")
        if is_ssl_request(payload):
            self._refuse(ER_HANDSHAKE, "proxyd: TLS is not enabled on this listener", seq + 1)
            return
        response = parse_handshake_response(payload)
        self.capabilities = response.capability_flags & SERVER_CAPABILITIES
        self.mariadb_capabilities = (
            response.mariadb_capabilities
            & self.daemon.server.mariadb_capabilities
            & MARIADB_PROFILE_CAPABILITIES
        )
        self._pending_charset = response.character_set or self.daemon.server_charset()
        self._pending_db = response.database
        self._authenticated(
            self._auth.begin(
                response.username, response.auth_plugin_name, response.auth_response, seq
            )
        )

    def _password_for(self, user: bytes) -> bytes | None:
        account = self.daemon.config.users.get(user.decode("utf-8", "replace"))
        return None if account is None else account.password.encode()

    def _authenticated(self, outcome: Outcome) -> None:
        """Act on the password check of a login or a COM_CHANGE_USER."""
        login = self._auth
        for payload, seq in login.take_output():
            self._write(payload, seq)
        self._auth_stage = outcome is Outcome.SWITCHING
        if outcome is Outcome.SWITCHING:
            return
        name = login.user.decode("utf-8", "replace")
        if outcome is Outcome.DENIED:
            self.daemon.stats.inc("auth_failures")
            log.warning("client %s: access denied for user %r", self.peer, name)
            host = self.peer.rsplit(":", 1)[0]
            self._login_failed(
                ER_ACCESS_DENIED,
                f"Access denied for user '{name}'@'{host}' "
                f"(using password: {'YES' if login.used_password else 'NO'})",
                login.next_seq,
                b"28000",
            )
            return
        limit = self.daemon.config.users[name].max_connections
        if limit and sum(1 for s in self.daemon.sessions if s.user == name) >= limit:
            self._login_failed(
                ER_TOO_MANY_USER_CONNECTIONS,
                f"User '{name}' has exceeded the 'max_connections' resource "
                f"(current value: {limit})",
                login.next_seq,
                b"42000",
            )
            return
        if self._change_user:
            self._release_backend(reset=True)
        self.user = name
        self.pool = self.daemon.pools[name]
        self.profile = (self.capabilities & PROFILE_CAPABILITIES) | (
            self.mariadb_capabilities << 32
        )
        self.cs = ClientState(self.capabilities, self._pending_charset, self._pending_db)
        self._reader.max_payload = self.daemon.server.max_allowed_packet
        self._loss = None
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if self._change_user:
            self._change_user = False
            self._finish_local(self._ok(), login.next_seq)
        else:
            self._to(State.IDLE)
            self._write(self._ok(), login.next_seq)
        log.debug("client %s: session %s logged in as %s", self.peer, self.id, name)

    def _login_failed(self, code: int, message: str, seq: int, sql_state: bytes) -> None:
        """A refused login closes the connection; a refused COM_CHANGE_USER does not:
        as on the server, the session goes on as the previous user (its state reset, as
        COM_CHANGE_USER resets it before checking), after a second's pause against
        password guessing."""
        if not self._change_user:
            self._refuse(code, message, seq, sql_state=sql_state)
            return
        self._change_user = False
        self._change_user_failures += 1
        self._release_backend(reset=True)
        err = build_err(code, message, sql_state)
        self._spawn(self._answer_later(CHANGE_USER_FAILURE_PAUSE, err, seq))

    async def _answer_later(self, pause: float, payload: bytes, seq: int) -> None:
        await asyncio.sleep(pause)
        self._finish_local(payload, seq)

    def _login_timed_out(self) -> None:
        if self.state is State.AUTHENTICATING:
            log.info("client %s: no login within client_login_timeout", self.peer)
            self._refuse(ER_HANDSHAKE, "proxyd: login timed out", seq=2)

    # -- command phase -------------------------------------------------------------

    def _pump(self) -> None:
        """Take client packets while nothing else is in flight."""
        while self.state is State.IDLE or self.state is State.INFILE or self._auth_stage:
            packet = self._reader.next_packet()
            if packet is None:
                break
            seq, payload = packet
            if self._auth_stage:
                self._authenticated(self._auth.switched(payload, seq))
                continue
            if self.state is State.INFILE:
                self._relay_infile(seq, payload)
                continue
            if self._reader.first_seq != 0:
                raise ProtocolError(
                    f"command with sequence id {self._reader.first_seq} (expected 0)"
                )
            if not payload:
                raise ProtocolError("empty command packet")
            self._dispatch(payload)
        if self._reader.buffered > MAX_BUFFERED_INPUT and self.state is not State.IDLE:
            self.pause_reading()
        elif self._paused and self.state is State.IDLE:
            self.resume_reading()

    def _dispatch(self, payload: bytes) -> None:
        command = payload[0]
        stats = self.daemon.stats
        stats.inc("commands")
        if command == COMMAND.COM_QUERY:
            stats.inc("queries")
            self._hints = analyse(payload[1:])
            if self._hints is not NO_HINTS:
                rewritten = self._local_query(payload)
                if rewritten is None:
                    return
                payload = rewritten
        else:
            self._hints = NO_HINTS
            handler = self._LOCAL_COMMANDS.get(command)
            if handler is not None:
                handler(self, payload)
                return
            if command == COMMAND.COM_PROCESS_KILL:
                if len(payload) < 5:
                    raise ProtocolError("COM_PROCESS_KILL too short")
                rewritten = self._kill(False, int.from_bytes(payload[1:5], "little"))
                if rewritten is None:
                    return
                payload = rewritten
            if command in REFUSED_COMMANDS or command > COM_RESET_CONNECTION:
                self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
                return
        self._stmt = None
        if command in (COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_FETCH):
            stmt = self._statement(payload)
            if stmt is None:
                return
            if command == COMMAND.COM_STMT_FETCH and self.cs.cursor_statement != stmt.id:
                self._write(
                    build_err(
                        ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({stmt.id}) has no open cursor"
                    ),
                    1,
                )
                return
            self._stmt = stmt
        self._command = payload
        self._attempts = 0
        self._verify_after = 0.0
        if self._gate():
            return
        backend = self.backend
        if backend is None and not self.daemon.paused:
            assert self.pool is not None
            backend = self.pool.take_idle(self.profile, self.cs)
            if backend is not None:
                self._hold(backend)
        if backend is not None and not backend.busy and self._in_sync(backend):
            self._forward(backend)
        else:
            self._start(self._acquire_and_forward())

    def _local_query(self, payload: bytes) -> bytes | None:
        """Statements proxyd answers (None) or rewrites (the COM_QUERY to forward)."""
        hints = self._hints
        if hints.kill is not None:
            return self._kill(*hints.kill)
        if hints.set_names is not None:
            charset = charset_id(*hints.set_names)
            if charset is not None:
                # Movable state: recorded here, applied on whichever backend runs next.
                self.cs.set_charset(charset)
                self._write(self._ok(), 1)
                return None
        if hints.connection_id:
            return b"\x03" + replace_connection_id(payload[1:], self.id)
        return payload

    def _statement(self, payload: bytes) -> PreparedStatement | None:
        if len(payload) < 5:
            raise ProtocolError("statement command too short")
        stmt_id = int.from_bytes(payload[1:5], "little")
        stmt = self.cs.statements.get(stmt_id)
        if stmt is None:
            self._write(
                build_err(
                    ER_UNKNOWN_STMT_HANDLER,
                    f"Unknown prepared statement handler ({stmt_id}) given to mysqld_stmt_execute",
                ),
                1,
            )
        return stmt

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._to(State.ACQUIRING)
        self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A bug in the slow path must cost this client an ERR, never a hang."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("session %s: internal error", self.id, exc_info=task.exception())
        self._refuse(ER_UNKNOWN_ERROR, "proxyd: internal error; see proxyd's log", seq=1)

    def _in_sync(self, backend: BackendConnection) -> bool:
        cs = self.cs
        return (
            backend.charset == cs.charset
            and backend.vars == cs.vars
            and (cs.schema is None or backend.schema == cs.schema)
            and backend.multi_statements == cs.multi_statements
            and (
                not self._hints.reads_last_insert_id or backend.last_insert_id == cs.last_insert_id
            )
            and (self._stmt is None or backend.statement_id(self._stmt.sql) is not None)
        )

    def _hold(self, backend: BackendConnection) -> None:
        self.backend = backend
        backend.holder = self

    def _gate(self) -> bool:
        """The one check before a command may go to a server connection.

        A session in a transaction or holding state on its server connection goes on
        there or nowhere: once that connection is lost, whichever came first (its close,
        the close's callback, this command), the next command gets the loss answer
        (1213 for a transaction) instead of running on another connection outside the
        transaction. Returns True when the command was answered here.
        """
        backend = self.backend
        if backend is not None and backend.closed:
            self.backend_lost(backend, backend.close_reason or "closed")
        elif backend is None and self.cs.bound:
            self._note_lost("no server connection")
        loss = self._loss
        if loss is None:
            return False
        self._loss = None
        self.daemon.stats.inc("errors_passed_on")
        if loss is _LOST_TRANSACTION and is_plain_rollback(self._command):
            # What the client asks for has happened: the server rolled it back.
            loss = self._ok()
        if self.state is State.IDLE:
            self._write(loss, 1)  # from _dispatch: nothing started
        else:
            self._finish_local(loss)
        return True

    def _note_lost(self, reason: str) -> None:
        """The server connection holding this idle session's state is gone."""
        cs = self.cs
        in_transaction = cs.in_transaction
        lost = cs.lose_backend()
        if in_transaction:
            self._loss = _LOST_TRANSACTION
            log.warning("session %s: backend lost inside a transaction (%s)", self.id, reason)
        elif lost:
            self._loss = _lost_state_err(lost)
            log.warning(
                "session %s: backend holding %s lost (%s); that state is gone",
                self.id,
                lost,
                reason,
            )
        else:
            self.daemon.stats.inc("errors_hidden")

    async def _acquire_and_forward(self) -> None:
        """Slow path: get a backend, bring it to our state, then forward."""
        if self.daemon.paused and self.backend is None:
            # PAUSE (admin console): new work waits; a client holding a backend (in a
            # transaction, pinned) goes on, so that what is in flight can finish.
            await self.daemon.wait_unpaused()
        deadline = time.monotonic() + self.daemon.config.retry.timeout
        while True:
            if self._gate():
                return
            try:
                backend = await self._ready_backend()
            except AcquireError as exc:
                err = exc.err
                self.daemon.stats.inc("errors_passed_on")
                self._finish_local(
                    build_err(err.error_code, err.message, err.sql_state)
                    if err is not None
                    else build_err(ER_UNKNOWN_ERROR, str(exc))
                )
                return
            except BackendError as exc:
                # The backend died while we prepared it: nothing of the command was sent.
                # A session outside a transaction and holding no state moves on silently.
                self._drop_backend()
                if self._gate():
                    return
                log.info("session %s: backend lost before forwarding (%s); retrying", self.id, exc)
                self.daemon.stats.inc("errors_hidden")
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
            if self._gate():
                return
            self._forward(backend)
            return

    async def _rerun(self, pause: float) -> None:
        await asyncio.sleep(pause)
        await self._acquire_and_forward()

    async def _ready_backend(self) -> BackendConnection | ErrPacket:
        """A backend held for us and brought to this client's session state."""
        assert self.pool is not None
        backend = self.backend
        if backend is None or backend.closed:
            if self.cs.bound:
                # Never reached past _gate(); kept so that no path can move such a session.
                raise BackendError("the session's server connection is gone")
            backend = await self.pool.acquire(self.profile, verified_after=self._verify_after)
            if self.state is State.CLOSED:
                self.pool.release(backend)
                raise AcquireError("client went away")
            self._hold(backend)
        while backend.busy:
            # A janitor ping is in flight.
            await asyncio.sleep(0.002)
            if backend.closed:
                raise BackendError("backend closed during ping")
        cs = self.cs
        stats = self.daemon.stats
        if cs.schema is not None and backend.schema != cs.schema:
            stats.inc("state_replays")
            err = await backend.init_db(cs.schema)
            if err is not None:
                return err
        if backend.multi_statements != cs.multi_statements:
            await backend.set_multi_statements(cs.multi_statements)
        variables = cs.vars
        if self._hints.reads_last_insert_id and backend.last_insert_id != cs.last_insert_id:
            variables = {**variables, b"last_insert_id": str(cs.last_insert_id).encode()}
        if backend.charset != cs.charset or backend.vars != variables:
            stats.inc("state_replays")
            err = await backend.apply_state(cs.charset, variables)
            if err is not None:
                return err
            if b"last_insert_id" in variables:
                backend.vars.pop(b"last_insert_id", None)
                backend.last_insert_id = cs.last_insert_id
        stmt = self._stmt
        if stmt is not None and backend.statement_id(stmt.sql) is None:
            stats.inc("reprepares")
            result = await backend.prepare(stmt.sql)
            if isinstance(result, ErrPacket):
                return result
        return backend

    def _forward(self, backend: BackendConnection) -> None:
        assert self.transport is not None
        self._to(State.IN_COMMAND)
        payload = self._command
        command = payload[0]
        tracker = ResponseTracker(command, backend.capabilities, self.capabilities)
        if command == COMMAND.COM_STMT_PREPARE:
            tracker.statement_id = self.cs.next_statement_id
        self._tracker = tracker
        self._started = time.monotonic()
        backend.read_timeout = self.daemon.config.backend.read_timeout
        hints = self._hints
        if (hints.reads_row_count or hints.reads_found_rows) and (
            backend is not self._last_backend or backend.last_session is not self
        ):
            # Those counts describe this server connection's previous statement, which
            # was not this client's: give the client its own, from its last answer.
            payload = b"\x03" + replace_previous_results(
                payload[1:], self.cs.row_count, self.cs.found_rows
            )
        self._last_backend = backend
        backend.last_session = self
        stmt = self._stmt
        if stmt is None:
            packet = encode_packet(payload, 0)
        else:
            packet = self._statement_packets(backend, stmt, payload)
        backend.forward(packet, tracker, self.transport, self._answered)

    def _statement_packets(
        self, backend: BackendConnection, stmt: PreparedStatement, payload: bytes
    ) -> bytes:
        """The client's statement command, speaking of this backend's statement id."""
        server_id = backend.statement_id(stmt.sql)
        assert server_id is not None
        sid = server_id.to_bytes(4, "little")
        out = []
        if payload[0] == COMMAND.COM_STMT_EXECUTE:
            for chunk in stmt.long_data:
                out.append(
                    encode_packet(bytes((COMMAND.COM_STMT_SEND_LONG_DATA,)) + sid + chunk, 0)
                )
            payload = self._with_param_types(stmt, payload)
        out.append(encode_packet(payload[:1] + sid + payload[5:], 0))
        return b"".join(out)

    @staticmethod
    def _with_param_types(stmt: PreparedStatement, payload: bytes) -> bytes:
        """Always send parameter types: this backend's copy may have others bound."""
        n = stmt.num_params
        if n == 0:
            return payload
        bound_at = 10 + (n + 7) // 8
        if len(payload) <= bound_at:
            raise ProtocolError("COM_STMT_EXECUTE too short for its parameters")
        if payload[bound_at] == 1:
            stmt.param_types = payload[bound_at + 1 : bound_at + 1 + 2 * n]
            return payload
        if stmt.param_types is None:
            return payload
        return payload[:bound_at] + b"\x01" + stmt.param_types + payload[bound_at + 1 :]

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
        if self._stmt is not None:
            self._stmt.long_data.clear()  # kept until now for a re-run
        self._absorb(tracker)
        self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    def _absorb(self, tracker: ResponseTracker) -> None:
        cs = self.cs
        command = self._command[0]
        was_in_transaction = cs.in_transaction
        cs.absorb(
            command,
            tracker,
            self._hints,
            uses_tables="warnings" not in cs.pins or uses_tables(command, self._command),
        )
        if was_in_transaction and not cs.in_transaction:
            self.daemon.stats.inc("transactions")
        backend = self.backend
        if backend is not None and tracker.ok is not None and tracker.ok.last_insert_id:
            backend.last_insert_id = tracker.ok.last_insert_id
        prep = tracker.prepare_ok
        if command == COMMAND.COM_STMT_PREPARE and prep is not None:
            stmt_id = cs.next_statement_id
            cs.next_statement_id += 1
            sql = self._command[1:]
            cs.statements[stmt_id] = PreparedStatement(
                stmt_id, sql, prep.num_params, prep.num_columns
            )
            if backend is not None:
                backend.remember_statement(sql, prep.statement_id)
        elif command == COMMAND.COM_STMT_EXECUTE and "cursor" in cs.pins and self._stmt is not None:
            cs.cursor_statement = self._stmt.id

    def _relay_infile(self, seq: int, payload: bytes) -> None:
        backend = self.backend
        tracker = self._tracker
        if backend is None or tracker is None:
            return
        backend.forward_more(encode_packet(payload, seq))
        if not payload:
            self._to(State.IN_COMMAND)
            backend.resume_after_infile(tracker)

    def _maybe_release(self) -> None:
        if self.daemon.config.pool.mode == "session":
            return
        if self.cs.in_transaction or self.cs.pinned:
            return
        self._release_backend(reset=False)

    def _release_backend(self, reset: bool) -> None:
        backend = self.backend
        if backend is None or self.pool is None:
            return
        self.backend = None
        if reset:
            backend.needs_reset = True
        self.pool.release(backend)

    def _finish_local(self, payload: bytes, seq: int = 1) -> None:
        """Answer the current command ourselves and go back to idle."""
        if self.state is State.CLOSED:
            return
        self._write(payload, seq)
        self._tracker = None
        if self.state is not State.IDLE:
            self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    # -- commands proxyd answers itself -------------------------------------------

    def _com_quit(self, payload: bytes) -> None:
        self._close()

    def _com_ping(self, payload: bytes) -> None:
        self._write(self._ok(), 1)

    def _com_stmt_close(self, payload: bytes) -> None:
        if len(payload) < 5:
            return
        stmt_id = int.from_bytes(payload[1:5], "little")
        stmt = self.cs.statements.pop(stmt_id, None)
        if stmt is not None and self.cs.cursor_statement == stmt_id:
            self._close_cursor(stmt)
        # The backend keeps its copy for the next client that prepares the same SQL.

    def _com_stmt_reset(self, payload: bytes) -> None:
        stmt = self._statement(payload)
        if stmt is None:
            return
        stmt.long_data.clear()
        if self.cs.cursor_statement == stmt.id:
            self._close_cursor(stmt)
        self._write(self._ok(), 1)

    def _close_cursor(self, stmt: PreparedStatement) -> None:
        # Closing the server's statement closes its cursor; it is prepared again if needed.
        self.cs.cursor_statement = None
        self.cs.pins.pop("cursor", None)
        backend = self.backend
        if backend is not None and backend.statement_id(stmt.sql) is not None:
            backend.forget_statement(stmt.sql)
        self._maybe_release()

    def _com_stmt_send_long_data(self, payload: bytes) -> None:
        # Kept until the execute, which may run on another backend; no answer is sent.
        if len(payload) < 7:
            return
        stmt = self.cs.statements.get(int.from_bytes(payload[1:5], "little"))
        if stmt is not None:
            stmt.long_data.append(payload[5:])

    def _com_set_option(self, payload: bytes) -> None:
        if len(payload) < 3 or payload[1] not in (0, 1):
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
            return
        self.cs.multi_statements = payload[1] == 0
        self._write(self._eof_or_ok(), 1)

    def _com_reset_connection(self, payload: bytes) -> None:
        self.cs.reset()
        self._loss = None
        self._release_backend(reset=True)
        self._write(self._ok(), 1)

    def _com_change_user(self, payload: bytes) -> None:
        if self._change_user_failures >= MAX_CHANGE_USER_FAILURES:
            # MariaDB's answer once a connection failed three times (MDEV-3915).
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
            return
        r = Reader(payload, 1)
        user = r.nul_str()
        secure = self.capabilities & CLIENT.SECURE_CONNECTION
        response = r.take(r.u8()) if secure else r.nul_str()
        self._pending_db = r.nul_str_or_rest() or None if r.remaining() else None
        self._pending_charset = r.u16() & 0xFF if r.remaining() >= 2 else self.cs.charset
        plugin = None
        if r.remaining() and self.capabilities & CLIENT.PLUGIN_AUTH:
            plugin = r.nul_str_or_rest()
        self.cs.reset()  # the server resets the session before it checks the password
        self._loss = None
        self._change_user = True
        self._to(State.ACQUIRING)
        self._authenticated(self._auth.begin(user, plugin, response, 0))

    def _kill(self, query_only: bool, target_id: int) -> bytes | None:
        """KILL [QUERY] <id>, where the id is one proxyd showed a client (its session id).

        Killing a connection closes that client and with it any backend it is using;
        killing a query runs KILL QUERY on the server for the backend running it.
        Returns the COM_QUERY to forward, or None when answered here.
        """
        target = next((s for s in self.daemon.sessions if s.id == target_id), None)
        if target is None or target.user != self.user:
            self._write(build_err(ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}"), 1)
            return None
        backend = target.backend
        if target is self:
            if query_only:
                self._write(
                    build_err(ER_QUERY_INTERRUPTED, "Query execution was interrupted", b"70100"), 1
                )
            else:
                self.goodbye()
            return None
        if not query_only:
            target.goodbye()
            self._write(self._ok(), 1)
            return None
        if target.state is State.IN_COMMAND and backend is not None:
            self._hints = NO_HINTS
            return b"\x03" + f"KILL QUERY {backend.thread_id}".encode()
        self._write(self._ok(), 1)
        return None

    _LOCAL_COMMANDS: ClassVar[dict[int, Callable[[ClientSession, bytes], None]]] = {}

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
        self._note_lost(reason)

    def _command_failed(self, tracker: ResponseTracker, reason: str) -> None:
        """The backend died with our command in flight."""
        nothing_sent = not tracker.in_result_rows and tracker.last_seq < 0
        cs = self.cs
        was_in_trans = cs.in_transaction
        command, stmt = self._command, self._stmt
        prepared = stmt.sql if stmt is not None else None
        # An answer proxyd could not follow would fail the same way again: not re-run.
        garbled = reason.startswith(PROTOCOL_ERROR)
        if nothing_sent and not cs.bound and not garbled and is_retry_safe(command, prepared):
            # retry.max_attempts counts tries in total, the first included.
            retry = self.daemon.config.retry
            now = time.monotonic()
            if self._attempts == 0:
                self._retry_deadline = now + retry.timeout
            self._attempts += 1
            if self._attempts < retry.max_attempts and now < self._retry_deadline:
                self.daemon.stats.inc("retries")
                self.daemon.stats.inc("errors_hidden")
                log.info(
                    "session %s: backend lost (%s); re-running a read-only command", self.id, reason
                )
                # Whatever killed that connection (a KILL round, a restart) may have killed
                # the idle ones too: re-run on one heard from since, after a short pause.
                self._verify_after = now
                pause = min(RETRY_PAUSE * 2 ** (self._attempts - 1), self._retry_deadline - now)
                self._to(State.ACQUIRING)
                self._spawn(self._rerun(pause))
                return
        self.daemon.stats.inc("errors_passed_on")
        if stmt is not None:
            stmt.long_data.clear()
        lost = cs.lose_backend()
        also = f"; lost with it: {lost}" if lost and not was_in_trans else ""
        if was_in_trans and nothing_sent and is_plain_rollback(command):
            err = self._ok()  # rolled back either way
        elif was_in_trans and cannot_commit(command, prepared):
            err = _LOST_TRANSACTION
        elif was_in_trans:
            # A COMMIT (or a statement that commits implicitly) whose answer never came:
            # the server may have committed before the connection died. Saying "rolled
            # back" would have the client apply it twice.
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: the connection to the server was lost ({reason}) while this statement "
                "ran inside a transaction; the transaction may or may not have been applied",
            )
        elif garbled:
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: could not follow the server's answer ({reason}); the connection to "
                f"the server was closed, the statement may or may not have been applied{also}",
            )
        elif nothing_sent:
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: the connection to the server was lost ({reason}) while this statement "
                f"ran; it may or may not have been applied{also}",
            )
        else:
            err = build_err(
                ER_UNKNOWN_ERROR,
                f"proxyd: the connection to the server was lost ({reason}) "
                f"in the middle of the result{also}",
            )
        seq = tracker.last_seq + 1 if tracker.last_seq >= 0 else 1
        if self.state is State.INFILE:
            self._to(State.IN_COMMAND)
        owed = tracker.unfinished_packet
        if owed and self.transport is not None and owed < MAX_PACKET_PAYLOAD:
            # Complete the row the client is reading (zeros read as empty values), so the
            # ERR that follows is read as a packet, not as the rest of that row.
            self.transport.write(b"\x00" * owed)
        self._write(err, seq)
        if tracker.done:
            # The answer looked whole when bytes came after it: the client may have read
            # it as such, and would take this ERR for the answer to its next command.
            log.warning("session %s: closing the client after an unfollowable answer", self.id)
            self._close()
            return
        self._to(State.IDLE)
        self._pump()

    # -- helpers ---------------------------------------------------------------------

    def _ok(self) -> bytes:
        return build_ok(OkPacket(status_flags=self.cs.status_flags), self.capabilities)

    def _eof_or_ok(self) -> bytes:
        if self.capabilities & CLIENT.DEPRECATE_EOF:
            return build_ok(
                OkPacket(status_flags=self.cs.status_flags, header=0xFE), self.capabilities
            )
        return build_eof(self.cs.status_flags)

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
        """Close the held backend; its loss reaches backend_lost like any other."""
        backend = self.backend
        if backend is not None:
            backend.close("dropped")
        self.backend = None

    def _close_session(self) -> None:
        """The client is gone (COM_QUIT, RST, timeout, KILL CLIENT): what its server
        connection holds for it ends now, not at that connection's next hand-out."""
        was = self.state
        if was is State.CLOSED:
            return
        self._to(State.CLOSED)
        if self._login_timer is not None:
            self._login_timer.cancel()
        self.daemon.sessions.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        backend = self.backend
        self.backend = None
        if backend is None:
            return
        backend.holder = None
        if self.pool is None:
            backend.close("client_gone")
        elif was is State.IN_COMMAND and backend.forwarding:
            self.pool.abandon(backend)
        elif backend.busy or was is State.INFILE:
            # Mid-way through proxyd's own command, or a LOCAL INFILE half sent.
            backend.close("client_gone")
        else:
            # Rolls back, releases locks, drops temporary tables, before anyone waits.
            backend.needs_reset = self.cs.pinned or self.cs.in_transaction
            self.pool.release(backend)

    def idle_time(self) -> float:
        return time.monotonic() - self.last_active

    def wants_to_finish(self) -> bool:
        """For graceful shutdown: is something in flight that should complete?"""
        return (
            self.state in (State.ACQUIRING, State.IN_COMMAND, State.INFILE)
            or self.cs.in_transaction
        )

    def goodbye(self) -> None:
        self._close()


ClientSession._LOCAL_COMMANDS.update(
    {
        COMMAND.COM_QUIT: ClientSession._com_quit,
        COMMAND.COM_PING: ClientSession._com_ping,
        COMMAND.COM_STMT_CLOSE: ClientSession._com_stmt_close,
        COMMAND.COM_STMT_RESET: ClientSession._com_stmt_reset,
        COMMAND.COM_STMT_SEND_LONG_DATA: ClientSession._com_stmt_send_long_data,
        COMMAND.COM_SET_OPTION: ClientSession._com_set_option,
        COM_RESET_CONNECTION: ClientSession._com_reset_connection,
        COMMAND.COM_CHANGE_USER: ClientSession._com_change_user,
    }
)


_LOST_TRANSACTION = build_err(
    ER_LOCK_DEADLOCK,
    "proxyd: the connection to the server was lost inside a transaction; "
    "the transaction was rolled back, retry it",
    b"40001",
)


def _lost_state_err(lost: str) -> bytes:
    # The command is not run: without that state it could do something else than meant
    # (a user variable read as NULL, a temporary table's name resolving to a real one).
    return build_err(
        ER_UNKNOWN_ERROR,
        f"proxyd: the connection to the server was lost, and with it this session's {lost}; "
        "the statement was not run, the session goes on without that state",
    )
