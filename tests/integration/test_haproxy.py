"""The HAProxy recipe (config/haproxy.cfg) in front of two proxyd instances: one proxyd
drained with SIGTERM under load; HAProxy stops sending it clients, those that connect
again land on the other, and no query fails (issue 13)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port, port_accepts, spawn, stop_process, wait_until
from tests.support.proxy import REPO_ROOT, ProxydProcess
from tests.support.workload import running

RECIPE = REPO_ROOT / "config" / "haproxy.cfg"


def _haproxy_binary() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail("no haproxy; run scripts/setup")
    return found


def _metrics_port(proxy: ProxydProcess) -> str:
    return str(proxy.config["metrics"]["listen"]).rsplit(":", 1)[1]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[list[ProxydProcess]], int]]:
    """Start HAProxy with the shipped recipe, pointed at the given proxyd instances."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(instances: list[ProxydProcess]) -> int:
        port = free_port()
        text = RECIPE.read_text()
        text = text.replace("bind :3306", f"bind 127.0.0.1:{port}")
        text = text.replace("inter 500ms", "inter 100ms")  # the test's own pace
        servers = "".join(
            f"    server proxyd{n} {p.address} check port {_metrics_port(p)}\n"
            for n, p in enumerate(instances, 1)
        )
        text = re.sub(r"(?m)^    server proxyd.*\n", "", text) + servers
        config = tmp_path / "haproxy.cfg"
        config.write_text(text)
        log = (tmp_path / "haproxy.log").open("ab")
        procs.append(spawn([_haproxy_binary(), "-db", "-f", str(config)], stdout=log, stderr=log))
        assert wait_until(lambda: port_accepts("127.0.0.1", port), 10), text
        return port

    yield start
    for proc in procs:
        stop_process(proc, signal.SIGTERM, 10)


class _Load:
    """Clients that connect through HAProxy for each unit of work (a transaction and a
    read), as web workers do; every failure kept."""

    def __init__(self, port: int, workers: int = 6) -> None:
        self.port = port
        self.stop = threading.Event()
        self.committed: list[int] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, args=(n,)) for n in range(workers)]

    def _work(self, n: int) -> None:
        next_id = n * 1_000_000
        while not self.stop.is_set():
            next_id += 1
            try:
                conn = pymysql.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="app",
                    password="apppw",
                    database="test",
                    connect_timeout=5,
                    read_timeout=30,
                )
                with conn, conn.cursor() as cur:
                    conn.begin()
                    cur.execute("INSERT INTO drained (id) VALUES (%s)", (next_id,))
                    conn.commit()
                    cur.execute("SELECT COUNT(*) FROM drained WHERE id = %s", (next_id,))
                    assert cur.fetchone() == (1,)
            except Exception as exc:  # every failure is reported by the test
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                self.committed.append(next_id)
            time.sleep(0.002)


def _proxy(proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd(
        {
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
            "shutdown_delay": "1s",
            "shutdown_wait_for_clients": True,
            "shutdown_timeout": "30s",
        }
    )


def _commands(proxy: ProxydProcess) -> int:
    rows = proxy.admin_rows("SHOW STATS")
    return next(int(r["value"]) for r in rows if r["stat"] == "commands")


def test_one_proxyd_drained_behind_haproxy_fails_no_query(
    proxyd: Callable[..., ProxydProcess],
    mariadb: MariaDBServer,
    haproxy: Callable[[list[ProxydProcess]], int],
) -> None:
    mariadb.execute("CREATE TABLE test.drained (id BIGINT PRIMARY KEY)")
    first, second = _proxy(proxyd), _proxy(proxyd)
    port = haproxy([first, second])
    load = _Load(port)
    with running(load.threads, load.stop):
        # Both take clients while both are ready.
        assert wait_until(lambda: _commands(first) > 50 and _commands(second) > 50, 20)
        first.send_signal(signal.SIGTERM)
        drained_at = time.monotonic()
        assert first.wait(30) == 0
        drained_in = time.monotonic() - drained_at
        served = len(load.committed)
        before = _commands(second)
        # The other one takes every client from now on.
        assert wait_until(lambda: len(load.committed) > served + 100, 20)
        assert _commands(second) > before
    assert load.failures == [], load.failures[:5]
    stored = {row[0] for row in mariadb.execute("SELECT id FROM test.drained")}
    assert set(load.committed) <= stored
    log = first.log_text()
    assert "not ready; accepting clients for 1s more" in log, log[-2000:]
    # It left once its clients had: after the delay, well before shutdown_timeout.
    assert 1 <= drained_in < 15, drained_in


def test_sigterm_waits_for_clients_and_says_stopping_first(
    proxyd: Callable[..., ProxydProcess], mariadb: MariaDBServer
) -> None:
    proxy = _proxy(proxyd)
    idle = proxy.connect()
    metrics = proxy.config["metrics"]["listen"]
    proxy.send_signal(signal.SIGTERM)

    def readyz() -> int:
        try:
            with urllib.request.urlopen(f"http://{metrics}/readyz", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    # During shutdown_delay: not ready, yet a client that still comes is served.
    assert wait_until(lambda: readyz() == 503, 5)
    late = proxy.connect()
    with late.cursor() as cur:
        cur.execute("SELECT 1")
    late.close()
    # After it: the listener is closed, and the idle client is kept until it leaves.
    assert wait_until(lambda: not port_accepts(proxy.host, proxy.port), 5)
    time.sleep(0.5)
    with idle.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    assert proxy.is_running
    idle.close()
    assert proxy.wait(10) == 0
