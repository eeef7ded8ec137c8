"""Many mostly idle clients: what each costs the middle process, and a burst of them at once.

Issue 10's goal 4: 10,000 mostly idle client connections on a pool of 20, at most 10 KiB
of proxyd's RSS per client and no errors; then 500 of them busy at once, no errors. One
round against one target, all clients on one event loop in this process:

1. warm-up: a few connections log in, run a query and leave, so that what the middle
   process sets up on first use (lazy imports, its pool) is not charged to the clients;
2. RSS of the middle process ("before");
3. ``clients`` connections log in to database ``test``, ``_CONNECTING`` at a time (below
   the listen backlog of proxyd and of the relay); after a second of quiet, RSS again
   ("after"): (after - before) / connected is the memory per idle client;
4. ``bursts`` times, ``busy`` of them (another slice of the connections each time) send a
   point select at once; each query is timed from send to the end of its answer;
5. every connection sends COM_PING, so that one the middle process dropped while it sat
   idle counts as an error; then all send COM_QUIT and close.

Every connect, login, query or ping that fails is an error, counted by its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import uvloop

from bench.wire import PING, AsyncConnection, QueryFailed
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import LoginRefused

_WARMUP = 20
# Logins in flight at once: well below the listen backlog (1024 in proxyd and the relay),
# so the kernel never drops a SYN and the connect phase measures the middle, not retries.
_CONNECTING = 200
_SETTLE = 1.0  # seconds of quiet before the "after" RSS
_TIMEOUT = 30.0  # for one login, query or ping
_FAILURES = (OSError, asyncio.TimeoutError, LoginRefused, ProtocolError, QueryFailed)


@dataclass
class IdleRound:
    clients: int
    connected: int = 0
    connect_seconds: float = 0.0
    cpu_connect_seconds: float = 0.0  # of the middle process, over step 3
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    busy: int = 0
    busy_queries: int = 0  # answered without error
    busy_seconds: float = 0.0
    cpu_busy_seconds: float = 0.0  # of the middle process, over step 4
    lost_while_idle: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def kib_per_client(self) -> float | None:
        if not self.connected or not self.rss_after_kib:
            return None
        return (self.rss_after_kib - self.rss_before_kib) / self.connected


# (CPU seconds, RSS KiB) of the middle process; (0.0, 0) when there is none (direct).
Probe = Callable[[], tuple[float, int]]


def run(
    address: tuple[str, int],
    login: tuple[str, str, str],
    probe: Probe,
    clients: int,
    busy: int,
    bursts: int,
    statements: list[bytes],
) -> tuple[IdleRound, Counter[int]]:
    """One round against one target; the busy queries' latencies (us -> count) beside it."""
    return uvloop.run(_round(address, login, probe, clients, busy, bursts, statements))


async def _round(
    address: tuple[str, int],
    login: tuple[str, str, str],
    probe: Probe,
    clients: int,
    busy: int,
    bursts: int,
    statements: list[bytes],
) -> tuple[IdleRound, Counter[int]]:
    result = IdleRound(clients)
    micros: Counter[int] = Counter()
    gate = asyncio.Semaphore(_CONNECTING)
    broken: set[int] = set()  # connections that failed once are not asked again

    def failed(what: str, exc: BaseException) -> None:
        text = str(exc) or type(exc).__name__
        result.errors[f"{what}: {text[:120]}"] += 1

    async def open_one() -> AsyncConnection | None:
        async with gate:
            try:
                return await asyncio.wait_for(AsyncConnection.open(*address, *login), _TIMEOUT)
            except _FAILURES as exc:
                failed("login", exc)
                return None

    async def query(conn: AsyncConnection, packet: bytes) -> None:
        started = time.perf_counter_ns()
        try:
            await asyncio.wait_for(conn.query(packet), _TIMEOUT)
        except _FAILURES as exc:
            broken.add(id(conn))
            failed("query", exc)
            return
        micros[round((time.perf_counter_ns() - started) / 1000)] += 1
        result.busy_queries += 1

    async def ping(conn: AsyncConnection) -> None:
        async with gate:
            try:
                await asyncio.wait_for(conn.query(PING), _TIMEOUT)
            except _FAILURES as exc:
                result.lost_while_idle += 1
                failed("ping after idling", exc)

    warm = [c for c in await asyncio.gather(*(open_one() for _ in range(_WARMUP))) if c]
    for conn in warm:
        with contextlib.suppress(*_FAILURES):
            await conn.query(statements[0])
    await _close_all(warm)
    await asyncio.sleep(_SETTLE / 2)

    cpu_before, result.rss_before_kib = probe()
    started = time.monotonic()
    opened = await asyncio.gather(*(open_one() for _ in range(clients)))
    result.connect_seconds = time.monotonic() - started
    conns = [c for c in opened if c is not None]
    result.connected = len(conns)
    await asyncio.sleep(_SETTLE)
    cpu_idle, result.rss_after_kib = probe()
    result.cpu_connect_seconds = cpu_idle - cpu_before

    result.busy = min(busy, len(conns))
    if result.busy:
        stride = len(conns) // result.busy
        started = time.monotonic()
        for burst in range(bursts):
            chosen = conns[burst % stride :: stride][: result.busy]
            await asyncio.gather(
                *(
                    query(conn, statements[(burst * result.busy + i) % len(statements)])
                    for i, conn in enumerate(chosen)
                )
            )
        result.busy_seconds = time.monotonic() - started
        result.cpu_busy_seconds = probe()[0] - cpu_idle

    await asyncio.gather(*(ping(c) for c in conns if id(c) not in broken))
    await _close_all(conns)
    return result, micros


async def _close_all(conns: list[AsyncConnection]) -> None:
    for conn in conns:
        conn.close()
    await asyncio.gather(*(conn.wait_closed() for conn in conns))
