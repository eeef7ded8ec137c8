"""Fixtures that start real things (MariaDB, proxyd, a fault-injecting relay) and always stop them.

- `mariadb`: one server for the whole session. Share it politely: don't restart it, and
  undo global changes (SET GLOBAL ...) you make.
- `fresh_mariadb` / `mariadb_factory(**options)`: servers of the test's own, free to
  kill, restart and reconfigure (starting one takes well under a second).
- `proxyd(overrides=None, backend=None)`: starts a proxyd in front of `backend`
  (default: the session `mariadb`; or any MariaDBServer, TcpRelay or "host:port").
- `relay` / `relay_factory(target)`: a TcpRelay, by default in front of `mariadb`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.proxy import Backend, ProxydProcess, backend_address
from tests.support.relay import TcpRelay

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's outcome so fixtures can show logs only for failed tests.
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    with MariaDBServer() as server:
        yield server


@pytest.fixture
def mariadb_factory() -> Iterator[Callable[..., MariaDBServer]]:
    servers: list[MariaDBServer] = []

    def start(**options: Any) -> MariaDBServer:
        server = MariaDBServer(options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def fresh_mariadb(mariadb_factory: Callable[..., MariaDBServer]) -> MariaDBServer:
    return mariadb_factory()


@pytest.fixture
def proxyd(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., ProxydProcess]]:
    started: list[ProxydProcess] = []

    def start(
        overrides: Mapping[str, Any] | None = None, backend: Backend | None = None
    ) -> ProxydProcess:
        if backend is None:
            backend = request.getfixturevalue("mariadb")
        proc = ProxydProcess(backend, overrides, workdir=tmp_path / f"proxyd-{len(started)}")
        started.append(proc)
        proc.start()
        return proc

    yield start
    failed = _failed(request)
    for proc in started:
        proc.close()
        if failed:
            print(f"--- {proc.log_path} (last lines) ---\n{proc.log_tail(80)}")


@pytest.fixture
def relay_factory() -> Iterator[Callable[[Backend], TcpRelay]]:
    relays: list[TcpRelay] = []

    def start(target: Backend) -> TcpRelay:
        relay = TcpRelay(backend_address(target))
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.close()


@pytest.fixture
def relay(mariadb: MariaDBServer, relay_factory: Callable[[Backend], TcpRelay]) -> TcpRelay:
    return relay_factory(mariadb)
