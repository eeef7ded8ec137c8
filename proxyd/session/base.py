"""The client session's fields, states and actions: the base of its sans-IO core.

SessionBase holds what every part of the core shares: the session's state (TRANSITIONS),
its ClientState, the command in flight, and the action methods through which the core
asks for I/O (send to the client, run a command on a server connection, release it,
close). proxyd/frontend.py implements the actions over asyncio; the core's tests record
them. The parts: login.py (connection phase, COM_CHANGE_USER), local.py (commands proxyd
answers itself), core.py (the command phase, and what a lost server connection means).
"""

from __future__ import annotations

import enum
import itertools
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, Protocol

from proxyd.protocol.constants import CLIENT, COMMAND
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import ServerLogin
from proxyd.protocol.messages import OkPacket, build_eof, build_err, build_ok
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.session.answers import ER_NET_PACKETS_OUT_OF_ORDER, ER_UNKNOWN_STMT_HANDLER
from proxyd.session.guard import LoginGuard
from proxyd.session.hints import NO_HINTS
from proxyd.session.identity import CLIENT_ID_TOP
from proxyd.session.record import StartState, TransactionRecord
from proxyd.session.state import ClientState, PreparedStatement

if TYPE_CHECKING:
    from proxyd.config import Config, UserConfig
    from proxyd.pool import Pool, Server
    from proxyd.pool.accounts import AccountLookup, Found
    from proxyd.pool.router import Router
    from proxyd.protocol.auth import Credentials
    from proxyd.stats import Stats

log = logging.getLogger("proxyd.frontend")


# How the server names, in its "unknown statement" ERR, the command it got.
_SERVER_FUNCTION = {
    COMMAND.COM_STMT_EXECUTE: "mysqld_stmt_execute",
    COMMAND.COM_STMT_RESET: "mysqld_stmt_reset",
    COMMAND.COM_STMT_FETCH: "mysqld_stmt_fetch",
}


class Host(Protocol):
    """What a client session uses of the running daemon, which passes itself."""

    stats: Stats
    config: Config
    sessions: set[Any]  # the running ClientSessions (proxyd/frontend.py)
    login_guard: LoginGuard
    logins_in_progress: int
    server: Server
    pools: dict[str, Pool]
    accepting: bool

    holding: bool  # new work waits: PAUSE, or no writable server
    primary_missing: bool

    @property
    def paused(self) -> bool: ...

    async def wait_unpaused(self) -> None: ...

    async def wait_for_primary(self) -> None: ...

    def server_version(self) -> bytes: ...

    def server_charset(self) -> int: ...

    def all_pools(self) -> list[Pool]: ...

    rsa_key: Any
    accounts: AccountLookup | None
    router: Router | None  # backend.reads: replicas, with several servers

    def user_config(self, name: str) -> UserConfig | None: ...

    def pool_for(self, user: UserConfig) -> Pool: ...

    def account_read(self, name: str, found: Found) -> None: ...


class ServerConnection(Protocol):
    """What the core reads and notes of the server connection running its commands
    (proxyd/server/connection.py's BackendConnection)."""

    closed: bool
    close_reason: str
    thread_id: int
    charset: int
    schema: bytes | None
    vars: dict[bytes, bytes]
    multi_statements: bool
    last_insert_id: int
    needs_reset: bool
    holder: object
    last_session: object
    pool: Any  # the Pool it belongs to

    @property
    def busy(self) -> bool: ...

    @property
    def forwarding(self) -> bool: ...

    def statement_id(self, sql: bytes) -> int | None: ...

    def remember_statement(self, sql: bytes, stmt_id: int) -> None: ...

    def forget_statement(self, sql: bytes | None = None) -> None: ...

    def close(self, reason: str = "closed") -> None: ...

    def kill_sent(self) -> None: ...

    def kill_answered(self) -> None: ...


class LoginGate(enum.Enum):
    UNCHECKED = 0
    WAITING = 1  # an address that failed to log in waits before its login is read
    OPEN = 2


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

