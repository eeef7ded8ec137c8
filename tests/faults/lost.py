"""Shared steps of the lost-transaction tests: kill a server connection, check the answer."""

from __future__ import annotations

from typing import Any

import mysql.connector

from tests.integration.drivers import scalar
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until

ER_LOCK_DEADLOCK = 1213


def kill_backend(mariadb: MariaDBServer, thread_id: int) -> None:
    """KILL a server connection of user app from the server side, and see it gone."""
    mariadb.execute(f"KILL CONNECTION {thread_id}")
    assert wait_until(lambda: thread_id not in mariadb.connection_ids("app"), timeout=5)


def assert_lost_transaction(exc: BaseException | None) -> None:
    """proxyd's 1213/40001: the transaction was rolled back with its connection."""
    assert isinstance(exc, mysql.connector.Error), repr(exc)
    assert (exc.errno, exc.sqlstate) == (ER_LOCK_DEADLOCK, "40001"), repr(exc)
    assert exc.msg.startswith("proxyd:") and "transaction" in exc.msg, exc.msg
    assert "rolled back" in exc.msg, exc.msg


def assert_session_goes_on(conn: Any, mariadb: MariaDBServer, table: str, uid: int) -> None:
    """Out of the transaction, and a new one runs and commits; nothing else in `table`."""
    assert int(scalar(conn, "SELECT @@in_transaction")) == 0
    cur = conn.cursor()
    cur.execute("START TRANSACTION")
    cur.execute(f"INSERT INTO {table} (uid) VALUES ({uid})")
    cur.execute("COMMIT")
    cur.close()
    assert mariadb.execute(f"SELECT uid FROM test.{table} ORDER BY uid") == [(uid,)], (
        "only the transaction after the loss may have left rows"
    )
