"""A backend KILLed under a transaction or a result set: the documented ERR, then go on.

The client finds its backend the way a DBA would: `SELECT @@pseudo_thread_id` through
proxyd names the server thread, which `information_schema.processlist` lists under user
app, and KILL ends it from the server side.

SQLSTATE is part of the promise for transactions (40001: frameworks retry the whole
transaction on it), and PyMySQL does not report it, so those tests use
mysql-connector-python.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
import pymysql
import pymysql.cursors
import pytest

from tests.faults.lost import assert_lost_transaction, assert_session_goes_on, kill_backend
from tests.integration.drivers import scalar
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess

ER_UNKNOWN_ERROR = 1105


def _connector(proxy: ProxydProcess) -> Any:
    return mysql.connector.connect(
        host=proxy.host,
        port=proxy.port,
        user="app",
        password="apppw",
        database="test",
        autocommit=True,
        use_pure=True,
        connection_timeout=15,
    )


def _backend_of(conn: Any, mariadb: MariaDBServer) -> int:
    """The server thread serving `conn` right now (it must be held: inside a transaction)."""
    thread_id = int(scalar(conn, "SELECT @@pseudo_thread_id"))
    assert thread_id in mariadb.connection_ids("app"), "the backend is not one of app's threads"
    return thread_id








@pytest.fixture
def table(mariadb: MariaDBServer, request: pytest.FixtureRequest) -> str:
    name = f"lost_{request.node.name.split('[')[0][-40:]}"
    mariadb.execute(f"DROP TABLE IF EXISTS test.{name}")
    mariadb.execute(f"CREATE TABLE test.{name} (uid INT PRIMARY KEY) ENGINE=InnoDB")
    return name


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_backend_lost_between_statements_of_a_transaction(
    mode: str, mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess], table: str
) -> None:
    proxy = proxyd({"pool": {"mode": mode}})
    conn = _connector(proxy)
    cur = conn.cursor()
    cur.execute("START TRANSACTION")
    cur.execute(f"INSERT INTO {table} (uid) VALUES (1)")
    kill_backend(mariadb, _backend_of(conn, mariadb))
    with pytest.raises(mysql.connector.Error) as info:
        cur.execute(f"INSERT INTO {table} (uid) VALUES (2)")
    assert_lost_transaction(info.value)
    cur.close()
    assert_session_goes_on(conn, mariadb, table, 3)
    conn.close()


def test_backend_lost_while_a_statement_of_a_transaction_runs(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess], table: str
) -> None:
    proxy = proxyd()
    conn = _connector(proxy)
    cur = conn.cursor()
    cur.execute("START TRANSACTION")
    cur.execute(f"INSERT INTO {table} (uid) VALUES (1)")
    thread_id = _backend_of(conn, mariadb)
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            cur.execute("SELECT SLEEP(20)")
            outcome["rows"] = cur.fetchall()
        except Exception as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run)
    worker.start()
    running = wait_until(
        lambda: bool(
            mariadb.execute(
                "SELECT 1 FROM information_schema.processlist WHERE id = %s AND info LIKE %s",
                (thread_id, "SELECT SLEEP%"),
            )
        ),
        timeout=5,
    )
    kill_backend(mariadb, thread_id)
    worker.join(15)
    assert running and not worker.is_alive(), outcome
    assert "error" in outcome, f"the statement did not fail: {outcome}"
    assert_lost_transaction(outcome["error"])
    assert outcome["seconds"] < 5, outcome
    cur.close()
    assert_session_goes_on(conn, mariadb, table, 3)
    conn.close()


def test_backend_lost_in_the_middle_of_a_result_set(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd()
    conn = proxy.connect(cursorclass=pymysql.cursors.SSCursor, read_timeout=15)
    sql = "SELECT REPEAT('x', 1000) FROM seq_1_to_1000000"  # 1 GB: never all in flight
    rows = 0
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute(sql)
        for _ in range(10):
            assert cur.fetchone() == ("x" * 1000,)
            rows += 1
        found = mariadb.execute(
            "SELECT id FROM information_schema.processlist WHERE user = 'app' AND info = %s",
            (sql,),
        )
        assert len(found) == 1, found
        kill_backend(mariadb, int(found[0][0]))
        while cur.fetchone() is not None:
            rows += 1
    code, message = info.value.args
    assert code == ER_UNKNOWN_ERROR, info.value.args
    assert message.startswith("proxyd:") and "in the middle of the result" in message, message
    assert 10 <= rows < 1_000_000
    with conn.cursor() as cur:
        cur.execute("SELECT 'still here'")
        assert cur.fetchall() == [("still here",)]
    conn.close()
