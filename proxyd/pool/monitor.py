"""Which of several servers is the primary, asked of the servers themselves.

Every ``backend.monitor_interval`` the monitor asks each server ``@@read_only`` and
``@@innodb_read_only`` over a connection of its own (as ``backend.monitor_user``, or the
first user's backend account). The primary is the one writable server; the others are
replicas. An external promotion (an operator or an orchestrator makes a replica writable
and the old primary read-only, or stops it) is seen within one interval, and the daemon
then moves the pools to the new primary (``on_primary``). Two writable servers at once
are logged as an error and nothing moves: writes stay on the last known primary rather
than going to both. No writable server (the primary died or was demoted, no replica
promoted yet): nothing moves either; the pools keep trying the old primary, whose
clients get its own answers or the failure policy's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proxyd.config import UserConfig
from proxyd.pool.server import Server
from proxyd.server.connection import BackendConnection, BackendError

log = logging.getLogger("proxyd.monitor")

PRIMARY = "primary"
REPLICA = "replica"
DOWN = "down"


class Monitor:
    """See the module docstring."""

    def __init__(
        self,
        servers: list[Server],
        account: UserConfig,
        interval: float,
        on_primary: Callable[[Server], None],
        on_round: Callable[[], None] = lambda: None,
    ) -> None:
        self.servers = servers
        self.account = account
        self.interval = interval
        self.on_primary = on_primary
        self.on_round = on_round  # after each round: the router's replicas (router.py)
        self.primary: Server | None = None
        self.primary_ok = False  # as of the last round: see _decide
        self._conns: dict[int, BackendConnection] = {}  # by id(server)
        self._split_brain: tuple[str, ...] = ()  # the writable servers last logged

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    async def check(self) -> None:
        """One round: ask every server, then decide."""
        await asyncio.gather(*(self._ask(server) for server in self.servers))
        self._decide()
        self.on_round()

    async def _ask(self, server: Server) -> None:
        conn = self._conns.get(id(server))
        try:
            if conn is None or conn.closed:
                conn = self._conns[id(server)] = await asyncio.wait_for(
                    server.connect(self.account, 0, self._lost), 2 * self.interval + 5
                )
            rows = await asyncio.wait_for(
                conn.query(b"SELECT @@read_only, @@innodb_read_only"),
                server.config.ping_timeout,
            )
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            if conn is not None:
                conn.close("monitor check failed")
                self._conns.pop(id(server), None)
            if server.role != DOWN:
                log.warning("server %s is out: %s", server.config.address, exc or "timed out")
            server.role = DOWN
            server.read_only = None
            server.monitor_error = str(exc) or "timed out"
            return
        if not isinstance(rows, list) or not rows:
            return
        read_only = any(value not in (None, b"0") for value in rows[0])
        server.read_only = read_only
        server.monitor_error = ""
        server.lag = None
        server.replication_error = ""
        if read_only:
            await self._replication(server, conn)

    async def _replication(self, server: Server, conn: BackendConnection) -> None:
        """A replica's lag (Seconds_Behind_Master), or why its replication is broken;
        nothing if the account may not read it (SLAVE MONITOR / REPLICATION CLIENT)."""
        try:
            rows = await asyncio.wait_for(
                conn.query_named(b"SHOW SLAVE STATUS"), server.config.ping_timeout
            )
        except (BackendError, asyncio.TimeoutError) as exc:
            if conn.closed:
                raise
            server.replication_error = f"replication status unknown: {exc or 'timed out'}"
            return
        if not rows:
            return  # read-only, replicating from nothing: a standalone read-only server
        status = {key: (value or b"").decode("utf-8", "replace") for key, value in rows[0].items()}
        io, sql = status.get("Slave_IO_Running", ""), status.get("Slave_SQL_Running", "")
        if io == "Yes" and sql == "Yes" and status.get("Seconds_Behind_Master", "").isdigit():
            server.lag = float(status["Seconds_Behind_Master"])
            return
        reason = status.get("Last_SQL_Error") or status.get("Last_IO_Error") or ""
        broken = f"replication stopped (IO thread: {io or '?'}, SQL thread: {sql or '?'})"
        if io == "Connecting":
            broken = "replication is reconnecting to its primary"
        server.replication_error = broken + (f": {reason}" if reason else "")

    def forget(self, server: Server) -> None:
        """``server`` left backend.servers: close the monitor's connection to it."""
        conn = self._conns.pop(id(server), None)
        if conn is not None:
            conn.close("server removed")
        if self.primary is server:
            self.primary = None

    def _lost(self, conn: BackendConnection, reason: str) -> None:
        for key, held in list(self._conns.items()):
            if held is conn:
                del self._conns[key]

    def _decide(self) -> None:
        writable = [s for s in self.servers if s.read_only is False]
        for server in self.servers:
            if server.read_only is not None:
                server.role = REPLICA
        chosen = self.primary
        if len(writable) == 1:
            chosen = writable[0]
            self._split_brain = ()
        elif len(writable) > 1:
            names = tuple(str(s.config.address) for s in writable)
            if names != self._split_brain:
                self._split_brain = names
                log.error(
                    "%d servers are writable at once (%s); writes stay on %s until only one is",
                    len(writable),
                    ", ".join(names),
                    self.primary.config.address if self.primary is not None else "none",
                )
            if chosen not in writable:
                chosen = None
        # Writes have somewhere to go: one writable server (or the last known primary
        # while it is one of several writable).
        self.primary_ok = chosen is not None and chosen.read_only is False
        if chosen is not None and chosen.read_only is False:
            chosen.role = PRIMARY
        if chosen is not None and chosen is not self.primary:
            previous = self.primary
            self.primary = chosen
            log.warning(
                "primary is now %s%s",
                chosen.config.address,
                f" (was {previous.config.address})" if previous is not None else "",
            )
            self.on_primary(chosen)

    def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:  # each close reaches _lost
            conn.close("shutting down")
