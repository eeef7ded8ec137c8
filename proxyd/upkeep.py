"""The daemon's upkeep: closing idle backends that must go, retiring removed users' pools,
and telling systemd and the log what the pools are doing.

Backends to be replaced (RECONNECT, a new ``backend.address``, changed backend credentials)
are marked by the pool's ``drain_before``, and a shrunk pool has a surplus: both are closed
here when they come back idle, never from under a client. While PAUSEd no idle backend is
kept. Recycling is logged as one line per burst (a server restart that closes 50 backends
is one event), and STATUS= and the watchdog go to systemd.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from proxyd.metrics import ServerHealth
from proxyd.pool import Pool
from proxyd.sdnotify import Notifier
from proxyd.stats import Stats

log = logging.getLogger("proxyd.daemon")

UPKEEP_INTERVAL = 0.25
STATUS_INTERVAL = 2.0
BURST_INTERVAL = 1.0
# Recycle reasons worth an INFO line; routine ones (lifetime, surplus...) go to DEBUG.
_ABNORMAL_RECYCLES = frozenset({"killed", "server_closed", "ping_failed"})


class Kept(Protocol):
    """What the upkeep reads and tidies of the running daemon, which passes itself."""

    stats: Stats
    notifier: Notifier
    removed_pools: list[Pool]  # of users gone from the config, draining with their clients

    @property
    def server(self) -> ServerHealth: ...

    @property
    def paused(self) -> bool: ...

    def all_pools(self) -> list[Pool]: ...

    def clients_of(self, pool: Pool) -> int: ...

    def status_text(self) -> str: ...


class Upkeep:
    def __init__(self, daemon: Kept) -> None:
        self.daemon = daemon
        self._last_status = ""
        self._last_recycled = daemon.stats.recycled()
        self._tasks: set[asyncio.Task[Any]] = set()  # removed pools closing

    def sweep(self, pool: Pool) -> int:
        """Close idle backends that are draining, surplus, or kept while paused."""
        closed = 0
        for conn in list(pool.idle):
            if conn.created_at < pool.drain_before:
                reason = "drained"
            elif self.daemon.paused:
                reason = "paused"
            elif pool.size > pool.config.max_size:
                reason = "surplus"
            else:
                continue
            pool.idle.remove(conn)
            self.daemon.stats.inc(f"recycled_{reason}")
            conn.close(reason)
            closed += 1
        return closed

    async def run(self) -> None:
        notifier = self.daemon.notifier
        last_status = last_burst = last_watchdog = 0.0
        watchdog_every = notifier.watchdog_usec / 2e6
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL)
            now = time.monotonic()
            try:
                for pool in self.daemon.all_pools():
                    self.sweep(pool)
                self._retire_removed_pools()
                if now - last_burst >= BURST_INTERVAL:
                    last_burst = now
                    self._log_recycling()
                if now - last_status >= STATUS_INTERVAL:
                    last_status = now
                    self.report_status()
            except Exception:  # upkeep must outlive any one bad state
                log.exception("upkeep error")
            if watchdog_every and now - last_watchdog >= watchdog_every:
                last_watchdog = now
                notifier.watchdog()

    def report_status(self) -> None:
        """STATUS= to systemd, when it listens and the text changed."""
        notifier = self.daemon.notifier
        if not notifier.enabled:
            return
        text = self.daemon.status_text()
        if text != self._last_status:
            self._last_status = text
            notifier.status(text)

    def _retire_removed_pools(self) -> None:
        removed = self.daemon.removed_pools
        for pool in list(removed):
            if self.daemon.clients_of(pool):
                continue
            removed.remove(pool)
            task = asyncio.get_running_loop().create_task(close_pool(pool))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            log.info("pool of removed user %s closed", pool.name)

    def _log_recycling(self) -> None:
        """One line per burst: a server restart closing 50 backends is one event."""
        now = self.daemon.stats.recycled()
        delta = {k: v - self._last_recycled.get(k, 0) for k, v in now.items()}
        self._last_recycled = now
        delta = {k: v for k, v in delta.items() if v > 0}
        if not delta:
            return
        level = logging.INFO if _ABNORMAL_RECYCLES & delta.keys() else logging.DEBUG
        log.log(
            level,
            "backends recycled: %s (now %d open, server %s)",
            ", ".join(f"{k}={v}" for k, v in sorted(delta.items())),
            sum(len(pool.conns) for pool in self.daemon.all_pools()),
            "up" if self.daemon.server.up else "down",
        )


async def close_pool(pool: Pool) -> None:
    """Stop a pool's upkeep and close every connection it has."""
    await pool.close()
    pool.close_all()
