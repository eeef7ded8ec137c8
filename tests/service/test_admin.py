"""The admin console over the MySQL protocol, through the `mariadb` CLI and PyMySQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from tests.service.conftest import Service
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until

POOL_COLUMNS = [
    "user",
    "mode",
    "cl_active",
    "cl_waiting",
    "cl_idle",
    "sv_active",
    "sv_idle",
    "sv_connecting",
    "sv_max",
    "maxwait",
]
CLIENT_COLUMNS = [
    "id",
    "user",
    "address",
    "state",
    "backend_thread_id",
    "in_transaction",
    "idle",
    "connected",
    "pinned",
]
SERVER_COLUMNS = [
    "user",
    "id",
    "thread_id",
    "address",
    "state",
    "client",
    "age",
    "idle",
    "wait_timeout",
    "last_ping",
    "uses",
    "retiring",
    "role",
    "lag",
    "error",
]


def test_mariadb_cli_runs_every_admin_command(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service()
    app = svc.proc.connect()
    with app.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")

    pools = svc.cli_rows("SHOW POOLS")
    assert list(pools[0]) == POOL_COLUMNS
    assert pools[0]["user"] == "app" and pools[0]["cl_active"] == "1"
    assert pools[0]["sv_max"] == "20"

    clients = svc.cli_rows("SHOW CLIENTS")
    assert list(clients[0]) == CLIENT_COLUMNS
    (client,) = clients
    assert client["user"] == "app" and client["in_transaction"] == "yes"
    assert "open transaction" in client["pinned"]
    backend_thread = int(client["backend_thread_id"])

    servers = svc.cli_rows("SHOW SERVERS")
    assert list(servers[0]) == SERVER_COLUMNS
    held = [s for s in servers if s["client"] == client["id"]]
    assert len(held) == 1 and held[0]["state"] == "active"
    assert int(held[0]["thread_id"]) == backend_thread
    assert backend_thread in mariadb.connection_ids("app")

    stats = {row["stat"]: int(row["value"]) for row in svc.cli_rows("SHOW STATS")}
    assert stats["queries"] >= 2
    for name in ("retries", "errors_hidden", "errors_passed_on", "pings", "recycled_killed"):
        assert name in stats

    config = {row["key"]: row["value"] for row in svc.cli_rows("SHOW CONFIG")}
    assert config["pool.max_size"] == "20"
    assert config["admin.password"] == "***"
    assert config["users[app].password"] == "***"

    (version,) = svc.cli_rows("SHOW VERSION")
    assert version["version"].startswith("proxyd ")
    assert "MariaDB" in version["server_version"]

    assert "SHOW POOLS" in svc.cli("SHOW HELP").stdout

    for statement in ("RELOAD", "PAUSE", "RESUME", "RECONNECT"):
        result = svc.cli(statement)
        assert result.returncode == 0, (statement, result.stderr)

    result = svc.cli(f"KILL CLIENT {client['id']}")
    assert result.returncode == 0, result.stderr
    assert svc.cli_rows("SHOW CLIENTS") == []
    app.close()

    result = svc.cli("SHUTDOWN")
    assert result.returncode == 0, result.stderr
    assert svc.proc.wait(timeout=15) == 0


def test_pymysql_runs_every_admin_command(service: Callable[..., Service]) -> None:
    svc = service()
    app = svc.proc.connect()
    with app.cursor() as cur:
        cur.execute("SET @pinned = 1")
        cur.execute("SELECT @pinned")
    with svc.admin(cursorclass=pymysql.cursors.DictCursor) as admin, admin.cursor() as cur:

        def rows(sql: str) -> list[dict[str, Any]]:
            cur.execute(sql)
            return list(cur.fetchall())

        (pool,) = rows("SHOW POOLS")
        assert list(pool) == POOL_COLUMNS
        assert pool["sv_max"] == 20 and isinstance(pool["maxwait"], float)

        (client,) = rows("SHOW CLIENTS")
        assert list(client) == CLIENT_COLUMNS
        assert isinstance(client["id"], int) and client["user"] == "app"
        assert client["pinned"], "a user variable pins the client to its backend"

        servers = rows("SHOW SERVERS")
        assert list(servers[0]) == SERVER_COLUMNS
        assert all(isinstance(s["thread_id"], int) for s in servers)
        assert any(s["client"] == client["id"] for s in servers)

        stats = {row["stat"]: row["value"] for row in rows("SHOW STATS")}
        assert stats["queries"] >= 2
        assert all(isinstance(v, int) for v in stats.values())

        config = {row["key"]: row["value"] for row in rows("SHOW CONFIG")}
        assert config["admin.user"] == "admin"
        assert "adminpw" not in config.values() and "apppw" not in config.values()

        (version,) = rows("SHOW VERSION")
        assert version["version"].startswith("proxyd ")

        assert cur.execute("RELOAD") == 0
        assert cur.execute("PAUSE") == 0
        assert cur.execute("RESUME") == 0
        assert cur.execute("RECONNECT") == 0
        assert cur.execute(f"KILL CLIENT {client['id']}") == 0
        assert rows("SHOW CLIENTS") == []
        cur.execute("SHUTDOWN")
    assert svc.proc.wait(timeout=15) == 0
    app.close()


def test_wrong_admin_password_is_refused_with_1045(service: Callable[..., Service]) -> None:
    svc = service()
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        svc.admin(password="wrong")
    assert excinfo.value.args[0] == 1045
    result = svc.cli("SHOW POOLS", password="wrong")
    assert result.returncode != 0
    assert "ERROR 1045 (28000)" in result.stderr
    # An application account is no admin account.
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        svc.admin(user="app", password="apppw")
    assert excinfo.value.args[0] == 1045
    assert svc.stat("auth_failures") == 3


def test_unknown_statement_is_an_error_and_the_session_goes_on(
    service: Callable[..., Service],
) -> None:
    svc = service()
    with svc.admin() as admin, admin.cursor() as cur:
        with pytest.raises(pymysql.err.ProgrammingError) as excinfo:
            cur.execute("DROP DATABASE test")
        assert excinfo.value.args[0] == 1064
        assert "SHOW HELP" in excinfo.value.args[1]
        with pytest.raises(pymysql.err.OperationalError) as excinfo:
            cur.execute("KILL CLIENT 999999")
        assert excinfo.value.args[0] == 1094
        cur.execute("show   pools ;")
        assert cur.fetchall()
    result = svc.cli("SELECT * FROM users")
    assert result.returncode == 1 and "ERROR 1064" in result.stderr


def test_kill_client_closes_that_client_only(service: Callable[..., Service]) -> None:
    svc = service()
    victim, bystander = svc.proc.connect(), svc.proc.connect()
    with victim.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (victim_id,) = cur.fetchone()
    ids = sorted(int(row["id"]) for row in svc.admin_query("SHOW CLIENTS"))
    assert ids == sorted([victim_id, bystander.thread_id()])
    svc.admin_query(f"KILL CLIENT {victim_id}")
    with pytest.raises(pymysql.err.OperationalError) as excinfo, victim.cursor() as cur:
        cur.execute("SELECT 1")
    assert excinfo.value.args[0] in (2006, 2013)
    with bystander.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    bystander.close()


def test_pause_holds_new_queries_until_resume(service: Callable[..., Service]) -> None:
    svc = service()
    client = svc.proc.connect()
    with svc.admin() as admin, admin.cursor() as cur:
        cur.execute("PAUSE")
        # PAUSE closes idle backends: the server can be restarted now.
        assert wait_until(
            lambda: all(s["state"] != "idle" for s in svc.admin_query("SHOW SERVERS")), 5
        )
        done: list[object] = []

        def query() -> None:
            with client.cursor() as c:
                c.execute("SELECT 42")
                done.append(c.fetchone())

        worker = threading.Thread(target=query)
        worker.start()
        time.sleep(1.0)
        assert done == [], "a query ran while proxyd was paused"
        (pool,) = svc.admin_query("SHOW POOLS")
        assert pool["cl_waiting"] == 1
        cur.execute("RESUME")
        worker.join(10)
        assert done == [(42,)]
    client.close()


def test_reconnect_replaces_backends_without_client_errors(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"min_idle": 2}})

    def server_threads() -> set[int]:
        return set(mariadb.connection_ids("app"))

    in_transaction = svc.proc.connect()
    with in_transaction.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    (client,) = svc.admin_query("SHOW CLIENTS")
    held = client["backend_thread_id"]
    before = {s["thread_id"] for s in svc.admin_query("SHOW SERVERS")}
    assert held in before and len(before) >= 2
    svc.admin_query("RECONNECT")
    # Idle ones go at once; the one inside a transaction stays until the transaction ends.
    assert wait_until(lambda: server_threads() & before == {held}, 5)
    with svc.proc.connect() as other, other.cursor() as cur:
        cur.execute("SELECT 1")
    with in_transaction.cursor() as cur:
        cur.execute("SELECT 1")
        cur.execute("COMMIT")
    assert wait_until(lambda: not server_threads() & before, 5)
    assert server_threads(), "the pool refilled with new connections"
    assert svc.stat("recycled_drained") == len(before)
    in_transaction.close()
