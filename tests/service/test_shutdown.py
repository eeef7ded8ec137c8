"""Graceful stop: SIGTERM lets work in flight finish; a second signal exits at once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from tests.service.conftest import Service
from tests.support.mariadb import MariaDBServer
from tests.support.processes import port_accepts, wait_until


def run_in_thread(conn: pymysql.Connection, sql: str) -> tuple[threading.Thread, list[Any]]:
    """Start `sql` on `conn` in a thread; the list gets its rows or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                outcome.append(cur.fetchall())
        except Exception as exc:  # the test asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_sigterm_lets_a_running_query_finish_then_exits_0(
    service: Callable[..., Service],
) -> None:
    svc = service()
    busy, idle = svc.proc.connect(), svc.proc.connect()
    thread, outcome = run_in_thread(busy, "SELECT SLEEP(2)")
    time.sleep(0.5)  # the statement is on the server now
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    # New clients are turned away at once; the idle one is told goodbye.
    assert wait_until(lambda: not port_accepts(svc.proc.host, svc.proc.port), 2)
    thread.join(10)
    assert outcome == [((0,),)]
    assert svc.proc.wait(timeout=10) == 0
    assert time.monotonic() - started >= 1.0
    with pytest.raises(pymysql.err.OperationalError), idle.cursor() as cur:
        cur.execute("SELECT 1")
    busy.close()


def test_sigterm_lets_an_open_transaction_commit(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service()
    client = svc.proc.connect()
    with client.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS shutdown_commit (id INT PRIMARY KEY)")
        cur.execute("DELETE FROM shutdown_commit")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO shutdown_commit VALUES (1)")
    svc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert svc.proc.is_running, "proxyd left before the transaction ended"
    with client.cursor() as cur:
        cur.execute("INSERT INTO shutdown_commit VALUES (2)")
        cur.execute("COMMIT")
    assert svc.proc.wait(timeout=10) == 0
    assert mariadb.execute("SELECT id FROM test.shutdown_commit ORDER BY id") == [(1,), (2,)]
    mariadb.execute("DROP TABLE test.shutdown_commit")
    client.close()


def test_idle_clients_do_not_delay_shutdown(service: Callable[..., Service]) -> None:
    svc = service()
    clients = [svc.proc.connect() for _ in range(5)]
    started = time.monotonic()
    assert svc.proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 3
    for client in clients:
        client.close()


def test_second_signal_exits_at_once(service: Callable[..., Service]) -> None:
    svc = service({"shutdown_timeout": "30s"})
    busy = svc.proc.connect(read_timeout=10)
    thread, _ = run_in_thread(busy, "SELECT SLEEP(20)")
    time.sleep(0.5)
    svc.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert svc.proc.is_running
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGINT)
    code = svc.proc.wait(timeout=5)
    assert time.monotonic() - started < 2
    assert code != 0
    thread.join(15)
