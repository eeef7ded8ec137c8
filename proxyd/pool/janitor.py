"""A pool's upkeep, apart from its hand-out (as PgBouncer's janitor.c is from objects.c).

Every idle connection is kept far from the server's ``wait_timeout``: pinged once idle for
``ping_interval``, retired once older than ``max_lifetime``; connections held by idle
sessions (session mode, pinned state) are pinged too; the pool is refilled to
``min_idle``. With ``auto``, both intervals derive from the ``@@wait_timeout`` each
connection learned (and re-learned when a client changes it): pings at a third of it (at
most 30 s), lifetime half of it (at most 1 h).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from proxyd.config import PoolConfig
from proxyd.pool.server import Server
from proxyd.server.connection import BackendConnection, BackendError
from proxyd.stats import Stats

log = logging.getLogger("proxyd.pool")

PING_AUTO_CAP = 30.0
LIFETIME_AUTO_CAP = 3600.0


def ping_interval(config: PoolConfig, conn: BackendConnection) -> float:
    """How long ``conn`` may sit idle before its health is uncertain."""
    if config.ping_interval is not None:
        return min(config.ping_interval, conn.wait_timeout * 0.5)
    return max(0.1, min(PING_AUTO_CAP, conn.wait_timeout / 3))


def lifetime(config: PoolConfig, conn: BackendConnection) -> float:
    """How old ``conn`` may grow before it is closed instead of reused."""
    if config.max_lifetime is not None:
        return min(config.max_lifetime, conn.wait_timeout * 0.5)
    return min(LIFETIME_AUTO_CAP, conn.wait_timeout / 2)


class Kept(Protocol):
    """What the janitor reads and calls of its pool (proxyd/pool/pool.py)."""

    config: PoolConfig
    stats: Stats
    server: Server
    idle: list[BackendConnection]
    conns: set[BackendConnection]
    connecting: int
    last_profile: int
    closed: bool

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def _retire(self, conn: BackendConnection, reason: str) -> None: ...

    def _hand_over(self, conn: BackendConnection) -> None: ...

    def _spawn(self, profile: int, want_room: bool = True) -> bool: ...


class Janitor:
    """The periodic upkeep of one pool; see the module docstring."""

    def __init__(self, pool: Kept) -> None:
        self.pool = pool
        self._task: asyncio.Task[None] | None = None
        self._pinging: set[BackendConnection] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        pool = self.pool
        while not pool.closed:
            try:
                self._tick()
            except Exception:  # the janitor must outlive any one bad connection
                log.exception("pool %s: janitor error", pool.name)
            await asyncio.sleep(self._tick_interval())

    def _tick_interval(self) -> float:
        config = self.pool.config
        intervals = [ping_interval(config, c) for c in self.pool.conns]
        return max(0.05, min([1.0, *[i / 4 for i in intervals]]))

    def _tick(self) -> None:
        pool = self.pool
        config = pool.config
        for conn in list(pool.idle):
            if conn.age >= lifetime(config, conn):
                pool.idle.remove(conn)
                pool._retire(conn, "lifetime")
            elif conn.idle_for >= ping_interval(config, conn):
                pool.idle.remove(conn)
                self._ping_in_background(conn, back_to_idle=True)
        for conn in list(pool.conns):
            # Connections held by idle sessions (session mode, pinned) need pings too.
            if (
                conn.holder is not None
                and not conn.busy
                and conn not in self._pinging
                and conn.idle_for >= ping_interval(config, conn)
            ):
                self._ping_in_background(conn, back_to_idle=False)
        missing = config.min_idle - len(pool.idle) - pool.connecting
        while missing > 0 and pool.size < config.max_size and not pool.closed:
            if not pool._spawn(pool.last_profile, want_room=False):
                break  # min_idle never takes room from another pool of the server
            missing -= 1

    def _ping_in_background(self, conn: BackendConnection, back_to_idle: bool) -> None:
        self._pinging.add(conn)
        pool = self.pool

        async def ping() -> None:
            try:
                if conn.closed:
                    return
                if conn.busy:
                    # Only a held connection can be busy here: its session sent a command
                    # since the janitor looked, which proves it alive just as well.
                    return
                await conn.ping(pool.server.config.ping_timeout)
                pool.stats.inc("pings")
            except (BackendError, asyncio.TimeoutError):
                pool.stats.inc("pings_failed")
                pool._retire(conn, "ping_failed")
                return
            finally:
                self._pinging.discard(conn)
            if back_to_idle and conn.holder is None:
                pool._hand_over(conn)

        asyncio.get_running_loop().create_task(ping())
