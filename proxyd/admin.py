"""The admin console: a small MySQL server on ``admin.listen`` for operators.

Any MySQL client works (``mariadb -h127.0.0.1 -P6032 -uadmin -p``, PyMySQL...). It logs
in with ``admin.user``/``admin.password`` (mysql_native_password, checked as the frontend
checks application users) and then answers COM_QUERY with real result sets:

  SHOW POOLS            per user: clients active/waiting/idle, backends active/idle/max,
                        the longest current wait
  SHOW CLIENTS          each client: id, user, address, state, backend, idle time, pins
  SHOW SERVERS          each backend connection: id on the server, age, idle time, learned
                        wait_timeout, last ping, state
  SHOW STATS            counters: queries, retries, errors hidden and passed on, recycles
                        by reason, pings...
  SHOW CONFIG           the running config, passwords shown as ***
  SHOW VERSION
  SHOW HELP             this list
  RELOAD                re-read the config file (as SIGHUP); ERR with the reason if rejected
  PAUSE / RESUME        hold new commands while the backend is under maintenance
  RECONNECT             replace every backend connection as it becomes idle
  KILL CLIENT <id>      close one client connection
  SHUTDOWN              stop gracefully (as SIGTERM)

plus what clients send on their own: ``select @@version_comment limit 1`` (the mariadb
and mysql command-line clients), ``SET ...`` (drivers setting up the session) and
COM_PING/COM_INIT_DB, all acknowledged. Anything else is an ERR.

``Console`` holds the statements and does no I/O; ``AdminSession`` is the wire.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from proxyd import __version__
from proxyd.config import Config, redacted
from proxyd.protocol import auth
from proxyd.protocol.constants import CLIENT, COM_RESET_CONNECTION, COMMAND, SERVER_STATUS
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import Outcome, ServerLogin
from proxyd.protocol.messages import (
    HandshakeV10,
    OkPacket,
    build_err,
    build_handshake_v10,
    build_ok,
    is_ssl_request,
    parse_handshake_response,
)
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.resultset import encode_text_result
from proxyd.registry import PoolSummary, ReloadResult

if TYPE_CHECKING:
    from proxyd.backend import BackendConnection
    from proxyd.frontend import ClientSession
    from proxyd.metrics import Stats
    from proxyd.pool import Pool


class ServerInfo(Protocol):
    version: bytes | None


class Operated(Protocol):
    """What the console reads and drives of the running daemon, which passes itself."""

    stats: Stats
    config: Config
    admin_sessions: set[AdminSession]

    @property
    def server(self) -> ServerInfo: ...

    @property
    def sessions(self) -> Collection[ClientSession]: ...

    def uptime(self) -> float: ...

    async def reload(self) -> ReloadResult: ...

    async def pause(self) -> str: ...

    def resume(self) -> str: ...

    def reconnect(self) -> int: ...

    def kill_client(self, session_id: int) -> bool: ...

    def request_shutdown(self) -> None: ...

    def all_pools(self) -> list[Pool]: ...

    def pool_summaries(self) -> list[PoolSummary]: ...


__all__ = ["AdminSession", "Console", "Done", "Failed", "ResultSet", "flatten_config"]

log = logging.getLogger("proxyd.admin")

ADMIN_CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.LONG_FLAG
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.PROTOCOL_41
    | CLIENT.INTERACTIVE
    | CLIENT.IGNORE_SIGPIPE
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.DEPRECATE_EOF
)
# Clients read the leading number as the server's version; MariaDB's 5.5.5- prefix keeps
# old clients from mistaking 10.x for something ancient.
ADMIN_SERVER_VERSION = b"5.5.5-10.11.0-proxyd-admin"
VERSION_COMMENT = f"proxyd {__version__} admin console"
STATUS = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT

ER_HANDSHAKE = 1043
ER_ACCESS_DENIED = 1045
ER_UNKNOWN_COM = 1047
ER_PARSE_ERROR = 1064
ER_NO_SUCH_THREAD = 1094
ER_UNKNOWN_ERROR = 1105

# Column types (MYSQL_TYPE_*): drivers turn INT and REAL columns into numbers.
TEXT, INT, REAL = 0xFD, 0x08, 0x05


# -- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResultSet:
    columns: tuple[tuple[str, int], ...]  # (name, type)
    rows: list[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Done:
    info: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    code: int
    message: str
    sql_state: bytes = b"HY000"


Answer = ResultSet | Done | Failed


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def flatten_config(config: Config) -> dict[str, object]:
    """``{"pool.max_size": 20, "users[app].password": "***", ...}``, passwords redacted."""
    out: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                label = item["name"] if isinstance(item, dict) and "name" in item else index
                walk(item, f"{key}[{label}]")
        else:
            out[key] = value

    walk(redacted(config), "")
    return out


# -- the statements ---------------------------------------------------------------------------

HELP = (
    ("SHOW POOLS", "per user: clients and backends by state, longest wait"),
    ("SHOW CLIENTS", "client connections: state, backend, idle time, pinned and why"),
    ("SHOW SERVERS", "backend connections: server thread id, age, idle, wait_timeout, pings"),
    ("SHOW STATS", "counters since start"),
    ("SHOW CONFIG", "the running configuration (passwords hidden)"),
    ("SHOW VERSION", "proxyd and server versions"),
    ("SHOW HELP", "this list"),
    ("RELOAD", "re-read the config file; the old one stays if the new one is invalid"),
    ("PAUSE", "hold new commands, wait for running ones, close idle backends"),
    ("RESUME", "end PAUSE"),
    ("RECONNECT", "replace every backend connection as it becomes idle"),
    ("KILL CLIENT <id>", "close a client connection"),
    ("SHUTDOWN", "stop gracefully, as SIGTERM"),
)

_KILL_CLIENT = re.compile(r"KILL\s+CLIENT\s+(\S+)", re.IGNORECASE)


def normalise(sql: str) -> str:
    """One statement, upper-cased, whitespace collapsed, without a trailing semicolon."""
    return " ".join(sql.split()).rstrip("; ").upper()


class Console:
    """The admin statements: each returns an Answer; no I/O."""

    def __init__(self, daemon: Operated) -> None:
        self.daemon = daemon
        self._statements: dict[str, Callable[[], Awaitable[Answer]]] = {
            "SHOW POOLS": self.show_pools,
            "SHOW CLIENTS": self.show_clients,
            "SHOW SERVERS": self.show_servers,
            "SHOW STATS": self.show_stats,
            "SHOW CONFIG": self.show_config,
            "SHOW VERSION": self.show_version,
            "SHOW HELP": self.show_help,
            "RELOAD": self.reload,
            "PAUSE": self.pause,
            "RESUME": self.resume,
            "RECONNECT": self.reconnect,
            "SHUTDOWN": self.shutdown,
        }

    async def execute(self, sql: str) -> Answer:
        statement = normalise(sql)
        handler = self._statements.get(statement)
        if handler is not None:
            return await handler()
        kill = _KILL_CLIENT.fullmatch(statement)
        if kill is not None:
            return self.kill_client(kill.group(1))
        if statement.startswith("SELECT @@VERSION_COMMENT"):
            return ResultSet((("@@version_comment", TEXT),), [(VERSION_COMMENT,)])
        if statement.startswith("SET ") or statement == "":
            return Done()  # drivers' session setup (SET NAMES, SET autocommit...)
        shown = " ".join(sql.split())[:80]
        return Failed(
            ER_PARSE_ERROR,
            f"proxyd admin: unknown command {shown!r}; SHOW HELP lists the commands",
            b"42000",
        )

    async def show_pools(self) -> Answer:
        rows: list[tuple[object, ...]] = [
            (
                p.user,
                p.mode + (" (user removed)" if p.removed else ""),
                p.clients_active,
                p.clients_waiting,
                p.clients_idle,
                p.backends_active,
                p.backends_idle,
                p.backends_connecting,
                p.backends_max,
                _seconds(p.longest_wait),
            )
            for p in self.daemon.pool_summaries()
        ]
        columns = (
            ("user", TEXT),
            ("mode", TEXT),
            ("cl_active", INT),
            ("cl_waiting", INT),
            ("cl_idle", INT),
            ("sv_active", INT),
            ("sv_idle", INT),
            ("sv_connecting", INT),
            ("sv_max", INT),
            ("maxwait", REAL),
        )
        return ResultSet(columns, rows)

    async def show_clients(self) -> Answer:
        now = time.monotonic()
        rows: list[tuple[object, ...]] = []
        for s in sorted(self.daemon.sessions, key=lambda s: s.id):
            reasons = (["open transaction"] if s.in_transaction else []) + list(s.pins.values())
            rows.append(
                (
                    s.id,
                    s.user or None,
                    s.peer,
                    s.state.value,
                    s.backend.thread_id if s.backend is not None else None,
                    _yes_no(s.in_transaction),
                    _seconds(s.idle_time()),
                    _seconds(now - s.connected_at),
                    ", ".join(reasons) or None,
                )
            )
        columns = (
            ("id", INT),
            ("user", TEXT),
            ("address", TEXT),
            ("state", TEXT),
            ("backend_thread_id", INT),
            ("in_transaction", TEXT),
            ("idle", REAL),
            ("connected", REAL),
            ("pinned", TEXT),
        )
        return ResultSet(columns, rows)

    async def show_servers(self) -> Answer:
        now = time.monotonic()
        rows: list[tuple[object, ...]] = []
        for pool in self.daemon.all_pools():
            idle = set(pool.idle)
            for conn in sorted(pool.conns, key=lambda c: c.id):
                rows.append(
                    (
                        pool.name,
                        conn.id,
                        conn.thread_id,
                        str(conn.address),
                        _backend_state(conn, idle),
                        conn.holder.id if conn.holder is not None else None,
                        _seconds(conn.age),
                        _seconds(conn.idle_for),
                        _seconds(conn.wait_timeout),
                        _seconds(now - conn.last_ping) if conn.last_ping else None,
                        conn.uses,
                        _yes_no(_retiring(pool, conn)),
                    )
                )
        columns = (
            ("user", TEXT),
            ("id", INT),
            ("thread_id", INT),
            ("address", TEXT),
            ("state", TEXT),
            ("client", INT),
            ("age", REAL),
            ("idle", REAL),
            ("wait_timeout", REAL),
            ("last_ping", REAL),
            ("uses", INT),
            ("retiring", TEXT),
        )
        return ResultSet(columns, rows)

    async def show_stats(self) -> Answer:
        from proxyd.metrics import COUNTERS

        counters = self.daemon.stats.counters
        rows: list[tuple[object, ...]] = [(name, counters[name]) for name in COUNTERS]
        rows += [(f"recycled_{reason}", n) for reason, n in self.daemon.stats.recycled().items()]
        shown = {row[0] for row in rows}
        rows += [(name, n) for name, n in sorted(counters.items()) if name not in shown]
        rows.append(("uptime_seconds", round(self.daemon.uptime())))
        return ResultSet((("stat", TEXT), ("value", INT)), rows)

    async def show_config(self) -> Answer:
        rows: list[tuple[object, ...]] = [
            (key, None if value is None else str(value))
            for key, value in flatten_config(self.daemon.config).items()
        ]
        return ResultSet((("key", TEXT), ("value", TEXT)), rows)

    async def show_version(self) -> Answer:
        server = self.daemon.server.version
        row = (
            f"proxyd {__version__}",
            server.decode(errors="replace") if server else None,
            f"{platform.python_implementation()} {platform.python_version()}",
            round(self.daemon.uptime()),
        )
        columns = (("version", TEXT), ("server_version", TEXT), ("python", TEXT), ("uptime", INT))
        return ResultSet(columns, [row])

    async def show_help(self) -> Answer:
        return ResultSet((("command", TEXT), ("description", TEXT)), list(HELP))

    async def reload(self) -> Answer:
        result = await self.daemon.reload()
        if result.ok:
            return Done(f"reloaded: {result.message}")
        return Failed(ER_UNKNOWN_ERROR, f"proxyd: reload rejected: {result.message}")

    async def pause(self) -> Answer:
        return Done(await self.daemon.pause())

    async def resume(self) -> Answer:
        return Done(self.daemon.resume())

    async def reconnect(self) -> Answer:
        count = self.daemon.reconnect()
        return Done(f"replacing {count} backend connections as they become idle")

    def kill_client(self, argument: str) -> Answer:
        if not argument.isdigit():
            return Failed(ER_PARSE_ERROR, "usage: KILL CLIENT <id> (see SHOW CLIENTS)", b"42000")
        if not self.daemon.kill_client(int(argument)):
            return Failed(ER_NO_SUCH_THREAD, f"Unknown client id: {argument}")
        return Done()

    async def shutdown(self) -> Answer:
        log.info("SHUTDOWN from the admin console")
        # After this answer is written: the caller writes it before yielding.
        asyncio.get_running_loop().call_soon(self.daemon.request_shutdown)
        return Done("shutting down")


def _backend_state(conn: BackendConnection, idle: set[BackendConnection]) -> str:
    if conn in idle:
        return "idle"
    if conn.holder is not None:
        return "active"
    if conn.busy:
        return "checking"  # ping or reset of proxyd's own
    return "handing_over"


def _retiring(pool: Pool, conn: BackendConnection) -> bool:
    return conn.created_at < pool.drain_before or conn.address != pool.server.config.address


# -- the wire ---------------------------------------------------------------------------------


class AdminSession(asyncio.Protocol):
    """One admin connection: log in, then one statement at a time."""

    def __init__(self, daemon: Operated) -> None:
        self.daemon = daemon
        self.console = Console(daemon)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.capabilities = 0
        self.authenticated = False
        self.closed = False
        self._reader = PacketReader()
        self._auth = ServerLogin(self._password_for)
        self._auth_switched = False
        self._user = ""
        self._busy = False
        self._task: asyncio.Task[None] | None = None  # the statement running, kept alive
        self._login_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        self.daemon.admin_sessions.add(self)
        self._login_timer = asyncio.get_running_loop().call_later(
            self.daemon.config.client_login_timeout, self._login_timed_out
        )
        greeting = HandshakeV10(
            server_version=ADMIN_SERVER_VERSION,
            connection_id=0,
            auth_plugin_data=self._auth.scramble,
            capability_flags=ADMIN_CAPABILITIES,
            character_set=33,  # utf8_general_ci
            status_flags=STATUS,
            auth_plugin_name=auth.NATIVE_PASSWORD,
        )
        self._write(build_handshake_v10(greeting), 0)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            self._pump()
        except ProtocolError as exc:
            log.warning("admin %s: protocol error: %s; closing", self.peer, exc)
            self._refuse(ER_HANDSHAKE, f"proxyd: malformed packet: {exc}", 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()

    def goodbye(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._closed()

    def _closed(self) -> None:
        self.closed = True
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self.daemon.admin_sessions.discard(self)

    def _pump(self) -> None:
        while not self._busy and not self.closed:
            packet = self._reader.next_packet()
            if packet is None:
                return
            seq, payload = packet
            if not self.authenticated:
                self._authenticate(seq, payload)
            elif payload:
                self._command(payload)
            else:
                raise ProtocolError("empty command packet")

    # -- connection phase --------------------------------------------------------------

    def _authenticate(self, seq: int, payload: bytes) -> None:
        if self._auth_switched:
            self._authenticated(self._auth.switched(payload, seq))
            return
        if is_ssl_request(payload):
            self._refuse(ER_HANDSHAKE, "proxyd: TLS is not enabled on the admin listener", seq + 1)
            return
        response = parse_handshake_response(payload)
        self.capabilities = response.capability_flags & ADMIN_CAPABILITIES
        self._authenticated(
            self._auth.begin(
                response.username, response.auth_plugin_name, response.auth_response, seq
            )
        )

    def _password_for(self, user: bytes) -> bytes | None:
        admin = self.daemon.config.admin
        if admin is None or user.decode("utf-8", "replace") != admin.user:
            return None
        return admin.password.encode()

    def _authenticated(self, outcome: Outcome) -> None:
        login = self._auth
        for payload, seq in login.take_output():
            self._write(payload, seq)
        self._auth_switched = outcome is Outcome.SWITCHING
        if outcome is Outcome.SWITCHING:
            return
        self._user = login.user.decode("utf-8", "replace")
        if outcome is Outcome.DENIED:
            self.daemon.stats.inc("auth_failures")
            log.warning("admin %s: access denied for user %r", self.peer, self._user)
            host = self.peer.rsplit(":", 1)[0]
            self._refuse(
                ER_ACCESS_DENIED,
                f"Access denied for user '{self._user}'@'{host}' "
                f"(using password: {'YES' if login.used_password else 'NO'})",
                login.next_seq,
                sql_state=b"28000",
            )
            return
        self.authenticated = True
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._write(self._ok(), login.next_seq)
        log.debug("admin %s: logged in as %s", self.peer, self._user)

    def _login_timed_out(self) -> None:
        self._login_timer = None
        if not self.authenticated:
            self._refuse(ER_HANDSHAKE, "proxyd: login timed out", 2)

    # -- command phase -----------------------------------------------------------------

    def _command(self, payload: bytes) -> None:
        command = payload[0]
        if command == COMMAND.COM_QUIT:
            self.goodbye()
        elif command in (COMMAND.COM_PING, COMMAND.COM_INIT_DB, COM_RESET_CONNECTION):
            self._write(self._ok(), 1)
        elif command == COMMAND.COM_QUERY:
            self._busy = True
            sql = payload[1:].decode("utf-8", "replace")
            self._task = asyncio.get_running_loop().create_task(self._query(sql))
        else:
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)

    async def _query(self, sql: str) -> None:
        statement = normalise(sql)
        if not statement.startswith(("SHOW", "SELECT", "SET")):
            log.info("admin %s: %s", self.peer, statement)
        try:
            answer = await self.console.execute(sql)
        except Exception as exc:  # one bad statement must not cost the daemon
            log.exception("admin %s: error running %r", self.peer, statement)
            answer = Failed(ER_UNKNOWN_ERROR, f"proxyd admin: internal error: {exc}")
        if isinstance(answer, ResultSet):
            data = encode_text_result(
                [name for name, _ in answer.columns],
                answer.rows,
                self.capabilities,
                STATUS,
                column_types=[kind for _, kind in answer.columns],
            )
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)
        elif isinstance(answer, Done):
            self._write(self._ok(answer.info), 1)
        else:
            self._write(build_err(answer.code, answer.message, answer.sql_state), 1)
        self._busy = False
        self._pump()

    # -- helpers -----------------------------------------------------------------------

    def _ok(self, info: str = "") -> bytes:
        return build_ok(OkPacket(status_flags=STATUS, info=info.encode()), self.capabilities)

    def _write(self, payload: bytes, seq: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_packet(payload, seq))

    def _refuse(self, code: int, message: str, seq: int, sql_state: bytes = b"HY000") -> None:
        self._write(build_err(code, message, sql_state), seq)
        self.goodbye()
