"""The daemon: listeners, pools, signals, and orderly shutdown.

``run(config)`` installs uvloop, builds one Server for the backend address and
one Pool per user, warms the pools, starts listening, and serves until
SIGTERM/SIGINT. On SIGTERM it stops accepting, lets commands and open
transactions in flight finish (up to ``shutdown_timeout``), says goodbye to
idle clients, closes the pools and returns 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from proxyd.config import Config
from proxyd.frontend import DEFAULT_SERVER_VERSION, ClientSession
from proxyd.metrics import Stats
from proxyd.pool import Pool, Server

log = logging.getLogger("proxyd.daemon")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.server = Server(config.backend, self.stats)
        self.pools: dict[str, Pool] = {
            name: Pool(user, config.pool, self.server, self.stats)
            for name, user in config.users.items()
        }
        self.sessions: set[ClientSession] = set()
        self.accepting = False
        self.started_at = time.monotonic()
        self._listeners: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self._signals = 0

    def server_version(self) -> bytes:
        return self.server.version or DEFAULT_SERVER_VERSION

    def server_charset(self) -> int:
        return self.server.charset

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        for pool in self.pools.values():
            pool.start()
        await self._warm_up()
        for address in self.config.listen:
            listener = await loop.create_server(
                lambda: ClientSession(self),
                address.host,
                address.port,
                reuse_address=True,
                backlog=1024,
            )
            self._listeners.append(listener)
            log.info("listening on %s", address)
        self.accepting = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        await self._stop.wait()
        await self._shutdown()
        return 0

    async def _warm_up(self) -> None:
        """Learn the server's version before the first greeting; don't wait forever."""
        first = next(iter(self.pools.values()))
        if first.config.min_idle == 0:
            first._spawn(0)
        deadline = time.monotonic() + self.config.backend.connect_timeout
        while time.monotonic() < deadline and self.server.version is None:
            await asyncio.sleep(0.02)
        if self.server.version is None:
            log.warning(
                "server %s not reachable yet; accepting clients anyway (%s)",
                self.config.backend.address,
                self.server.last_error or "no answer",
            )

    def _on_stop_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now")
            raise SystemExit(1)
        log.info("%s: shutting down gracefully", signal.Signals(sig).name)
        self._stop.set()

    async def _shutdown(self) -> None:
        self.accepting = False
        for listener in self._listeners:
            listener.close()
        deadline = time.monotonic() + self.config.shutdown_timeout
        while time.monotonic() < deadline:
            for session in list(self.sessions):
                if not session.wants_to_finish():
                    session.goodbye()
            if not self.sessions:
                break
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.goodbye()
        for pool in self.pools.values():
            await pool.close()
            pool.close_all()
        await asyncio.sleep(0)
        log.info("stopped")


def run(config: Config) -> int:
    import uvloop

    uvloop.install()
    try:
        return asyncio.run(Daemon(config).serve())
    except KeyboardInterrupt:
        return 1
