"""Which replica an autocommit read goes to (``backend.reads: replicas``), and the pools
of server connections to the replicas.

A user's own pool (pool.py) follows the primary; for each replica a read was sent to, the
user has one more pool here, made at the first such read, of the same size and settings.
After each monitor round (monitor.py) the router keeps the replicas that qualify: seen
as replicas, up, replicating with a known lag under ``backend.max_replica_lag``, with a
weight above 0. A read picks one of them at random in proportion to the weights; with
none, or when the one picked has no idle connection for the user and no room under its
``max_connections``, the read goes to the primary.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable

from proxyd.config import PoolConfig
from proxyd.pool.monitor import REPLICA
from proxyd.pool.pool import Pool
from proxyd.pool.server import Server
from proxyd.stats import Stats


class Router:
    """See the module docstring."""

    def __init__(
        self,
        servers: list[Server],
        max_lag: float,
        pool_config: Callable[[], PoolConfig],
        stats: Stats,
    ) -> None:
        self.servers = servers
        self.max_lag = max_lag
        self._pool_config = pool_config
        self._stats = stats
        self._pools: dict[tuple[str, int], Pool] = {}  # by (user name, id(server))
        self.replicas: list[Server] = []  # those that qualify, as of the last refresh
        self._cumulative: list[int] = []

    def refresh(self) -> None:
        """After a monitor round: the replicas that qualify now."""
        chosen = [
            s
            for s in self.servers
            if s.role == REPLICA
            and s.lag is not None
            and s.lag <= self.max_lag
            and not s.replication_error
            and s.config.weight > 0
        ]
        total = 0
        cumulative = []
        for server in chosen:
            total += server.config.weight
            cumulative.append(total)
        self.replicas, self._cumulative = chosen, cumulative

    def pick(self) -> Server | None:
        """A replica for one read, by weight; None: read on the primary."""
        replicas = self.replicas
        if not replicas:
            return None
        index = bisect.bisect_right(self._cumulative, random.random() * self._cumulative[-1])
        server = replicas[min(index, len(replicas) - 1)]
        if server.failures:
            # Failing since the last round: any other that is not.
            others = [s for s in replicas if not s.failures]
            return random.choice(others) if others else None
        return server

    def pool(self, server: Server, own: Pool) -> Pool:
        """The pool of ``own``'s user on replica ``server``."""
        key = (own.name, id(server))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(own.user, self._pool_config(), server, self._stats)
            pool.fail_fast = True
            pool.start()
        elif pool.user is not own.user:
            pool.user = own.user  # a reload; new credentials replace its connections
            pool.drain_before = own.drain_before
        if pool.password_sha1 is None:
            pool.password_sha1 = own.password_sha1  # a hash-only user: learned at login
        return pool

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    def forget(self, drop: Callable[[str, Server], bool]) -> list[Pool]:
        """Take out the pools for which ``drop(user name, server)``; the caller closes them."""
        gone = [key for key, pool in self._pools.items() if drop(key[0], pool.server)]
        return [self._pools.pop(key) for key in gone]
