"""Transaction replay (issue 18): a transaction whose server connection is lost is run
again on a new one and checked, answer by answer; the client sees nothing but a delay, or
1213 when the replay found different results. Real server, real KILLs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port
from tests.support.proxy import ProxydProcess


def _one(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def _proxy(
    proxyd: Callable[..., ProxydProcess], server: MariaDBServer, **retry: Any
) -> ProxydProcess:
    return proxyd(
        {
            "pool": {"max_size": 4, "min_idle": 1},
            "retry": {"timeout": "20s", "transaction_replay": True, **retry},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
        },
        backend=server,
    )


def _replays(proxy: ProxydProcess) -> dict[str, int]:
    rows = proxy.admin_rows("SHOW STATS")
    return {
        r["stat"].removeprefix("transaction_replays_"): int(r["value"])
        for r in rows
        if r["stat"].startswith("transaction_replays_")
    }


def _in_transaction(proxy: ProxydProcess) -> Any:
    """A client in a transaction that wrote row 1."""
    client = proxy.connect()
    client.begin()
    _one(client, "INSERT INTO t VALUES (1, 10)")
    return client


@pytest.fixture
def server(fresh_mariadb: MariaDBServer) -> MariaDBServer:
    fresh_mariadb.execute("CREATE TABLE test.t (id INT PRIMARY KEY, v INT)")
    return fresh_mariadb


def test_killed_between_statements_the_transaction_goes_on(
    proxyd: Callable[..., ProxydProcess], server: MariaDBServer
) -> None:
    proxy = _proxy(proxyd, server)
    client = _in_transaction(proxy)
    assert _one(client, "SELECT COUNT(*) FROM t") == (1,)
    assert server.kill_connections("app") >= 1
    _one(client, "INSERT INTO t VALUES (2, 20)")
    assert _one(client, "SELECT SUM(v) FROM t") == (30,)  # its own writes, replayed
    client.commit()
    assert server.execute("SELECT id, v FROM test.t ORDER BY id") == [(1, 10), (2, 20)]
    assert _replays(proxy).get("replayed") == 1


def test_killed_during_a_long_statement_the_statement_runs_again(
    proxyd: Callable[..., ProxydProcess], server: MariaDBServer
) -> None:
    proxy = _proxy(proxyd, server)
    client = _in_transaction(proxy)
    killer = threading.Timer(0.5, server.kill_connections, args=("app",))
    killer.start()
    started = time.monotonic()
    assert _one(client, "SELECT SLEEP(2), COUNT(*) FROM t") == (0, 1)
    assert time.monotonic() - started > 2.3  # it ran again, whole
    killer.join()
    client.commit()
    assert server.execute("SELECT id FROM test.t") == [(1,)]


def test_a_row_changed_by_another_client_is_a_mismatch(
    proxyd: Callable[..., ProxydProcess], server: MariaDBServer
) -> None:
    server.execute("INSERT INTO test.t VALUES (1, 100)")
    proxy = _proxy(proxyd, server)
    client = proxy.connect()
    client.begin()
    assert _one(client, "SELECT v FROM t WHERE id = 1") == (100,)
    _one(client, "INSERT INTO t VALUES (2, 1)")
    server.kill_connections("app")
    server.execute("UPDATE test.t SET v = 99 WHERE id = 1")  # what it read changed
    with pytest.raises(pymysql.err.OperationalError) as raised:
        _one(client, "UPDATE t SET v = v + 1 WHERE id = 2")
    assert raised.value.args[0] == 1213
    assert "answered differently" in raised.value.args[1]
    # Its writes were not applied; the connection works.
    assert _one(client, "SELECT COUNT(*) FROM t") == (1,)
    assert server.execute("SELECT id FROM test.t") == [(1,)]
    assert _replays(proxy).get("mismatch") == 1
