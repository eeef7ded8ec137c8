"""The daemon: listeners, pools, signals, reload, pause, and orderly shutdown.

``run(config)`` installs uvloop and serves until stopped. ``Daemon.serve`` opens the admin
console and the metrics endpoint, warms the pools (up to ``backend.connect_timeout``),
starts accepting clients and tells systemd READY=1.

Signals and the admin console drive the rest:

  SIGHUP, RELOAD        re-read the config file; apply users, pool sizes, timeouts, log level
                        and listen addresses without dropping a client. A config that does
                        not load (or an address that cannot be bound) is rejected as a whole
                        with the reason logged, and the running config stays.
  SIGTERM, SIGINT,      stop accepting; let commands and transactions in flight finish (up to
  SHUTDOWN              ``shutdown_timeout``); say goodbye to idle clients; exit 0.
                        A second SIGTERM/SIGINT exits at once.
  PAUSE / RESUME        hold new commands (sessions call ``wait_unpaused``), let those in
                        flight finish, and close idle backends while the server is under
                        maintenance; RESUME lets everything go again.
  RECONNECT             replace every backend connection, each as soon as it is idle.

Backends are never cut from under a client: ones to be replaced (RECONNECT, a new
``backend.address``, changed backend credentials) are marked by the pool's
``drain_before`` and closed when they come back idle; a shrunk pool closes its surplus the
same way. The upkeep loop here sweeps the idle lists for those, reports STATUS= to
systemd and writes one log line per burst of backend recycling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from proxyd.admin import AdminSession, flatten_config
from proxyd.config import (
    Address,
    Config,
    ConfigError,
    PoolConfig,
    load_config,
    world_readable_secrets,
)
from proxyd.frontend import DEFAULT_SERVER_VERSION, ClientSession, State
from proxyd.logs import reconfigure
from proxyd.metrics import DaemonCollector, MetricsHTTP, Stats
from proxyd.pool import Pool, Server
from proxyd.registry import PoolSummary, ReloadResult
from proxyd.sdnotify import Notifier

log = logging.getLogger("proxyd.daemon")

UPKEEP_INTERVAL = 0.25
STATUS_INTERVAL = 2.0
BURST_INTERVAL = 1.0
# Recycle reasons worth an INFO line; routine ones (lifetime, surplus...) go to DEBUG.
_ABNORMAL_RECYCLES = frozenset({"killed", "server_closed", "ping_failed"})

# Which listener serves what: clients, the admin console, the metrics endpoint.
CLIENT, ADMIN, METRICS = "listen", "admin.listen", "metrics.listen"


class Daemon:
    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.server = Server(config.backend, self.stats)
        self.pools: dict[str, Pool] = {
            name: Pool(user, config.pool, self.server, self.stats)
            for name, user in config.users.items()
        }
        self.sessions: set[ClientSession] = set()
        self.admin_sessions: set[AdminSession] = set()
        self.accepting = False
        self.ready = False  # pools warmed and listening: READY=1 was sent
        self.stopping = False
        self.started_at = time.monotonic()
        self.notifier = notifier if notifier is not None else Notifier.from_environment()
        self.last_reload: tuple[float, ReloadResult] | None = None  # wall clock, outcome
        self._listeners: dict[tuple[str, Address], asyncio.AbstractServer] = {}
        self._removed_pools: list[Pool] = []
        self._stop = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._held = 0  # sessions waiting in wait_unpaused()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_status = ""
        self._last_recycled = self.stats.recycled()
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

    # -- serving -----------------------------------------------------------------------

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        try:
            # The console and /healthz first: they help most while the backend is slow.
            await self._open_listeners(self.config, roles=(ADMIN, METRICS))
            for pool in self.pools.values():
                pool.start()
            await self._warm_up()
            await self._open_listeners(self.config, roles=(CLIENT,))
        except OSError as exc:
            log.error("%s", exc)
            await self._close_everything()
            return 1
        self.accepting = True
        self.ready = True
        self.notifier.ready(self.status_text())
        upkeep = loop.create_task(self._upkeep_loop())
        await self._stop.wait()
        await self._shutdown()
        upkeep.cancel()
        return 0

    async def _warm_up(self) -> None:
        """Open min_idle connections per pool (and learn the server's version) before
        greeting the first client; wait no longer than backend.connect_timeout."""
        first = next(iter(self.pools.values()))
        if first.config.min_idle == 0:
            first._spawn(0)
        deadline = time.monotonic() + self.config.backend.connect_timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.server.version is not None and all(
                len(pool.conns) >= pool.config.min_idle for pool in self.pools.values()
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

    @staticmethod
    def _wanted_listeners(config: Config) -> list[tuple[str, Address]]:
        wanted = [(CLIENT, address) for address in config.listen]
        if config.admin is not None:
            wanted.append((ADMIN, config.admin.listen))
        if config.metrics is not None:
            wanted.append((METRICS, config.metrics.listen))
        return wanted

    async def _open_listeners(
        self, config: Config, roles: tuple[str, ...] = (CLIENT, ADMIN, METRICS)
    ) -> list[tuple[str, Address]]:
        """Bind what ``config`` wants and is not bound yet; all or nothing (OSError)."""
        loop = asyncio.get_running_loop()
        opened: list[tuple[str, Address]] = []
        for key in self._wanted_listeners(config):
            role, address = key
            if role not in roles or key in self._listeners:
                continue
            try:
                listener = await loop.create_server(
                    self._factory(role),
                    address.host,
                    address.port,
                    reuse_address=True,
                    backlog=1024 if role == CLIENT else 64,
                )
            except OSError as exc:
                for done in opened:
                    self._listeners.pop(done).close()
                raise OSError(
                    exc.errno, f"cannot listen on {address} ({role}): {exc.strerror or exc}"
                ) from None
            self._listeners[key] = listener
            opened.append(key)
            log.info("listening on %s (%s)", address, role)
        return opened

    def _close_listeners(self, keys: list[tuple[str, Address]]) -> None:
        for key in keys:
            listener = self._listeners.pop(key, None)
            if listener is not None:
                listener.close()
                log.info("no longer listening on %s (%s)", key[1], key[0])

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

    def _spawn_task(self, coro: Any) -> None:
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
            await self._open_listeners(new)
        except OSError as exc:
            return ReloadResult(False, exc.strerror or str(exc))
        changes = _config_changes(old, new)

        self._apply_backend(old, new)
        self.config = new
        self._apply_users(old, new)
        for pool in self.all_pools():
            pool.config = self._pool_config()
            self._sweep(pool)
        gone = [key for key in self._listeners if key not in self._wanted_listeners(new)]
        self._close_listeners(gone)

        if world_readable_secrets(new.path):
            log.warning(
                "%s is readable by other users and contains passwords; "
                "run chmod o-r on it or use password_file/password_env",
                new.path,
            )
        summary = "; ".join(changes) if changes else "no changes"
        # Logged before the new log level applies, so that `info` -> `warning` still shows.
        log.info("reloaded %s: %s", new.path, summary)
        if new.log != old.log:
            reconfigure(new.log.level, new.log.format)
        return ReloadResult(True, summary)

    def _apply_backend(self, old: Config, new: Config) -> None:
        if new.backend == old.backend:
            return
        server = self.server
        if (
            new.backend.address == old.backend.address
            and new.backend.max_connecting == old.backend.max_connecting
        ):
            server.config = new.backend  # timeouts: read at each use
            return
        replacement = Server(new.backend, self.stats)
        if new.backend.address == old.backend.address:
            # Same server, new connect budget: keep what we know of it.
            replacement.version = server.version
            replacement.charset = server.charset
            replacement.up = server.up
        else:
            replacement.version = server.version  # shown to clients until the new one answers
            replacement.charset = server.charset
            log.info(
                "backend.address changed from %s to %s: new backend connections go to %s; "
                "the %d to %s close as they become idle",
                old.backend.address,
                new.backend.address,
                new.backend.address,
                sum(len(pool.conns) for pool in self.all_pools()),
                old.backend.address,
            )
        self.server = replacement
        now = time.monotonic()
        for pool in self.all_pools():
            pool.server = replacement
            if new.backend.address != old.backend.address:
                pool.drain_before = now

    def _apply_users(self, old: Config, new: Config) -> None:
        now = time.monotonic()
        for name, user in new.users.items():
            pool = self.pools.get(name)
            if pool is None:
                pool = next((p for p in self._removed_pools if p.name == name), None)
                if pool is not None:
                    self._removed_pools.remove(pool)
                else:
                    pool = Pool(user, self._pool_config(), self.server, self.stats)
                    pool.start()
                    log.info("user %s added", name)
                self.pools[name] = pool
            previous = pool.user
            pool.user = user
            if (previous.backend_user, previous.backend_password) != (
                user.backend_user,
                user.backend_password,
            ):
                pool.drain_before = now
                log.info("user %s: backend credentials changed; replacing its backends", name)
        for name in [name for name in self.pools if name not in new.users]:
            pool = self.pools.pop(name)
            self._removed_pools.append(pool)
            log.info(
                "user %s removed: no new logins; its %d clients keep their sessions",
                name,
                sum(1 for s in self.sessions if s.pool is pool),
            )

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
        log.info("PAUSE: holding new commands")
        for pool in self.all_pools():
            pool.config = self._pool_config()
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self._busy_sessions() and time.monotonic() < deadline and self.paused:
            await asyncio.sleep(0.05)
        if not self.paused:
            return "resumed before the pause completed"
        closed = sum(self._sweep(pool) for pool in self.all_pools())
        busy = self._busy_sessions()
        message = f"paused; {closed} idle backend connections closed"
        if busy:
            message += f"; {busy} clients are still inside a command or transaction"
        log.info("%s", message)
        self._report_status()
        return message

    def resume(self) -> str:
        if not self.paused:
            return "was not paused"
        self._unpaused.set()
        for pool in self.all_pools():
            pool.config = self._pool_config()
        log.info("RESUME: commands flow again")
        self._report_status()
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
            self._sweep(pool)
        log.info("RECONNECT: replacing %d backend connections as they become idle", count)
        return count

    def kill_client(self, session_id: int) -> bool:
        session = next((s for s in self.sessions if s.id == session_id), None)
        if session is None:
            return False
        log.info("KILL CLIENT %d (%s, %s)", session_id, session.user or "-", session.peer)
        session.goodbye()
        return True

    # -- upkeep ------------------------------------------------------------------------

    def all_pools(self) -> list[Pool]:
        return [*self.pools.values(), *self._removed_pools]

    def _sweep(self, pool: Pool) -> int:
        """Close idle backends that are draining, surplus, or kept while paused."""
        closed = 0
        for conn in list(pool.idle):
            if conn.created_at < pool.drain_before:
                reason = "drained"
            elif self.paused:
                reason = "paused"
            elif pool.size > pool.config.max_size:
                reason = "surplus"
            else:
                continue
            pool.idle.remove(conn)
            self.stats.inc(f"recycled_{reason}")
            conn.close(reason)
            closed += 1
        return closed

    async def _upkeep_loop(self) -> None:
        last_status = last_burst = last_watchdog = 0.0
        watchdog_every = self.notifier.watchdog_usec / 2e6
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL)
            now = time.monotonic()
            try:
                for pool in self.all_pools():
                    self._sweep(pool)
                self._retire_removed_pools()
                if now - last_burst >= BURST_INTERVAL:
                    last_burst = now
                    self._log_recycling()
                if now - last_status >= STATUS_INTERVAL:
                    last_status = now
                    self._report_status()
            except Exception:  # upkeep must outlive any one bad state
                log.exception("upkeep error")
            if watchdog_every and now - last_watchdog >= watchdog_every:
                last_watchdog = now
                self.notifier.watchdog()

    def _retire_removed_pools(self) -> None:
        for pool in list(self._removed_pools):
            if any(s.pool is pool for s in self.sessions):
                continue
            self._removed_pools.remove(pool)
            self._spawn_task(self._close_pool(pool))
            log.info("pool of removed user %s closed", pool.name)

    @staticmethod
    async def _close_pool(pool: Pool) -> None:
        await pool.close()
        pool.close_all()

    def _log_recycling(self) -> None:
        """One line per burst: a server restart closing 50 backends is one event."""
        now = self.stats.recycled()
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
            sum(len(pool.conns) for pool in self.all_pools()),
            "up" if self.server.up else "down",
        )

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

    def _report_status(self) -> None:
        if not self.notifier.enabled:
            return
        text = self.status_text()
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)

    # -- views for the admin console and metrics ---------------------------------------

    def readiness(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        if not self.ready:
            return False, "starting"
        if self.paused:
            return False, "paused"
        cold = [p.name for p in self.pools.values() if len(p.conns) < p.config.min_idle]
        if cold:
            return False, f"pools below min_idle: {', '.join(cold)}"
        return True, "ready"

    def pool_summaries(self) -> list[PoolSummary]:
        now = time.monotonic()
        by_pool: dict[int, list[ClientSession]] = {}
        for session in self.sessions:
            if session.pool is not None:
                by_pool.setdefault(id(session.pool), []).append(session)
        summaries = []
        for pool in self.all_pools():
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
                    removed=pool in self._removed_pools,
                )
            )
        return summaries

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    # -- shutdown ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self.stopping = True
        self.accepting = False
        self.notifier.stopping(self.status_text())
        self._close_listeners([key for key in self._listeners if key[0] == CLIENT])
        if self.paused:
            log.info("shutdown: letting the commands held by PAUSE run")
            self.resume()
        deadline = time.monotonic() + self.config.shutdown_timeout
        while time.monotonic() < deadline:
            for session in list(self.sessions):
                if not session.wants_to_finish():
                    session.goodbye()
            if not self.sessions:
                break
            self._report_status()
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
        for pool in self.all_pools():
            await pool.close()
            pool.close_all()
        self._close_listeners(list(self._listeners))
        for admin in list(self.admin_sessions):
            admin.goodbye()
        await asyncio.sleep(0)
        self.notifier.close()


# -- config differences, for the reload log line and RELOAD's answer ----------------------


def _config_changes(old: Config, new: Config) -> list[str]:
    before, after = flatten_config(old), flatten_config(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key.startswith("path") or key.endswith(".name"):
            continue
        if key not in after:
            changes.append(f"{key} removed")
        elif key not in before:
            changes.append(f"{key} = {after[key]}")
        elif before[key] != after[key]:
            changes.append(f"{key}: {before[key]} -> {after[key]}")
    # Redaction hides password changes; name them (never the values).
    for name, user in new.users.items():
        was = old.users.get(name)
        if was is not None and was.password != user.password:
            changes.append(f"users[{name}].password changed")
        if was is not None and was.backend_password != user.backend_password:
            changes.append(f"users[{name}].backend_password changed")
    if old.admin and new.admin and old.admin.password != new.admin.password:
        changes.append("admin.password changed")
    return changes


def run(config: Config) -> int:
    import uvloop

    uvloop.install()
    try:
        return asyncio.run(Daemon(config).serve())
    except KeyboardInterrupt:
        return 1
