"""The servers proxyd talks to: which one is the primary, where reads go, and a reload of
the list.

One server (``backend.address``) needs none of this but the Server itself. With
``backend.servers`` the Topology holds a Server per entry, the monitor that asks them
which is writable (pool/monitor.py) and, with ``backend.reads: replicas``, the router that
sends reads to replicas (pool/router.py). It moves the users' pools to a new primary, says
when no server is writable (new transactions and writes then wait, up to
``retry.timeout``), makes room on a server at its ``max_connections``, and applies a
reloaded ``backend:`` section: settings, a changed list (servers added, removed, one
server becoming several or the other way), reads moving to replicas or back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from proxyd.config import BackendConfig, Config, PoolConfig, ServerEntry, UserConfig
from proxyd.pool import Pool, Server
from proxyd.pool.monitor import Monitor
from proxyd.pool.router import Router
from proxyd.reload import apply_backend
from proxyd.stats import Stats

log = logging.getLogger("proxyd.daemon")


class TopologyHost(Protocol):
    """What the topology uses of the daemon, which passes itself."""

    stats: Stats
    config: Config

    def all_pools(self) -> list[Pool]: ...

    def _pool_config(self) -> PoolConfig: ...

    def _spawn_task(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def _update_holding(self) -> None: ...

    def _sweep(self, pool: Pool) -> None: ...


def _server_config(backend: BackendConfig, entry: ServerEntry) -> BackendConfig:
    return dataclasses.replace(
        backend, address=entry.address, weight=entry.weight, max_connections=entry.max_connections
    )


def retire(pool: Pool, spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
    """A pool no longer wanted: its idle connections close now, those in use when they
    come back (a read in flight there finishes)."""
    pool.drain_before = float("inf")
    spawn(pool.close())


class Topology:
    """See the module docstring."""

    def __init__(self, config: Config, host: TopologyHost) -> None:
        self.host = host
        backend = config.backend
        self.servers = [
            self._new_server(backend, entry)
            for entry in backend.entries or (ServerEntry(backend.address),)
        ]
        self.server = self.servers[0]  # the primary: the one the users' pools connect to
        self.monitor = self._make_monitor(config)
        self.router = self._make_router(config)
        # No writable server (the primary demoted or dead, none promoted yet).
        self.primary_missing = False
        self._primary_found = asyncio.Event()
        self._primary_found.set()
        self._monitor_task: asyncio.Task[None] | None = None

    def _new_server(self, backend: BackendConfig, entry: ServerEntry) -> Server:
        server = Server(_server_config(backend, entry), self.host.stats)
        server.make_room = self.make_room
        return server

    def _make_monitor(self, config: Config) -> Monitor | None:
        if len(self.servers) < 2:
            return None
        return Monitor(
            self.servers,
            self._monitor_account(config),
            config.backend.monitor_interval,
            self.primary_changed,
            on_round=self._monitor_round,
        )

    @staticmethod
    def _monitor_account(config: Config) -> UserConfig:
        backend = config.backend
        if backend.monitor_user is not None:
            return UserConfig.own(backend.monitor_user, backend.monitor_password)
        # config.py made sure there is one.
        return next(u for u in config.users.values() if u.backend_password is not None)

    def _make_router(self, config: Config) -> Router | None:
        if config.backend.reads != "replicas" or len(self.servers) < 2:
            return None
        router = Router(
            self.servers, config.backend.max_replica_lag, self.host._pool_config, self.host.stats
        )
        router.refresh()
        return router

    # -- the monitor's findings ----------------------------------------------------------

    async def start(self) -> None:
        """With several servers, ask them which is the primary before any pool connects,
        then keep asking."""
        monitor = self.monitor
        if monitor is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):  # then the log line below says so
            timeout = self.host.config.backend.connect_timeout
            await asyncio.wait_for(monitor.check(), timeout)
        if monitor.primary is None:
            log.warning(
                "no writable server among %s yet: trying %s until one is",
                ", ".join(str(s.config.address) for s in self.servers),
                self.server.config.address,
            )
        if self.monitor is monitor:  # not replaced by a reload meanwhile
            self._monitor_task = asyncio.get_running_loop().create_task(monitor.run())

    def _monitor_round(self) -> None:
        if self.router is not None:
            self.router.refresh()
        assert self.monitor is not None
        self._set_primary_missing(not self.monitor.primary_ok)

    def _set_primary_missing(self, missing: bool) -> None:
        if missing == self.primary_missing:
            return
        self.primary_missing = missing
        if missing:
            self._primary_found.clear()
            log.warning(
                "no writable server: new transactions and writes wait for one (up to"
                " retry.timeout, %gs)",
                self.host.config.retry.timeout,
            )
        else:
            self._primary_found.set()
        self.host._update_holding()

    async def wait_for_primary(self) -> None:
        """Return once a server is writable, or after retry.timeout (then the command
        goes to the last known primary, whose answer the client gets)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._primary_found.wait(), self.host.config.retry.timeout)

    def primary_changed(self, server: Server) -> None:
        """Another primary: new server connections go there; those to the old one close
        as they come back (a client in a transaction there keeps it until it ends, or
        until that server fails it)."""
        self.server = server
        now = time.monotonic()
        for pool in self.host.all_pools():
            if pool.server is not server and not pool.fail_fast:  # not a replica's pool
                pool.server = server
                pool.drain_before = now
                self.host._sweep(pool)

    def make_room(self, server: Server) -> bool:
        """``server`` at its max_connections while a pool wants a connection there: close
        an idle one of another pool of that server."""
        for pool in self.host.all_pools():
            if pool.server is server and pool.idle and pool not in server.room_waiters:
                pool.idle.pop(0).close("room_for_another_pool")  # the least recently used
                return True
        return False

    # -- reload ----------------------------------------------------------------------------

    def apply(self, old: Config, new: Config) -> None:
        """A reloaded ``backend:`` section (and the users the monitor may log in as)."""
        if len(self.servers) == 1 and len(new.backend.entries) < 2:
            self.server = apply_backend(
                self.server, self.host.all_pools(), old.backend, new.backend, self.host.stats
            )
            self.server.make_room = self.make_room
            self.servers = [self.server]
            self._set_router(new)
            return
        kept = {s.config.address: s for s in self.servers}
        servers = []
        for entry in new.backend.entries:
            server = kept.pop(entry.address, None) or self._new_server(new.backend, entry)
            server.config = _server_config(new.backend, entry)
            servers.append(server)
        gone = list(kept.values())
        self.servers = servers
        for server in gone:
            log.info(
                "server %s left backend.servers: its connections close as they come back",
                server.config.address,
            )
        if self.server in gone:
            self.primary_changed(servers[0])  # until the monitor finds the primary
        self._set_monitor(new, gone)
        self._set_router(new, gone)
        if new.backend.tls != old.backend.tls:
            now = time.monotonic()
            for pool in self.host.all_pools():
                pool.drain_before = now  # connections of the old TLS settings go as they idle

    def _set_monitor(self, new: Config, gone: list[Server]) -> None:
        monitor = self.monitor
        if len(self.servers) < 2:
            if monitor is not None:
                self._stop_monitor()
            only = self.servers[0]
            only.role = ""
            if self.server is not only:
                self.primary_changed(only)
            self._set_primary_missing(False)
            return
        if monitor is None:
            self.monitor = self._make_monitor(new)
            self.host._spawn_task(self.start())
            return
        for server in gone:
            monitor.forget(server)
        monitor.servers = self.servers
        monitor.account = self._monitor_account(new)
        monitor.interval = new.backend.monitor_interval

    def _stop_monitor(self) -> None:
        if self._monitor_task is not None:
            self._monitor_task.cancel()
            self._monitor_task = None
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None

    def _set_router(self, new: Config, gone: list[Server] = ()) -> None:  # type: ignore[assignment]
        router = self.router
        wanted = new.backend.reads == "replicas" and len(self.servers) > 1
        if router is not None and (not wanted or gone):
            for pool in router.forget(lambda name, server: not wanted or server in gone):
                retire(pool, self.host._spawn_task)
        if not wanted:
            self.router = None
        elif router is None:
            self.router = self._make_router(new)
        else:
            router.servers = self.servers
            router.max_lag = new.backend.max_replica_lag
            router.refresh()

    def forget_users(self, keep: Callable[[str], bool]) -> None:
        """Replica pools of users gone from the config close."""
        if self.router is not None:
            for pool in self.router.forget(lambda name, server: not keep(name)):
                retire(pool, self.host._spawn_task)

    def close(self) -> None:
        self._stop_monitor()
