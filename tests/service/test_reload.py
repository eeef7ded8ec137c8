"""Reload on SIGHUP and admin RELOAD: applied without dropping clients, or rejected whole."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

import pymysql
import pytest

from tests.service.conftest import Service
from tests.support.mariadb import MariaDBServer
from tests.support.processes import port_accepts, wait_until


def reload(svc: Service) -> None:
    """Write the edited config and SIGHUP; return once proxyd logged the outcome."""
    log_size = len(svc.proc.log_text())
    svc.proc.write_config()
    svc.proc.send_signal(signal.SIGHUP)

    def logged() -> bool:
        tail = svc.proc.log_text()[log_size:]
        return "reloaded " in tail or "reload rejected" in tail

    assert wait_until(logged, 10), svc.proc.log_tail()


class Load:
    """`clients` connections running short queries in threads until stopped."""

    def __init__(self, svc: Service, clients: int, sql: str = "SELECT SLEEP(0.02)") -> None:
        self.errors: list[BaseException] = []
        self.done = [0] * clients
        self._stop = threading.Event()
        self._conns = [svc.proc.connect() for _ in range(clients)]
        self._threads = [
            threading.Thread(target=self._run, args=(i, sql), daemon=True) for i in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int, sql: str) -> None:
        conn = self._conns[index]
        while not self._stop.is_set():
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    cur.fetchall()
            except BaseException as exc:  # collected for the test to report
                self.errors.append(exc)
                return
            self.done[index] += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        for conn in self._conns:
            conn.close()


def test_sighup_shrinks_a_pool_under_load(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"max_size": 10, "min_idle": 2}})
    load = Load(svc, 10)
    try:
        assert wait_until(lambda: mariadb.count_connections("app") >= 6, 10)
        svc.proc.config["pool"]["max_size"] = 3
        reload(svc)
        # Surplus backends close as they come back; give that a moment to settle...
        assert wait_until(lambda: mariadb.count_connections("app") <= 3, 10), (
            mariadb.count_connections("app")
        )
        progress = list(load.done)
        # ...and from then on the server never sees more than the new size.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert mariadb.count_connections("app") <= 3
            time.sleep(0.05)
        assert all(after > before for after, before in zip(load.done, progress, strict=True))
    finally:
        load.stop()
    assert load.errors == []
    (pool,) = svc.admin_query("SHOW POOLS")
    assert pool["sv_max"] == 3
    assert svc.stat("recycled_surplus") >= 3


def test_invalid_reload_leaves_the_old_config_running(service: Callable[..., Service]) -> None:
    svc = service({"pool": {"max_size": 20}})
    client = svc.proc.connect()
    svc.proc.config["pool"]["max_size"] = "lots"
    reload(svc)
    assert "reload rejected, the running config stays" in svc.proc.log_text()
    assert "pool.max_size" in svc.proc.log_text()
    config = {row["key"]: row["value"] for row in svc.admin_query("SHOW CONFIG")}
    assert config["pool.max_size"] == "20"
    with client.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    # The admin RELOAD answers with the reason.
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        svc.admin_query("RELOAD")
    assert excinfo.value.args[0] == 1105
    assert "pool.max_size" in excinfo.value.args[1]
    # Not even YAML.
    svc.proc.config_path.write_text("pool: [unclosed\n")
    svc.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: svc.proc.log_text().count("reload rejected") == 3, 10)
    with svc.proc.connect() as other, other.cursor() as cur:
        cur.execute("SELECT 1")
    assert svc.stat("reload_failures") == 3
    assert svc.stat("reloads") == 0
    client.close()


def test_reload_applies_users_timeouts_and_log_level(service: Callable[..., Service]) -> None:
    svc = service({"log": {"level": "debug"}})
    client = svc.proc.connect()
    with client.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (connection_id,) = cur.fetchone()
    svc.proc.config["users"].append(
        {
            "name": "reporter",
            "password": "reppw",
            "backend_user": "app",
            "backend_password": "apppw",
        }
    )
    svc.proc.config["pool"]["acquire_timeout"] = "3s"
    svc.proc.config["log"]["level"] = "info"
    reload(svc)
    log_size = len(svc.proc.log_text())

    with svc.proc.connect(user="reporter", password="reppw") as reporter:
        with reporter.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0].startswith("app@")
        config = {row["key"]: row["value"] for row in svc.admin_query("SHOW CONFIG")}
        assert config["pool.acquire_timeout"] == "3.0"
        assert config["log.level"] == "info"
        # The client connected before the reload kept its session.
        with client.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            assert cur.fetchone() == (connection_id,)

        # Removing a user: no new logins; the session already open goes on.
        svc.proc.config["users"].pop()
        reload(svc)
        with pytest.raises(pymysql.err.OperationalError) as excinfo:
            svc.proc.connect(user="reporter", password="reppw")
        assert excinfo.value.args[0] == 1045
        with reporter.cursor() as cur:
            cur.execute("SELECT 1")
    assert wait_until(lambda: "pool of removed user reporter closed" in svc.proc.log_text(), 5)
    assert " DEBUG " not in svc.proc.log_text()[log_size:], "log.level info still logs DEBUG"
    client.close()


def test_new_backend_address_drains_old_backends(
    service: Callable[..., Service], mariadb: MariaDBServer, fresh_mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"min_idle": 2}}, backend=mariadb)
    in_transaction = svc.proc.connect()
    with in_transaction.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT @@port")
        assert cur.fetchone() == (mariadb.port,)
    svc.proc.config["backend"]["address"] = fresh_mariadb.address
    reload(svc)
    with svc.proc.connect() as newcomer, newcomer.cursor() as cur:
        cur.execute("SELECT @@port")
        assert cur.fetchone() == (fresh_mariadb.port,)
    with in_transaction.cursor() as cur:
        # The open transaction finishes where it started...
        cur.execute("SELECT @@port")
        assert cur.fetchone() == (mariadb.port,)
        cur.execute("COMMIT")
        # ...and the next one runs on the new server.
        cur.execute("SELECT @@port")
        assert cur.fetchone() == (fresh_mariadb.port,)
    assert wait_until(lambda: mariadb.count_connections("app") == 0, 5)
    in_transaction.close()


def test_reload_moves_listeners_or_rejects_a_taken_address(
    service: Callable[..., Service],
) -> None:
    svc = service()
    old_port = svc.metrics_port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        svc.proc.config["metrics"]["listen"] = f"127.0.0.1:{busy_port}"
        reload(svc)
        assert "reload rejected" in svc.proc.log_text()
        assert svc.http("/healthz")[0] == 200  # still on the old port

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        new_port = probe.getsockname()[1]
    svc.proc.config["metrics"]["listen"] = f"127.0.0.1:{new_port}"
    reload(svc)
    svc.metrics_port = new_port
    assert svc.http("/healthz")[0] == 200
    assert not port_accepts("127.0.0.1", old_port)
