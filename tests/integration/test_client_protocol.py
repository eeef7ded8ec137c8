"""What a client sees of proxyd's own server side: login, schema, local answers."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
import pymysql
import pytest

from tests.integration.drivers import connector
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess


def test_caching_sha2_password_fast_path_login(proxyd: Callable[..., ProxydProcess]) -> None:
    proxy = proxyd()
    conn = connector(proxy.host, proxy.port, auth_plugin="caching_sha2_password")
    cur = conn.cursor()
    cur.execute("SELECT CURRENT_USER()")
    assert cur.fetchone()[0].startswith("app@")  # type: ignore[index]
    conn.close()
    with pytest.raises(mysql.connector.errors.ProgrammingError) as info:
        connector(proxy.host, proxy.port, password="nope", auth_plugin="caching_sha2_password")
    assert info.value.errno == 1045


def test_database_from_handshake_and_com_init_db_follow_the_client(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    mariadb.execute("CREATE DATABASE IF NOT EXISTS app_a")
    mariadb.execute("CREATE DATABASE IF NOT EXISTS app_b")
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 0}})
    a = proxy.connect(database="app_a")
    b = proxy.connect(database="app_b")
    for _ in range(5):
        for conn, expected in ((a, "app_a"), (b, "app_b")):
            with conn.cursor() as cur:
                cur.execute("SELECT DATABASE()")
                assert cur.fetchone() == (expected,)
    a.select_db("app_b")  # COM_INIT_DB
    with a.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("app_b",)
    with pytest.raises(pymysql.err.OperationalError) as info:
        b.select_db("no_such_db")
    assert info.value.args[0] == 1049
    with b.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("app_b",)
    a.close()
    b.close()


def test_unknown_database_at_login_is_the_servers_error(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd()
    # PyMySQL's first command after login already needs the schema.
    with pytest.raises(pymysql.err.OperationalError) as info:
        conn = proxy.connect(database="no_such_db_at_all", autocommit=False)
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert info.value.args[0] == 1049


def test_ping_and_quit_are_answered_without_a_backend(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory()
    proxy = proxyd({"pool": {"min_idle": 0}}, backend=server)
    conn = proxy.connect()
    server.stop()
    conn.ping(reconnect=False)  # COM_PING: proxyd answers, the server is down
    conn.close()  # COM_QUIT


def test_sigterm_lets_a_running_query_finish(proxyd: Callable[..., ProxydProcess]) -> None:
    proxy = proxyd()
    conn = proxy.connect()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT SLEEP(2), 'done'")
                result["rows"] = cur.fetchall()
        except Exception as exc:
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    proxy.send_signal(signal.SIGTERM)
    worker.join(10)
    assert result.get("rows") == ((0, "done"),), result
    assert proxy.wait(10) == 0
    with pytest.raises(pymysql.err.OperationalError):
        proxy.connect()
