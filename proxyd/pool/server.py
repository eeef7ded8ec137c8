"""One backend address, shared by the pools of all users: the connect budget (at most
``max_connecting`` logins at once), exponential backoff with jitter while the server is
unreachable, and what proxyd learned of the server (version, charset, max_allowed_packet,
MariaDB's extended capabilities) to show clients as the server would.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from proxyd.config import BackendConfig, UserConfig
from proxyd.protocol.messages import ErrPacket
from proxyd.server.account import ServerAccount, ThreadBook
from proxyd.server.connection import (
    BackendConnection,
    BackendError,
    open_backend,
)
from proxyd.stats import Stats

log = logging.getLogger("proxyd.pool")

# Server answers to proxyd's login that waiting will not fix soon: passed on at once.
SERVER_REFUSALS = frozenset((1040, 1045, 1129, 1203, 1226, 1227))

BACKOFF_BASE = 0.05
BACKOFF_CAP = 1.0  # a server back from a restart is used within a second
DEFAULT_CHARSET = 45  # utf8mb4_general_ci
DEFAULT_MAX_ALLOWED_PACKET = 64 * 1024 * 1024


# The views that name connections by thread id (proxyd/session/identity.py rewrites them).
_ID_VIEWS = (
    (b"information_schema", b"PROCESSLIST"),
    (b"performance_schema", b"threads"),
    (b"information_schema", b"INNODB_TRX"),
    (b"information_schema", b"METADATA_LOCK_INFO"),
)


class AcquireError(Exception):
    """No backend could be had; ``err`` is what the client should see."""

    def __init__(self, message: str, err: ErrPacket | None = None) -> None:
        super().__init__(message)
        self.err = err


class Server:
    """One backend address: connect budget, backoff, and what we learned of it."""

    def __init__(self, config: BackendConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.version: bytes | None = None
        # Character set name -> its default collation's id, as this server has it: what
        # SET NAMES without COLLATE gives (learned at the first connect; see below).
        self.default_collations: dict[str, int] = {}
        # Table name -> its columns, for the views that show thread ids (PROCESSLIST,
        # threads), which proxyd rewrites column by column (proxyd/session/identity.py).
        self.columns: dict[str, tuple[str, ...]] = {}
        # proxyd's own connections to it by thread id, also while they open and close.
        self.threads = ThreadBook()
        self._columns_learned = False
        self.max_allowed_packet = DEFAULT_MAX_ALLOWED_PACKET  # learned from the server
        self.charset = DEFAULT_CHARSET
        self.mariadb_capabilities = 0  # MariaDB's extended capabilities it offers
        self.up = False
        # What the monitor (monitor.py) found, with several servers: primary, replica or
        # down; read_only None while unknown; why it is out.
        self.role = ""
        self.read_only: bool | None = None
        self.monitor_error = ""
        self.lag: float | None = None  # a replica's Seconds_Behind_Master; None: unknown
        self.replication_error = ""  # why a replica's lag is unknown (replication broken)
        self.failures = 0
        self.next_attempt = 0.0
        self.last_error = ""
        self._connecting = asyncio.Semaphore(config.max_connecting)
        # backend.servers' max_connections: connects under way (counted from the pool's
        # decision to open one), pools waiting for room, and how to make some (the
        # daemon's: close an idle connection of another pool of this server).
        self.reserved = 0
        self.room_waiters: set[Any] = set()
        self.make_room: Callable[[Server], bool] = lambda server: False

    def has_room(self) -> bool:
        """Below backend.servers' max_connections for this server (or it has none)."""
        cap = self.config.max_connections
        return not cap or len(self.threads.open) + self.reserved < cap

    def room_wanted(self, pool: Any) -> None:
        """``pool`` waits for room: close an idle connection of another pool if there is
        one, else grow ``pool`` when a connection to this server closes."""
        self.room_waiters.add(pool)
        self.make_room(self)

    def freed(self) -> None:
        waiting = list(self.room_waiters)
        self.room_waiters.clear()
        for pool in waiting:
            pool.grow()

    async def connect(
        self,
        user: UserConfig,
        profile: int,
        on_lost: Callable[[BackendConnection, str], None],
        password_sha1: bytes | None = None,
    ) -> BackendConnection:
        """One attempt, after any backoff in force; raise BackendError. ``password_sha1``
        logs in a user whose backend_password is None (see UserConfig)."""
        delay = self.next_attempt - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with self._connecting:
            try:
                account = ServerAccount(
                    self.config.address,
                    user.backend_user.encode(),
                    (user.backend_password or "").encode(),
                    profile,
                    self.charset,
                    tls=self.config.tls,
                    password_sha1=password_sha1 if user.backend_password is None else None,
                )
                conn = await open_backend(
                    account,
                    on_lost,
                    self.config.connect_timeout,
                    self.config.ping_timeout,
                    self.threads,
                )
            except BackendError as exc:
                self._failed(exc)
                raise
        self.stats.inc("backend_connects")
        conn.stats = self.stats
        if not self.up:
            if self.failures:
                log.info(
                    "server %s is back after %d failed attempts", self.config.address, self.failures
                )
            self.up = True
        self.failures = 0
        self.next_attempt = 0.0
        self.version = conn.server_version
        self.mariadb_capabilities = conn.server_mariadb_capabilities
        if conn.server_charset:
            # Announced to clients in proxyd's own greeting, as the server would.
            self.charset = conn.server_charset
        if conn.max_allowed_packet:
            self.max_allowed_packet = conn.max_allowed_packet
        if not self.default_collations:
            await self._learn_collations(conn)
        if not self._columns_learned:
            self._columns_learned = True  # once, whatever the answer
            await self._learn_columns(conn)
        return conn

    async def _learn_collations(self, conn: BackendConnection) -> None:
        """A client library's table of default collations is not the server's (MySQL 8
        and MariaDB 11 changed theirs): ask the server, once."""
        try:
            rows = await conn.query(
                b"SELECT CHARACTER_SET_NAME, ID FROM information_schema.COLLATIONS"
                b" WHERE IS_DEFAULT = 'Yes'"
            )
        except BackendError as exc:
            if conn.closed:
                raise
            log.warning(
                "server %s: cannot read its default collations: %s", self.config.address, exc
            )
            return
        if isinstance(rows, list):
            self.default_collations = {
                bytes(name).decode().lower(): int(cid)
                for name, cid in rows
                if name is not None and cid is not None
            }

    async def _learn_columns(self, conn: BackendConnection) -> None:
        """The columns of the process list views, which differ between servers and
        versions: a client's SELECT * of them must get what the server would give. One
        query per table, each naming it exactly, so that the server opens only that one
        (an OR over tables makes it open every table of every schema)."""
        columns: dict[str, tuple[str, ...]] = {}
        for schema, table in _ID_VIEWS:
            try:
                rows = await conn.query(
                    b"SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s'"
                    b" AND TABLE_NAME = '%s' ORDER BY ORDINAL_POSITION" % (schema, table)
                )
            except BackendError as exc:
                if conn.closed:
                    raise
                log.warning("server %s: cannot read its columns: %s", self.config.address, exc)
                return
            if isinstance(rows, list) and rows:
                names = tuple(bytes(row[0]).decode() for row in rows if row[0] is not None)
                columns[table.decode()] = names
        self.columns = columns

    def _failed(self, exc: BackendError) -> None:
        self.stats.inc("backend_connect_errors")
        self.failures += 1
        backoff = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(self.failures, 10)))
        self.next_attempt = time.monotonic() + backoff * random.uniform(0.5, 1.0)
        message = str(exc)
        log.debug("server %s: attempt %d failed: %s", self.config.address, self.failures, message)
        if self.up or message != self.last_error:
            # One line per burst of identical failures, not one per attempt.
            log.warning("server %s: %s", self.config.address, message)
        self.up = False
        self.last_error = message
