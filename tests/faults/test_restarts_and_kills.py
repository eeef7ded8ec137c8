"""Readers and writers through server restarts and KILLed backends.

The promise to an application: a read-only autocommit statement is never hurt by a
backend dying under it (proxyd re-runs it); a write may fail, but only as an ERR on a
connection that still works, never as a dropped connection, and a write proxyd
acknowledged is never lost nor applied twice.

proxyd reaches the server through a TcpRelay. Each test runs four clients in threads while
a fault happens: a graceful restart of the server; a SIGKILL of it and a start (crash
recovery); KILL CONNECTION of every backend once a second for five seconds; the relay
resetting every connection once a second; or all of these at once. It then waits until
every client got answers again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess
from tests.support.relay import TcpRelay
from tests.support.workload import (
    Connect,
    Periodic,
    Reader,
    Worker,
    Writer,
    audit_writes,
    create_write_table,
    merged,
    running,
    wait_for_progress,
)

FAULTS = [
    "graceful_restart",
    "sigkill_restart",
    "kill_every_second",
    "relay_drops_every_second",
    "all_at_once",
]
WORKERS = 4
ROUNDS = 5  # of KILLs or relay drops, one a second


@pytest.fixture(scope="module")
def server() -> Iterator[MariaDBServer]:
    """A server of this module's own: the tests restart and kill it."""
    with MariaDBServer() as server:
        yield server


def _restart(server: MariaDBServer, graceful: bool) -> None:
    pid = server.pid
    server.restart(graceful=graceful)
    assert server.pid != pid


def _inflict(fault: str, server: MariaDBServer, relay: TcpRelay) -> None:
    """The fault named; returns when it is over (and the server is up again)."""
    stop = threading.Event()
    injectors = []
    if fault in ("kill_every_second", "all_at_once"):
        injectors.append(Periodic("killer", lambda: server.kill_connections("app"), 1.0, stop))
    if fault in ("relay_drops_every_second", "all_at_once"):
        injectors.append(Periodic("dropper", relay.drop_all, 1.0, stop))
    for injector in injectors:
        # Out of phase: a relay drop just before a KILL round would leave it nothing to kill.
        injector.start()
        time.sleep(0.5)
    try:
        if fault in ("graceful_restart", "all_at_once"):
            _restart(server, graceful=True)
        if fault in ("sigkill_restart", "all_at_once"):
            _restart(server, graceful=False)
        if injectors:
            injectors[0].join(ROUNDS + 0.5)
    finally:
        stop.set()
        for injector in injectors:
            injector.join(10)
    for injector in injectors:
        assert injector.rounds >= ROUNDS - 2 and injector.total >= ROUNDS - 2, (
            f"{injector.name}: {injector.rounds} rounds hit {injector.total} connections"
        )


def _run_through(fault: str, server: MariaDBServer, relay: TcpRelay, workers: list[Worker]) -> None:
    with running(workers, workers[0].stop):
        assert wait_for_progress(workers, 10, timeout=15), "workers did not get going"
        _inflict(fault, server, relay)
        # Every client gets answers again, however long the server took to come back.
        recovered = wait_for_progress(workers, 20, timeout=30)
    assert all(not w.is_alive() for w in workers), "a worker hung"
    assert recovered, "clients stalled after the fault:\n" + merged(workers).summary()


def _connect(proxy: ProxydProcess) -> Connect:
    # A statement that hangs fails the test within 15 s instead of hanging it.
    return lambda: proxy.connect(read_timeout=15, write_timeout=15)


@pytest.mark.parametrize("fault", FAULTS)
def test_readers_see_no_error(
    fault: str,
    server: MariaDBServer,
    relay_factory: Callable[[MariaDBServer], TcpRelay],
    proxyd: Callable[..., ProxydProcess],
) -> None:
    relay = relay_factory(server)
    proxy = proxyd(backend=relay)
    stop = threading.Event()
    readers: list[Worker] = [Reader(f"reader-{i}", _connect(proxy), stop) for i in range(WORKERS)]
    _run_through(fault, server, relay, readers)
    seen = merged(readers)
    assert seen.failures == 0 and seen.dropped == 0, seen.summary()
    assert "Traceback" not in proxy.log_text()


@pytest.mark.parametrize("fault", FAULTS)
def test_writers_lose_nothing_and_apply_nothing_twice(
    fault: str,
    server: MariaDBServer,
    relay_factory: Callable[[MariaDBServer], TcpRelay],
    proxyd: Callable[..., ProxydProcess],
) -> None:
    table = f"writes_{fault}"
    create_write_table(server, table)
    relay = relay_factory(server)
    proxy = proxyd(backend=relay)
    stop = threading.Event()
    writers = [Writer(f"writer-{i}", _connect(proxy), stop, table) for i in range(WORKERS)]
    _run_through(fault, server, relay, list(writers))
    seen = merged(writers)
    audit = audit_writes(server, table, writers)
    report = f"{audit.summary()}\n{seen.summary()}"
    assert audit.acknowledged > 0, report
    assert not audit.lost, report
    assert not audit.duplicated, report
    # Failures are allowed, but only as an ERR on a connection that still works.
    assert seen.dropped == 0, report
    assert seen.unusable == 0, report
    assert "Traceback" not in proxy.log_text()