# Counted down from the top of the signed 32-bit range, away from the server's thread
# ids (counted up from 1): the two never meet, so a KILL or a process list row says which
# it means (proxyd/session/identity.py).
_session_ids = itertools.count(CLIENT_ID_TOP, -1)
MAX_BUFFERED_INPUT = 1 << 20
RETRY_PAUSE = 0.05  # before the first re-run; doubles for each further one
MAX_LOGIN_PACKET = 64 * 1024
MAX_CHANGE_USER_FAILURES = 3  # then COM_CHANGE_USER is refused on that connection
CHANGE_USER_FAILURE_PAUSE = 1.0  # the server's own pause before answering a failure


class SessionBase:
    """See the module docstring."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self.id = next(_session_ids)
        self.state = State.AUTHENTICATING
        self.peer = "?"
        self.peer_host = "?"  # the address alone, for the login guard
        self.user = ""
        self.pool: Pool | None = None  # the user's pool, on the primary
        # The pool the command in flight takes a server connection from: the user's, or
        # a replica's for a read (session/routing.py); None: the user's.
        self._pool_now: Pool | None = None
        # Read-your-writes: the client's last write (its GTID), and the replicas known to
        # have applied it (by id of their Server).
        self._gtid_applied: tuple[bytes, set[int]] = (b"", set())
        self.backend: ServerConnection | None = None
        self.capabilities = 0
        self.tls = False  # the client asked for TLS (SSLRequest); its bytes are encrypted
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
        self._auth = ServerLogin(self._password_for, lambda: self.daemon.rsa_key)
        # A login (user, plugin, answer, seq) held while its account is read from the server.
        self._pending_login: tuple[bytes, bytes | None, bytes, int] | None = None
        self._auth_stage = False  # waiting for the answer to an AuthSwitchRequest
        self._login_gate = LoginGate.UNCHECKED  # the login guard's say on this connection
        self._pending_db: bytes | None = None
        self._pending_charset = 45
        self._change_user = False
        self._change_user_failures = 0
        self._tracker: ResponseTracker | None = None
        self._command: bytes = b""
        self._hints = NO_HINTS
        self._stmt: PreparedStatement | None = None
        self._last_backend: ServerConnection | None = None
        self._attempts = 0
        self._retry_deadline = 0.0
        self._verify_after = 0.0
        self._started = 0.0
        self._paused = False  # reading the client is paused: its input piled up
        # KILL QUERY of another client: (that client, the server connection running its
        # statement) until forwarded; then that connection, kept from other clients until
        # the KILL is answered (see _end_kill).
        self._kill_of: tuple[Any, ServerConnection] | None = None
        self._killing: ServerConnection | None = None
        # Transaction replay (session/replaying.py): the open transaction's record, the
        # session as the next transaction would start, whether state was held before it,
        # and whether the transaction's connection was lost between two statements.
        self._record: TransactionRecord | None = None
        self._txn_start: StartState | None = None
        self._held_before = False
        self._replay_owed = False

    def _password_for(self, user: bytes) -> Credentials | None:
        account = self.daemon.user_config(user.decode("utf-8", "replace"))
        return None if account is None else account.credentials()

    def _statement(self, payload: bytes) -> PreparedStatement | None:
        if len(payload) < 5:
            raise ProtocolError("statement command too short")
        stmt_id = int.from_bytes(payload[1:5], "little")
        stmt = self.cs.statements.get(stmt_id)
        if stmt is None:
            self._write(
                build_err(
                    ER_UNKNOWN_STMT_HANDLER,
                    f"Unknown prepared statement handler ({stmt_id}) given to "
                    + _SERVER_FUNCTION.get(payload[0], "mysqld_stmt_execute"),
                ),
                1,
            )
        return stmt

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

    def _maybe_release(self) -> None:
        if self.daemon.config.pool.mode == "session":
            return
        if self.cs.in_transaction or self.cs.pinned:
            return
        self._release_backend(reset=False)

    def _end_kill(self) -> None:
        """This session's KILL QUERY is answered (or will never be): the connection it
        aimed at may go to other clients again."""
        self._kill_of = None
        killing = self._killing
        if killing is not None:
            self._killing = None
            killing.kill_answered()

    def _finish_local(self, payload: bytes, seq: int = 1) -> None:
        """Answer the current command ourselves and go back to idle."""
        self._end_kill()
        if self.state is State.CLOSED:
            return
        self._write(payload, seq)
        self._tracker = None
        if self.state is not State.IDLE:
            self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    def _ok(self) -> bytes:
        return build_ok(OkPacket(status_flags=self.cs.status_flags), self.capabilities)

    def _eof_or_ok(self) -> bytes:
        if self.capabilities & CLIENT.DEPRECATE_EOF:
            return build_ok(
                OkPacket(status_flags=self.cs.status_flags, header=0xFE), self.capabilities
            )
        return build_eof(self.cs.status_flags)

    def _write(self, payload: bytes, seq: int) -> None:
        self.send(encode_packet(payload, seq))

    def _refuse(self, code: int, message: str, seq: int, sql_state: bytes = b"HY000") -> None:
        self._write(build_err(code, message, sql_state), seq)
        self._close()

    def _protocol_violation(self, reason: str) -> None:
        log.warning("client %s: protocol error: %s; closing", self.peer, reason)
        self.daemon.stats.inc("client_protocol_errors")
        self._refuse(ER_NET_PACKETS_OUT_OF_ORDER, f"proxyd: malformed packet: {reason}", seq=1)

    # -- actions: what the adapter (proxyd/frontend.py) does for the core -----------

    def send(self, data: bytes) -> None:
        """Write framed bytes to the client."""
        raise NotImplementedError

    def _close(self) -> None:
        """Close the client connection; the session ends (see _close_session)."""
        raise NotImplementedError

    def _start_tls(self, context: ssl.SSLContext, early: bytes) -> None:
        """Encrypt from here on; ``early`` is what the client sent after its SSLRequest
        (the start of its TLS handshake)."""
        raise NotImplementedError

    def _run(self) -> None:
        """Run ``self._command`` (past the gate) on a server connection brought to this
        session's state; its answer comes back through _answered or backend_lost."""
        raise NotImplementedError

    def _replay(self) -> None:
        """Replay the recorded transaction on another server connection, then call
        _replay_done (proxyd/replay.py)."""
        raise NotImplementedError

    def _replay_done(self, outcome: str, reason: str) -> None:
        """The replay's outcome (session/replaying.py)."""
        raise NotImplementedError

    def _rerun(self, pause: float) -> None:
        """Run the command again after ``pause`` seconds, on a verified connection."""
        raise NotImplementedError

    def _release_backend(self, reset: bool) -> None:
        """Give the server connection back to the pool (reset first if ``reset``)."""
        raise NotImplementedError

    def _relay_infile(self, seq: int, payload: bytes) -> None:
        """A packet of a LOCAL INFILE's contents, for the server."""
        raise NotImplementedError

    def _answer_later(self, pause: float, payload: bytes, seq: int) -> None:
        """Finish the command with ``payload`` after ``pause`` seconds."""
        raise NotImplementedError

    def _logged_in(self) -> None:
        """The login is over: the login timeout no longer applies."""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client (proxyd/session/core.py)."""
        raise NotImplementedError

    def _wait_before_login(self, delay: float) -> None:
        """Call _login_waited() in ``delay`` seconds (the login guard's wait)."""
        raise NotImplementedError

    def _read_account(self, name: str) -> None:
        """Read ``name``'s account from the server, then call _account_read(found)."""
        raise NotImplementedError

    def _account_read(self, found: Found) -> None:
        """The answer of _read_account (proxyd/session/login.py)."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        """Stop reading the client until resume_reading (input is piling up)."""

    def resume_reading(self) -> None:
        """Read the client again."""

    def goodbye(self) -> None:
        """Close this client (KILL CONNECTION, shutdown)."""
        self._close()

    def _pump(self) -> None:
        """Take client packets while nothing else is in flight (core.py)."""
        raise NotImplementedError
