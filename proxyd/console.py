"""The admin console's statements: what each one means, as an answer; no I/O.

``proxyd.admin`` is the wire (login, packets); ``Console.execute`` takes one statement's
text and returns a ResultSet, Done (an OK) or Failed (an ERR):

  SHOW POOLS            per user: clients active/waiting/idle, backends active/idle/max,
                        the longest current wait
  SHOW CLIENTS          each client: id, user, address, state, backend, idle time, pins
  SHOW SERVERS          each backend connection: id on the server, age, idle time, learned
                        wait_timeout, last ping, state, the server's role; while the
                        server cannot be reached, a row per pool saying why (a refused
                        login, a certificate that failed verification); with several
                        servers, a row for each server no pool uses (replica, down)
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
and mysql command-line clients) and ``SET ...`` (drivers setting up the session), both
acknowledged. Anything else is an ERR.

The SHOW tables are declared column by column (name, MySQL type, how to read the value),
so that a column's name and its value cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from proxyd import __version__
from proxyd.config import Config
from proxyd.config_view import flatten_config
from proxyd.registry import PoolSummary, ReloadResult

if TYPE_CHECKING:
    from proxyd.frontend import ClientSession
    from proxyd.pool import Pool, Server
    from proxyd.server.connection import BackendConnection
    from proxyd.stats import Stats

__all__ = ["Answer", "Console", "Done", "Failed", "Operated", "ResultSet", "normalise"]

log = logging.getLogger("proxyd.admin")

VERSION_COMMENT = f"proxyd {__version__} admin console"

ER_PARSE_ERROR = 1064
ER_NO_SUCH_THREAD = 1094
ER_UNKNOWN_ERROR = 1105

# Column types (MYSQL_TYPE_*): drivers turn INT and REAL columns into numbers.
TEXT, INT, REAL = 0xFD, 0x08, 0x05


class ServerInfo(Protocol):
    version: bytes | None


class Operated(Protocol):
    """What the console reads and drives of the running daemon, which passes itself."""

    stats: Stats
    config: Config

    @property
    def server(self) -> ServerInfo: ...

    @property
    def servers(self) -> Sequence[Server]: ...

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


# -- the SHOW tables ---------------------------------------------------------------------------

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    name: str
    type: int  # TEXT, INT or REAL
    value: Callable[[R], object]


def table(columns: Sequence[Column[R]], records: Iterable[R]) -> ResultSet:
    """One row per record, one value per column."""
    return ResultSet(
        tuple((column.name, column.type) for column in columns),
        [tuple(column.value(record) for column in columns) for record in records],
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


POOL_COLUMNS: tuple[Column[PoolSummary], ...] = (
    Column("user", TEXT, lambda p: p.user),
    Column("mode", TEXT, lambda p: p.mode + (" (user removed)" if p.removed else "")),
    Column("cl_active", INT, lambda p: p.clients_active),
    Column("cl_waiting", INT, lambda p: p.clients_waiting),
    Column("cl_idle", INT, lambda p: p.clients_idle),
    Column("sv_active", INT, lambda p: p.backends_active),
    Column("sv_idle", INT, lambda p: p.backends_idle),
    Column("sv_connecting", INT, lambda p: p.backends_connecting),
    Column("sv_max", INT, lambda p: p.backends_max),
    Column("maxwait", REAL, lambda p: _seconds(p.longest_wait)),
)


def _pin_reasons(s: ClientSession) -> str | None:
    reasons = (["open transaction"] if s.in_transaction else []) + list(s.pins.values())
    return ", ".join(reasons) or None


def client_columns(now: float) -> list[Column[ClientSession]]:
    # Annotated apart from the return: mypy checks the lambdas only then.
    columns: list[Column[ClientSession]] = [
        Column("id", INT, lambda s: s.id),
        Column("user", TEXT, lambda s: s.user or None),
        Column("address", TEXT, lambda s: s.peer),
        Column("state", TEXT, lambda s: s.state.value),
        Column(
            "backend_thread_id",
            INT,
            lambda s: s.backend.thread_id if s.backend is not None else None,
        ),
        Column("in_transaction", TEXT, lambda s: _yes_no(s.in_transaction)),
        Column("idle", REAL, lambda s: _seconds(s.idle_time())),
        Column("connected", REAL, lambda s: _seconds(now - s.connected_at)),
        Column("pinned", TEXT, _pin_reasons),
    ]
    return columns


@dataclass(frozen=True, slots=True)
class _ServerRow:
    """One row of SHOW SERVERS: a backend connection, the pool it belongs to and its
    server; or, with no connection (conn None), a pool whose server fails, or (pool None
    too) a server of backend.servers that no pool uses."""

    server: Server
    pool: Pool | None = None
    conn: BackendConnection | None = None
    idle: bool = False  # in the pool's idle list


def _server_rows(pools: Iterable[Pool], servers: Sequence[Server]) -> Iterator[_ServerRow]:
    by_address = {server.config.address: server for server in servers}
    shown: set[int] = set()
    for pool in pools:
        idle = set(pool.idle)
        for conn in sorted(pool.conns, key=lambda c: c.id):
            server = by_address.get(conn.address, pool.server)
            shown.add(id(server))
            yield _ServerRow(server, pool, conn, conn in idle)
        if not pool.conns and not pool.server.up and pool.server.last_error:
            shown.add(id(pool.server))
            yield _ServerRow(pool.server, pool)
    if len(servers) > 1:
        for server in servers:
            if id(server) not in shown:
                yield _ServerRow(server)


def _backend_state(b: _ServerRow) -> str:
    if b.pool is None:
        return b.server.role or "unknown"  # a server no pool uses: what the monitor found
    if b.conn is None:
        return "unreachable"
    if b.idle:
        return "idle"
    if b.conn.holder is not None:
        return "active"
    if b.conn.busy:
        return "checking"  # ping or reset of proxyd's own
    return "handing_over"


def _retiring(b: _ServerRow) -> bool:
    # Opened before a RECONNECT or reload drained its pool, or to a former backend.address.
    if b.conn is None or b.pool is None:
        return False
    return b.conn.created_at < b.pool.drain_before or b.conn.address != b.pool.server.config.address


def _server_error(b: _ServerRow) -> str | None:
    server = b.server
    if b.conn is None:
        return server.monitor_error or server.replication_error or server.last_error or None
    return server.replication_error or None


def _of_conn(get: Callable[[BackendConnection], Any]) -> Callable[[_ServerRow], Any]:
    return lambda b: None if b.conn is None else get(b.conn)


def server_columns(now: float) -> list[Column[_ServerRow]]:
    # Annotated apart from the return: mypy checks the lambdas only then.
    columns: list[Column[_ServerRow]] = [
        Column("user", TEXT, lambda b: None if b.pool is None else b.pool.name),
        Column("id", INT, _of_conn(lambda c: c.id)),
        Column("thread_id", INT, _of_conn(lambda c: c.thread_id)),
        Column(
            "address",
            TEXT,
            lambda b: str(b.server.config.address if b.conn is None else b.conn.address),
        ),
        Column("state", TEXT, _backend_state),
        Column("client", INT, _of_conn(lambda c: c.holder.id if c.holder is not None else None)),
        Column("age", REAL, _of_conn(lambda c: _seconds(c.age))),
        Column("idle", REAL, _of_conn(lambda c: _seconds(c.idle_for))),
        Column("wait_timeout", REAL, _of_conn(lambda c: _seconds(c.wait_timeout))),
        Column(
            "last_ping",
            REAL,
            _of_conn(lambda c: _seconds(now - c.last_ping) if c.last_ping else None),
        ),
        Column("uses", INT, _of_conn(lambda c: c.uses)),
        Column("retiring", TEXT, lambda b: _yes_no(_retiring(b))),
        # With several servers: primary, replica or down, as the monitor last found it.
        Column("role", TEXT, lambda b: b.server.role or None),
        # A replica's Seconds_Behind_Master as the monitor last read it.
        Column("lag", REAL, lambda b: b.server.lag),
        # Why connecting fails (a refused login, a certificate that failed verification),
        # why the monitor has a server out, or why a replica's replication is broken.
        Column("error", TEXT, _server_error),
    ]
    return columns


# -- the statements ---------------------------------------------------------------------------

HELP = (
    ("SHOW POOLS", "per user: clients and backends by state, longest wait"),
    ("SHOW CLIENTS", "client connections: state, backend, idle time, pinned and why"),
    (
        "SHOW SERVERS",
        "backend connections: server thread id, age, idle, wait_timeout, pings;"
        " why connecting fails",
    ),
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
        return table(POOL_COLUMNS, self.daemon.pool_summaries())

    async def show_clients(self) -> Answer:
        sessions = sorted(self.daemon.sessions, key=lambda s: s.id)
        return table(client_columns(time.monotonic()), sessions)

    async def show_servers(self) -> Answer:
        return table(
            server_columns(time.monotonic()),
            _server_rows(self.daemon.all_pools(), self.daemon.servers),
        )

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
