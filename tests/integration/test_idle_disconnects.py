"""The core promise: idleness, recycling, KILLs and restarts never reach the app.

Every test runs real drivers against a real proxyd in front of a real MariaDB,
and where it can, shows the same thing failing on a direct connection, so the
test proves proxyd made the difference.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy

from tests.integration.drivers import DRIVERS, Client, error_code
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess

IDLE = 5.0  # seconds, past a wait_timeout of 3


def _connect_all(proxy: ProxydProcess) -> list[Client]:
    return [make(proxy.host, proxy.port) for make in DRIVERS.values()]


def _query_all(clients: list[Client], sql: str = "SELECT 1") -> dict[str, Any]:
    """Run `sql` on every client; return each one's rows or the exception it raised."""
    out: dict[str, Any] = {}
    for client in clients:
        try:
            out[client.name] = client.query(sql)
        except Exception as exc:  # collected and asserted on by the caller
            out[client.name] = exc
    return out


def _assert_all_ok(results: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    failures = {k: v for k, v in results.items() if isinstance(v, Exception)}
    assert not failures, f"clients saw errors: {failures!r}"
    for name, rows in results.items():
        assert [tuple(r) for r in rows] == expected, name


SEED_PROGRAM = """
import sys, time
from sqlalchemy import create_engine, text

url = sys.argv[1]
engine = create_engine(url)   # no pool_recycle, no pool_pre_ping, as in the seed
query = 'SELECT now();'
for _ in range(int(sys.argv[2])):
    with engine.connect() as conn:
        print('Query-01', conn.execute(text(query)).fetchall(), flush=True)
    with engine.connect() as conn:
        conn.execute(text('SET wait_timeout=3'))  # set session variable `wait_timeout`
    time.sleep(5)
    with engine.connect() as conn:
        print('Query-02', conn.execute(text(query)).fetchall(), flush=True)
"""


def _run_seed(url: str, rounds: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "seed.py"
    script.write_text(SEED_PROGRAM)
    return subprocess.run(
        [sys.executable, str(script), url, str(rounds)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_seed_program_through_proxyd_never_fails(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess], tmp_path: Path
) -> None:
    proxy = proxyd()
    direct = _run_seed(f"mysql+pymysql://app:apppw@{mariadb.address}/test", 1, tmp_path)
    assert direct.returncode != 0 and ("2013" in direct.stderr or "2006" in direct.stderr), (
        "the seed program should fail against the server directly:\n" + direct.stderr[-2000:]
    )
    through = _run_seed(f"mysql+pymysql://app:apppw@{proxy.address}/test", 3, tmp_path)
    assert through.returncode == 0, through.stderr[-3000:]
    assert through.stdout.count("Query-02") == 3


def test_server_wait_timeout_never_reaches_any_driver(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory(wait_timeout=3)
    proxy = proxyd(backend=server)
    through = _connect_all(proxy)
    direct = [make(server.host, server.port) for make in DRIVERS.values()]
    try:
        for round_no in range(2):
            _assert_all_ok(_query_all(through, "SELECT 41 + 1"), [(42,)])
            _query_all(direct)
            time.sleep(IDLE)
            _assert_all_ok(_query_all(through, "SELECT 'still here'"), [("still here",)])
            direct_results = _query_all(direct)
            if round_no == 0:
                # The same drivers, connected straight to the server, lose their connection.
                dead = {
                    k: error_code(v) for k, v in direct_results.items() if isinstance(v, Exception)
                }
                assert dead.get("pymysql") in (2006, 2013), direct_results
                assert dead.get("mysqlclient") in (2006, 2013), direct_results
                assert dead.get("sqlalchemy") in (2006, 2013), direct_results
                # mysql-connector notices the dead socket itself: 2055, or -1 "not available".
                assert "mysql-connector" in dead, direct_results
                direct = [make(server.host, server.port) for make in DRIVERS.values()]
    finally:
        for client in through + direct:
            with contextlib.suppress(Exception):
                client.close()


def test_backends_killed_while_clients_idle(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd({"pool": {"min_idle": 4}})
    clients = _connect_all(proxy)
    try:
        _assert_all_ok(_query_all(clients), [(1,)])
        for _ in range(3):
            killed = mariadb.kill_connections("app")
            assert killed >= 1
            _assert_all_ok(_query_all(clients, "SELECT 2"), [(2,)])
    finally:
        for client in clients:
            client.close()


def test_session_mode_backend_killed_is_replaced_with_schema_and_charset(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    mariadb.execute("CREATE DATABASE IF NOT EXISTS other")
    proxy = proxyd({"pool": {"mode": "session"}})
    conn = proxy.connect(charset="latin1")
    with conn.cursor() as cur:
        cur.execute("USE other")
        cur.execute("SET time_zone = '+05:00'")
        cur.execute("SELECT @@pseudo_thread_id")
        first = cur.fetchone()
        assert mariadb.kill_connections("app") >= 1
        cur.execute("SELECT DATABASE(), @@character_set_client, @@time_zone, @@pseudo_thread_id")
        row = cur.fetchone()
    assert row is not None and first is not None
    assert row[:3] == ("other", "latin1", "+05:00")
    assert row[3] != first[0], "the killed backend cannot be the one answering"
    conn.close()


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful", "sigkill"])
def test_server_restart_while_clients_idle(
    graceful: bool,
    mariadb_factory: Callable[..., MariaDBServer],
    proxyd: Callable[..., ProxydProcess],
) -> None:
    server = mariadb_factory()
    proxy = proxyd(backend=server)
    clients = _connect_all(proxy)
    try:
        _assert_all_ok(_query_all(clients), [(1,)])
        server.restart(graceful=graceful)
        _assert_all_ok(_query_all(clients, "SELECT 3"), [(3,)])
    finally:
        for client in clients:
            client.close()


def test_server_down_then_back_within_acquire_timeout(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory()
    proxy = proxyd({"pool": {"acquire_timeout": "20s"}}, backend=server)
    conn = proxy.connect()
    server.stop()
    restarter = threading.Timer(2.0, server.start)
    restarter.start()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 'back'")
            assert cur.fetchone() == ("back",)
    finally:
        restarter.join()
        conn.close()


def test_acquire_timeout_is_a_clear_error_and_the_connection_survives(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd({"pool": {"max_size": 1, "min_idle": 0, "acquire_timeout": "1s"}})
    holder = proxy.connect()
    waiter = proxy.connect()
    with holder.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    with pytest.raises(pymysql.err.OperationalError) as info, waiter.cursor() as cur:
        cur.execute("SELECT 2")
    assert info.value.args[1].startswith("proxyd:"), info.value.args
    assert "acquire_timeout" in info.value.args[1]
    with holder.cursor() as cur:
        cur.execute("COMMIT")
    with waiter.cursor() as cur:
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    holder.close()
    waiter.close()


def test_wrong_password_gets_1045_and_others_are_unaffected(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd()
    good = proxy.connect()
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(password="wrong")
    assert info.value.args[0] == 1045
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(user="nobody")
    assert info.value.args[0] == 1045
    with good.cursor() as cur:
        cur.execute("SELECT 'fine'")
        assert cur.fetchone() == ("fine",)
    good.close()


def test_sqlalchemy_pool_without_recycle_survives_wait_timeout(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory(wait_timeout=2)
    proxy = proxyd(backend=server)
    engine = sqlalchemy.create_engine(f"mysql+pymysql://app:apppw@{proxy.address}/test")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS idle_writes (id INT PRIMARY KEY)"))
        conn.execute(sqlalchemy.text("DELETE FROM idle_writes"))
    for i in range(3):
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("INSERT INTO idle_writes VALUES (:i)"), {"i": i})
        time.sleep(3)
    with engine.connect() as conn:
        ids = [
            r[0] for r in conn.execute(sqlalchemy.text("SELECT id FROM idle_writes ORDER BY id"))
        ]
    assert ids == [0, 1, 2]
    engine.dispose()
