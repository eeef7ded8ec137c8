"""Session variables a client sets survive multiplexing, as they would on its own connection.

Each variable is set through proxyd, then the server connection that ran the SET is KILLed
so that the next statement must run on another one; the value read back there must be the
one read directly from the server after the same SET. ``timestamp`` cannot be replayed
(its tracker reports nothing when it is set back to DEFAULT), so it pins its session: it
holds over statements while other clients churn the pool, and its loss is told, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess

# (what the client runs, what it reads back)
VARIABLES = {
    "time_zone": (
        "SET time_zone = '+05:00'",
        "SELECT @@time_zone, CONVERT_TZ('2001-01-01 00:00', '+00:00', @@time_zone)",
    ),
    "sql_mode": ("SET sql_mode = 'ANSI'", "SELECT @@sql_mode, 'a' || 'b'"),
    "lc_messages": ("SET lc_messages = 'de_DE'", "SELECT @@lc_messages"),
    "lc_time_names": ("SET lc_time_names = 'fr_FR'", "SELECT DATE_FORMAT('2001-01-01', '%W %M')"),
    "div_precision_increment": ("SET div_precision_increment = 8", "SELECT 1/3"),
    "max_statement_time": ("SET max_statement_time = 100", "SELECT @@max_statement_time"),
    "group_concat_max_len": (
        "SET group_concat_max_len = 7",
        "SELECT GROUP_CONCAT(seq) FROM seq_1_to_20",
    ),
    "optimizer_switch": (
        "SET optimizer_switch = 'index_merge=off'",
        "SELECT @@optimizer_switch LIKE 'index_merge=off,%'",
    ),
    "session_prefix": ("SET @@session.sort_buffer_size = 1048576", "SELECT @@sort_buffer_size"),
    "set_statement_does_not_persist": (
        "SET STATEMENT group_concat_max_len = 4 FOR SELECT 1",
        "SELECT @@group_concat_max_len = @@global.group_concat_max_len",
    ),
    "character_set_results_null": (
        "SET character_set_results = NULL",
        "SELECT @@character_set_results IS NULL, _utf8mb4 'é'",
    ),
    "several_at_once": (
        "SET time_zone = '-02:00', div_precision_increment = 2,"
        " sql_mode = 'NO_ENGINE_SUBSTITUTION'",
        "SELECT @@time_zone, 1/3, @@sql_mode",
    ),
}


def _rows(conn: pymysql.Connection, sql: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return tuple(cur.fetchall())


def _thread(conn: pymysql.Connection) -> int:
    return int(_rows(conn, "SELECT @@pseudo_thread_id")[0][0])


@pytest.fixture
def proxy(proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd({"pool": {"max_size": 3, "min_idle": 1}})


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_a_variable_survives_a_forced_move_to_another_server_connection(
    name: str, mariadb: MariaDBServer, proxy: ProxydProcess
) -> None:
    set_sql, read_sql = VARIABLES[name]
    direct = mariadb.connect(user="app", password="apppw", database="test")
    _rows(direct, set_sql)
    expected = _rows(direct, read_sql)
    direct.close()

    conn = proxy.connect()
    _rows(conn, set_sql)
    assert _rows(conn, read_sql) == expected
    before = _thread(conn)
    mariadb.execute(f"KILL CONNECTION {before}")
    assert wait_until(lambda: before not in mariadb.connection_ids("app"), timeout=5)
    assert _rows(conn, read_sql) == expected, "the value did not follow the client"
    assert _thread(conn) != before
    conn.close()


def test_a_frozen_timestamp_holds_while_the_pool_is_shared(
    mariadb: MariaDBServer, proxy: ProxydProcess
) -> None:
    conn = proxy.connect()
    others = [proxy.connect() for _ in range(4)]
    _rows(conn, "SET timestamp = UNIX_TIMESTAMP('2001-01-01 10:20:30')")
    for _ in range(5):
        for other in others:
            assert _rows(other, "SELECT YEAR(NOW())")[0][0] > 2001
        assert str(_rows(conn, "SELECT NOW()")[0][0]) == "2001-01-01 10:20:30"
    # Set back to DEFAULT: the clock runs again (the session may stay pinned: harmless).
    _rows(conn, "SET timestamp = DEFAULT")
    assert _rows(conn, "SELECT YEAR(NOW())")[0][0] > 2001
    for c in [conn, *others]:
        c.close()


def test_a_frozen_timestamp_lost_with_its_connection_is_told(
    mariadb: MariaDBServer, proxy: ProxydProcess
) -> None:
    conn = proxy.connect()
    _rows(conn, "SET timestamp = UNIX_TIMESTAMP('2001-01-01 10:20:30')")
    thread = _thread(conn)
    mariadb.execute(f"KILL CONNECTION {thread}")
    assert wait_until(lambda: thread not in mariadb.connection_ids("app"), timeout=5)
    with pytest.raises(pymysql.err.OperationalError) as info:
        _rows(conn, "SELECT NOW()")
    assert info.value.args[0] == 1105 and "timestamp" in info.value.args[1], info.value.args
    assert _rows(conn, "SELECT YEAR(NOW())")[0][0] > 2001
    conn.close()


def test_writes_on_a_server_with_a_binary_log_move_between_connections(
    proxyd: Callable[..., ProxydProcess], mariadb_factory: Callable[..., MariaDBServer]
) -> None:
    """MariaDB reports @@last_gtid after each write when it keeps a binary log; it is
    read-only, so a client moving to another server connection must not have it
    replayed (that was error 1238 on the client's next statement)."""
    server = mariadb_factory(skip_log_bin=False, log_bin="mariadb-bin", server_id=9)
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 2}}, backend=server)
    clients = [proxy.connect() for _ in range(3)]
    _rows(clients[0], "CREATE TABLE t_gtid (id INT PRIMARY KEY)")
    for i in range(30):
        client = clients[i % 3]
        _rows(client, f"INSERT INTO t_gtid VALUES ({i})")
        assert _rows(client, "SELECT COUNT(*) FROM t_gtid") == ((i + 1,),)
