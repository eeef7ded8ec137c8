"""The daemon: listeners, pools, signals, reload, pause, and orderly shutdown.

``run(config)`` installs uvloop and serves until stopped. ``Daemon.serve`` opens the admin
console and the metrics endpoint, warms the pools (up to ``backend.connect_timeout``),
starts accepting clients and tells systemd READY=1.

Signals and the admin console drive the rest:

  SIGHUP, RELOAD        re-read the config file; apply users, pool sizes, timeouts, servers
                        (proxyd/topology.py), log level and listen addresses without dropping
                        a client. A config that does
                        not load (or an address that cannot be bound) is rejected as a whole
                        with the reason logged, and the running config stays.
  SIGTERM, SIGINT,      stop accepting (after ``shutdown_delay``, during which /readyz says
  SHUTDOWN              "stopping"); let commands and transactions in flight finish (up to
                        ``shutdown_timeout``); say goodbye to idle clients, or with
                        ``shutdown_wait_for_clients`` wait for clients to leave; exit 0.
                        A second SIGTERM/SIGINT exits at once.
  PAUSE / RESUME        hold new commands (sessions call ``wait_unpaused``), let those in
                        flight finish, and close idle backends while the server is under
                        maintenance; RESUME lets everything go again.
  RECONNECT             replace every backend connection, each as soon as it is idle.

Backends are never cut from under a client: ones to be replaced (RECONNECT, a new
``backend.address``, changed backend credentials) are marked by the pool's
``drain_before`` and closed when they come back idle; a shrunk pool closes its surplus the
same way. ``proxyd.upkeep`` sweeps the idle lists for those, reports STATUS= to systemd and
writes one log line per burst of backend recycling; ``proxyd.reload`` applies a new config
to the pools, ``proxyd.topology`` to the servers, and ``proxyd.listeners`` holds the
listening sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any

from proxyd.admin import AdminSession
from proxyd.config import (
    Config,
    ConfigError,
    PoolConfig,
    UserConfig,
    load_config,
)
from proxyd.config_view import secrets_warning, world_readable_secrets
from proxyd.frontend import DEFAULT_SERVER_VERSION, ClientSession, State
from proxyd.listeners import ADMIN, CLIENT, METRICS, Listeners
from proxyd.logs import reconfigure
from proxyd.metrics import DaemonCollector, MetricsHTTP
from proxyd.pool import Pool, Server
from proxyd.pool.accounts import AccountLookup, Found
from proxyd.pool.router import Router
from proxyd.protocol import auth
from proxyd.registry import PoolSummary, ReloadResult
from proxyd.reload import apply_users, config_changes
from proxyd.sdnotify import Notifier
from proxyd.session.guard import LoginGuard
from proxyd.stats import Stats
from proxyd.topology import Topology
from proxyd.upkeep import Upkeep, close_pool

log = logging.getLogger("proxyd.daemon")


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.stats = Stats()
        # The servers, which is the primary, where reads go (proxyd/topology.py).
        self.topology = Topology(config, self)
        self.pools: dict[str, Pool] = {
            name: Pool(user, config.pool, self.server, self.stats)
            for name, user in config.users.items()
        }
        # Pools of accounts read from the server (users_from_server), made at first login.
        self.server_pools: dict[str, Pool] = {}
        self.accounts = self._account_lookup(config)
        # caching_sha2_password's full path without TLS: auth.rsa_key, or one made now.
        self.rsa_key = config.auth.rsa_key or auth.generate_rsa_key()
        self.sessions: set[ClientSession] = set()
        self.logins_in_progress = 0  # client connections not logged in yet
        self.login_guard = LoginGuard(
            config.auth.failed_login_threshold,
            config.auth.failed_login_delay,
            config.auth.failed_login_max_delay,
        )
        self.admin_sessions: set[AdminSession] = set()
        self.accepting = False
        self.ready = False  # pools warmed and listening: READY=1 was sent
        self.stopping = False
        self.started_at = time.monotonic()
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.last_reload: tuple[float, ReloadResult] | None = None  # wall clock, outcome
        self.listeners = Listeners(self._factory)
        self.removed_pools: list[Pool] = []  # of users gone from the config
        self._stop = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        # New work waits (PAUSE, or no writable server): sessions read this one attribute.
        self.holding = False
        self._held = 0  # sessions waiting in wait_unpaused()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.upkeep = Upkeep(self)
        self.stats.registry.register(DaemonCollector(self))

    # -- what sessions ask ---------------------------------------------------------

    def server_version(self) -> bytes:
        return self.server.version or DEFAULT_SERVER_VERSION

    def server_charset(self) -> int:
        return self.server.charset

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    async def wait_unpaused(self) -> None:
        """Return once no PAUSE is in force; sessions call it before taking a backend."""
        if self._unpaused.is_set():
            return
        self._held += 1
        try:
            await self._unpaused.wait()
        finally:
            self._held -= 1

    # -- several servers (proxyd/topology.py) ------------------------------------------

    @property
    def server(self) -> Server:
        """The primary: the server the users' pools connect to."""
        return self.topology.server

    @property
    def servers(self) -> list[Server]:
        return self.topology.servers

    @property
    def router(self) -> Router | None:
        return self.topology.router

    @property
    def primary_missing(self) -> bool:
        return self.topology.primary_missing

    async def wait_for_primary(self) -> None:
        await self.topology.wait_for_primary()

    def _update_holding(self) -> None:
        self.holding = self.paused or self.topology.primary_missing

    def _sweep(self, pool: Pool) -> None:
        self.upkeep.sweep(pool)

    # -- accounts --------------------------------------------------------------------

    def _account_lookup(self, config: Config) -> AccountLookup | None:
        if config.users_from_server is None:
            return None
        return AccountLookup(config.users_from_server, lambda: self.server)

    def user_config(self, name: str) -> UserConfig | None:
        """The account a client logs in as: from ``users:``, else as last read from the
        server (users_from_server)."""
        user = self.config.users.get(name)
        if user is None and self.accounts is not None:
            user = self.accounts.known(name)
        return user

    def pool_for(self, user: UserConfig) -> Pool:
        if not user.from_server:
            return self.pools[user.name]
        pool = self.server_pools.get(user.name)
        if pool is None:
            pool = self.server_pools[user.name] = Pool(
                user, self._pool_config(), self.server, self.stats
            )
            pool.start()
        return pool

    def account_read(self, name: str, found: Found) -> None:
        """A lookup's answer: a dropped account's pool goes, a new password drains it."""
        pool = self.server_pools.get(name)
        if pool is None or found.user == pool.user:
            return
        if found.user is None:
            del self.server_pools[name]
            self.removed_pools.append(pool)
            log.info("account %s is gone from the server: its idle backends are closed", name)
        else:
            pool.user = found.user
            pool.password_sha1 = None  # the next client's login gives the new one
            log.info("account %s changed its password on the server", name)
        pool.drain_before = time.monotonic()
        self.upkeep.sweep(pool)

    # -- serving -----------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            # The console and /healthz first: they help most while the backend is slow.
            await self.listeners.open(self.config, roles=(ADMIN, METRICS))
            await self.topology.start()
            for pool in self.pools.values():
                pool.start()
            await self._warm_up()
            await self.listeners.open(self.config, roles=(CLIENT,))
        except OSError as exc:
            log.error("%s", exc)
            await self._close_everything()
            return 1
        self.accepting = True
        self.ready = True
        self.notifier.ready(self.status_text())
        upkeep = loop.create_task(self.upkeep.run())
        await self._stop.wait()
        await self._shutdown()
        upkeep.cancel()
        return 0

    async def _warm_up(self) -> None:
        """Open min_idle connections per pool (and learn the server's version) before
        greeting the first client; wait no longer than backend.connect_timeout."""
        pools = [pool for pool in self.pools.values() if pool.can_connect]
        if pools and pools[0].config.min_idle == 0:
            pools[0]._spawn(0)
        elif not pools and self.accounts is not None:
            self._spawn_task(self.accounts.warm())
        deadline = time.monotonic() + self.config.backend.connect_timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.server.version is not None and all(
                len(pool.conns) >= pool.config.min_idle for pool in pools
            ):
                return
            if self.server.failures and not self.server.up:
                break  # the server refuses or is down: Server logs why; don't stall startup
            await asyncio.sleep(0.02)
        if self.server.version is None:
            log.warning(
                "server %s not reachable yet; accepting clients anyway (%s)",
                self.config.backend.address,
                self.server.last_error or "no answer",
            )

    def _factory(self, role: str) -> Callable[[], asyncio.Protocol]:
        if role == ADMIN:
            return lambda: AdminSession(self)
        if role == METRICS:
            return lambda: MetricsHTTP(self)
        return lambda: ClientSession(self)

    # -- signals -------------------------------------------------------------------------

    def _on_stop_signal(self, sig: int) -> None:
        if self.stopping:
            log.warning("%s during shutdown: exiting now", signal.Signals(sig).name)
            raise SystemExit(1)
        log.info("%s: shutting down gracefully", signal.Signals(sig).name)
        self.request_shutdown()

    def _on_reload_signal(self) -> None:
        if not self.ready or self.stopping:
            log.warning("SIGHUP ignored: proxyd is %s", "stopping" if self.stopping else "starting")
            return
        log.info("SIGHUP: reloading %s", self.config.path)
        self._spawn_task(self.reload())

    def _spawn_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def request_shutdown(self) -> None:
        self.stopping = True
        self._stop.set()

    # -- reload ------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Re-read the config file and apply it; the old config stays on any error."""
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                result = await self._reload()
            except Exception as exc:  # a bug here must not leave systemd in RELOADING
                log.exception("reload failed")
                result = ReloadResult(False, f"internal error: {exc}")
            if not result.ok:
                self.stats.inc("reload_failures")
                log.error("reload rejected, the running config stays: %s", result.message)
            else:
                self.stats.inc("reloads")
            self.last_reload = (time.time(), result)
            self.notifier.ready(self.status_text())
            return result

    async def _reload(self) -> ReloadResult:
        old = self.config
        try:
            new = load_config(old.path)
        except ConfigError as exc:
            return ReloadResult(False, str(exc))
        try:
            await self.listeners.open(new)
        except OSError as exc:
            return ReloadResult(False, exc.strerror or str(exc))
        changes = config_changes(old, new)

        self.topology.apply(old, new)
        self.config = new
        if new.users_from_server != old.users_from_server:
            if self.accounts is not None:
                self.accounts.close()
            self.accounts = self._account_lookup(new)
        if new.auth.rsa_key_file != old.auth.rsa_key_file:
            self.rsa_key = new.auth.rsa_key or auth.generate_rsa_key()
        self.login_guard.configure(
            new.auth.failed_login_threshold,
            new.auth.failed_login_delay,
            new.auth.failed_login_max_delay,
        )
        apply_users(
            self.pools,
            self.removed_pools,
            new.users,
            new_pool=lambda user: Pool(user, self._pool_config(), self.server, self.stats),
            clients=self.clients_of,
        )
        self.topology.forget_users(lambda name: name in new.users or name in self.server_pools)
        for pool in self.all_pools():
            pool.config = self._pool_config()
            self.upkeep.sweep(pool)
        self.listeners.close_unwanted(new)

        if world_readable_secrets(new.path):
            log.warning("%s", secrets_warning(new.path))
        summary = "; ".join(changes) if changes else "no changes"
        # Logged before the new log level applies, so that `info` -> `warning` still shows.
        log.info("reloaded %s: %s", new.path, summary)
        if new.log != old.log:
            reconfigure(new.log.level, new.log.format)
        return ReloadResult(True, summary)

    def _pool_config(self) -> PoolConfig:
        """The pool settings in force: the config's, with no idle backends kept while paused."""
        if self.paused:
            return dataclasses.replace(self.config.pool, min_idle=0)
        return self.config.pool

    # -- pause, reconnect, kill --------------------------------------------------------

    async def pause(self) -> str:
        """Hold new commands, wait for those in flight, close idle backends."""
        if self.paused:
            return "already paused"
        self._unpaused.clear()
        self._update_holding()
        log.info("PAUSE: holding new commands")
        for pool in self.all_pools():
            pool.config = self._pool_config()
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self._busy_sessions() and time.monotonic() < deadline and self.paused:
            await asyncio.sleep(0.05)
        if not self.paused:
            return "resumed before the pause completed"
        closed = sum(self.upkeep.sweep(pool) for pool in self.all_pools())
        busy = self._busy_sessions()
        message = f"paused; {closed} idle backend connections closed"
        if busy:
            message += f"; {busy} clients are still inside a command or transaction"
        log.info("%s", message)
        self.upkeep.report_status()
        return message

    def resume(self) -> str:
        if not self.paused:
            return "was not paused"
        self._unpaused.set()
        self._update_holding()
        for pool in self.all_pools():
            pool.config = self._pool_config()
        log.info("RESUME: commands flow again")
        self.upkeep.report_status()
        return "resumed"

    def _busy_sessions(self) -> int:
        """Sessions with a command or transaction in flight (not counting PAUSE's held)."""
        return max(0, sum(1 for s in self.sessions if s.wants_to_finish()) - self._held)

    def reconnect(self) -> int:
        """Replace every backend connection, each as soon as it is idle; return how many."""
        now = time.monotonic()
        count = 0
        for pool in self.all_pools():
            pool.drain_before = now
            count += len(pool.conns)
            self.upkeep.sweep(pool)
        log.info("RECONNECT: replacing %d backend connections as they become idle", count)
        return count

    def kill_client(self, session_id: int) -> bool:
        session = next((s for s in self.sessions if s.id == session_id), None)
        if session is None:
            return False
        log.info("KILL CLIENT %d (%s, %s)", session_id, session.user or "-", session.peer)
        session.goodbye()
        return True

    def all_pools(self) -> list[Pool]:
        pools = [*self.pools.values(), *self.server_pools.values(), *self.removed_pools]
        if self.router is not None:
            pools += self.router.pools()
        return pools

    def user_pools(self) -> list[Pool]:
        """The pools of users, on the primary (SHOW POOLS, metrics per user)."""
        return [*self.pools.values(), *self.server_pools.values(), *self.removed_pools]

    def clients_of(self, pool: Pool) -> int:
        return sum(1 for s in self.sessions if s.pool is pool)

    # -- views for systemd, the admin console and metrics ---------------------------------

    def status_text(self) -> str:
        pools = self.pool_summaries()
        active = sum(p.backends_active for p in pools)
        idle = sum(p.backends_idle for p in pools)
        text = (
            f"{len(self.sessions)} clients, {active + idle} backends ({active} active, {idle} idle)"
        )
        if self.paused:
            text += "; PAUSED"
        if self.stopping:
            text = "stopping: " + text
        if not self.server.up:
            text += f"; backend unreachable: {self.server.last_error or 'no connection yet'}"
        return text

    def readiness(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        if not self.ready:
            return False, "starting"
        if self.paused:
            return False, "paused"
        cold = [
            p.name
            for p in self.pools.values()
            if p.can_connect and len(p.conns) < p.config.min_idle
        ]
        if cold:
            return False, f"pools below min_idle: {', '.join(cold)}"
        return True, "ready"

    def login_state(self) -> tuple[int, int]:
        """(client connections still logging in, addresses whose logins are slowed)."""
        return self.logins_in_progress, self.login_guard.addresses_delayed

    def pool_summaries(self) -> list[PoolSummary]:
        now = time.monotonic()
        by_pool: dict[int, list[ClientSession]] = {}
        for session in self.sessions:
            if session.pool is not None:
                by_pool.setdefault(id(session.pool), []).append(session)
        summaries = []
        for pool in self.user_pools():
            sessions = by_pool.get(id(pool), [])
            active = waiting = 0
            for s in sessions:
                if s.backend is not None or s.state in (State.IN_COMMAND, State.INFILE):
                    active += 1
                elif s.state is State.ACQUIRING:
                    waiting += 1
            idle = len(pool.idle)
            summaries.append(
                PoolSummary(
                    user=pool.name,
                    mode=self.config.pool.mode,
                    clients_active=active,
                    clients_waiting=waiting,
                    clients_idle=len(sessions) - active - waiting,
                    backends_active=max(0, len(pool.conns) - idle),
                    backends_idle=idle,
                    backends_connecting=pool.connecting,
                    backends_max=pool.config.max_size,
                    longest_wait=max((now - w.since for w in pool.waiters), default=0.0),
                    removed=pool in self.removed_pools,
                )
            )
        return summaries

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    # -- shutdown ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self.stopping = True
        self.notifier.stopping(self.status_text())
        delay = self.config.shutdown_delay
        if delay > 0 and self.ready:
            # /readyz says "stopping" while clients are still accepted, until a load
            # balancer's health check has taken proxyd out of its rotation.
            log.info("shutdown: not ready; accepting clients for %gs more (shutdown_delay)", delay)
            await asyncio.sleep(delay)
        self.accepting = False
        self.listeners.close_role(CLIENT)
        if self.paused:
            log.info("shutdown: letting the commands held by PAUSE run")
            self.resume()
        wait_for_clients = self.config.shutdown_wait_for_clients
        if wait_for_clients and self.sessions:
            log.info(
                "shutdown: waiting up to %gs for %d clients to disconnect",
                self.config.shutdown_timeout,
                len(self.sessions),
            )
        deadline = time.monotonic() + self.config.shutdown_timeout
        while time.monotonic() < deadline:
            for session in list(self.sessions):
                if not wait_for_clients and not session.wants_to_finish():
                    session.goodbye()
            if not self.sessions:
                break
            self.upkeep.report_status()
            await asyncio.sleep(0.05)
        if self.sessions:
            log.warning(
                "shutdown_timeout (%gs) passed; closing %d clients still busy",
                self.config.shutdown_timeout,
                len(self.sessions),
            )
        await self._close_everything()
        log.info("stopped")

    async def _close_everything(self) -> None:
        for session in list(self.sessions):
            session.goodbye()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()  # the monitor, reloads in progress
        self.topology.close()
        if self.accounts is not None:
            self.accounts.close()
        for pool in self.all_pools():
            await close_pool(pool)
        self.listeners.close_all()
        for admin in list(self.admin_sessions):
            admin.goodbye()
        await asyncio.sleep(0)
        self.notifier.close()


def run(config: Config) -> int:
    import uvloop

    uvloop.install()
    try:
        return asyncio.run(Daemon(config).serve())
    except KeyboardInterrupt:
        return 1
