"""One connection id per client, wherever the server would show one (issue 11, part 1).

A client's id is its handshake's thread id. Through proxyd, in session and transaction
pooling, pinned or not, the same id is what CONNECTION_ID() says, what the process list
shows for its row, what IS_USED_LOCK() says of its locks, and what KILL takes. proxyd's
own idle server connections are not shown; other applications' connections are shown,
and killable, by the server's own ids.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from pymysql.constants import ER

from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess

SETUPS = {
    "transaction": ({"mode": "transaction"}, []),
    # A user variable pins the client to its server connection between statements.
    "transaction, pinned": ({"mode": "transaction"}, ["SET @pinned := 1"]),
    "session": ({"mode": "session"}, []),
}


@pytest.fixture(params=SETUPS)
def setup(
    request: pytest.FixtureRequest, proxyd: Callable[..., ProxydProcess]
) -> tuple[ProxydProcess, list[str]]:
    pool, statements = SETUPS[request.param]
    return proxyd({"pool": {**pool, "max_size": 4, "min_idle": 3}}), statements


@pytest.fixture
def clients(setup: tuple[ProxydProcess, list[str]]) -> Iterator[tuple[Any, Any]]:
    """Two clients of proxyd, each past the setup's statements."""
    proxy, statements = setup
    a, b = proxy.connect(), proxy.connect(database="")
    for conn in (a, b):
        for sql in statements:
            _rows(conn, sql)
    yield a, b
    for conn in (a, b):
        conn.close()


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _columns(conn: Any, sql: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()
        return [d[0] for d in cur.description]


def _address(conn: Any) -> str:
    host, port = conn._sock.getsockname()[:2]
    return f"{host}:{port}"


def test_connection_id_is_the_handshakes(clients: tuple[Any, Any]) -> None:
    a, b = clients
    assert a.thread_id() != b.thread_id()
    assert _rows(a, "SELECT CONNECTION_ID()") == [(a.thread_id(),)]
    assert _rows(b, "SELECT CONNECTION_ID()") == [(b.thread_id(),)]


def test_the_process_list_shows_clients_by_their_ids_and_no_idle_pool(
    clients: tuple[Any, Any], mariadb: MariaDBServer
) -> None:
    a, b = clients
    proxyds_own = set(mariadb.connection_ids("app"))
    assert proxyds_own, "proxyd keeps server connections of its own"
    sql = "SHOW FULL PROCESSLIST"
    rows = {row[0]: row for row in _rows(a, sql)}
    own = rows[a.thread_id()]
    assert own[1:5] == ("app", _address(a), "test", "Query")
    assert own[7] == sql  # the statement as the client wrote it
    other = rows[b.thread_id()]
    assert other[1:5] == ("app", _address(b), None, "Sleep")
    assert other[7] is None
    assert not proxyds_own & set(rows), "a server id of proxyd's shown to a client"
    # The same through information_schema, with and without an alias of the client's.
    own_only = "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
    assert _rows(b, own_only) == [(b.thread_id(), _address(b))]
    aliased = "SELECT p.ID FROM information_schema.PROCESSLIST p WHERE p.USER = 'app'"
    assert {row[0] for row in _rows(b, aliased)} == {a.thread_id(), b.thread_id()}
    assert _columns(b, "SHOW PROCESSLIST")[:8] == [
        "Id", "User", "Host", "db", "Command", "Time", "State", "Info"
    ]  # fmt: skip


def test_lock_owners_are_client_ids(clients: tuple[Any, Any]) -> None:
    a, b = clients
    assert _rows(a, "SELECT GET_LOCK('identity_lock', 0)") == [(1,)]
    try:
        assert _rows(a, "SELECT IS_USED_LOCK('identity_lock') = CONNECTION_ID()") == [(1,)]
        assert _rows(b, "SELECT IS_USED_LOCK('identity_lock')") == [(a.thread_id(),)]
        assert _columns(b, "SELECT IS_USED_LOCK('identity_lock')") == [
            "IS_USED_LOCK('identity_lock')"
        ]
        assert _rows(b, "SELECT IS_USED_LOCK('no_such_lock')") == [(None,)]
    finally:
        _rows(a, "SELECT RELEASE_LOCK('identity_lock')")


def test_kill_query_by_client_id_stops_that_clients_statement_only(
    clients: tuple[Any, Any],
) -> None:
    a, b = clients
    outcome: list[Any] = []

    def sleep() -> None:
        try:
            outcome.append(_rows(a, "SELECT SLEEP(30)"))
        except pymysql.MySQLError as exc:
            outcome.append(exc.args[0])

    sleeper = threading.Thread(target=sleep)
    sleeper.start()
    try:
        for _ in range(100):
            running = "SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %d"
            if _rows(b, running % a.thread_id()) == [("Query",)]:
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("the sleeping client's row never showed its statement")
        assert _rows(b, f"KILL QUERY {a.thread_id()}") == []
        sleeper.join(10)
        assert not sleeper.is_alive(), "KILL QUERY did not reach the client's statement"
    finally:
        sleeper.join(30)
    # SLEEP() killed answers 1 (or, on some servers, ERR 1317): either way it ended early.
    assert outcome in ([[(1,)]], [ER.QUERY_INTERRUPTED])
    assert _rows(a, "SELECT 1") == [(1,)]
    assert _rows(b, "SELECT 2") == [(2,)]


def test_kill_by_client_id_ends_that_client_and_com_process_kill_too(
    setup: tuple[ProxydProcess, list[str]],
) -> None:
    proxy, _ = setup
    for use_command in (False, True):
        victim, killer = proxy.connect(), proxy.connect()
        if use_command:
            killer.kill(victim.thread_id())  # COM_PROCESS_KILL
        else:
            _rows(killer, f"KILL {victim.thread_id()}")
        with pytest.raises(pymysql.OperationalError):
            _rows(victim, "SELECT 1")
        assert _rows(killer, "SELECT 1") == [(1,)]
        killer.close()


def test_proxyds_server_ids_are_no_clients_to_kill(
    clients: tuple[Any, Any], mariadb: MariaDBServer
) -> None:
    a, _ = clients
    before = set(mariadb.connection_ids("app"))
    for thread in before:
        with pytest.raises(pymysql.MySQLError) as refused:
            _rows(a, f"KILL {thread}")
        assert refused.value.args[0] == ER.NO_SUCH_THREAD
    assert set(mariadb.connection_ids("app")) == before
    assert _rows(a, "SELECT 1") == [(1,)]


def test_other_applications_connections_show_and_die_by_the_servers_ids(
    clients: tuple[Any, Any], mariadb: MariaDBServer
) -> None:
    a, _ = clients
    direct = mariadb.connect(user="app", password="apppw")
    try:
        shown = _rows(a, "SELECT ID, HOST FROM information_schema.PROCESSLIST")
        assert (direct.thread_id(), _address(direct)) in shown
        assert _rows(a, f"KILL {direct.thread_id()}") == []
        with pytest.raises(pymysql.OperationalError):
            _rows(direct, "SELECT 1")
    finally:
        direct.close()


def test_transactions_are_listed_by_client_id(clients: tuple[Any, Any]) -> None:
    a, b = clients
    _rows(a, "CREATE TABLE IF NOT EXISTS identity_trx (id INT PRIMARY KEY)")
    _rows(a, "BEGIN")
    try:
        _rows(a, "INSERT INTO identity_trx VALUES (1)")
        sql = "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX"
        assert _rows(b, sql) == [(a.thread_id(),)]
        assert _columns(b, sql) == ["trx_mysql_thread_id"]
    finally:
        _rows(a, "ROLLBACK")


def test_performance_schema_threads_and_lock_holders_show_client_ids(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory(performance_schema="ON")
    server.execute("INSTALL SONAME 'metadata_lock_info'")
    proxy = proxyd({"pool": {"max_size": 4, "min_idle": 3}}, backend=server)
    a, b = proxy.connect(), proxy.connect()
    proxyds_own = set(server.connection_ids("app"))
    mine = "SELECT PROCESSLIST_ID, PROCESSLIST_HOST FROM performance_schema.threads t"
    assert _rows(a, mine + " WHERE t.PROCESSLIST_ID = CONNECTION_ID()") == [
        (a.thread_id(), _address(a))
    ]
    listed = {row[0] for row in _rows(b, "SELECT PROCESSLIST_ID FROM performance_schema.threads")}
    assert a.thread_id() not in listed  # between statements a holds no server connection
    assert b.thread_id() in listed
    assert None in listed  # the server's background threads are still there
    assert not proxyds_own & listed
    # MariaDB's metadata_lock_info plugin lists GET_LOCK() holders by thread id.
    assert _rows(a, "SELECT GET_LOCK('identity_mdl', 0)") == [(1,)]
    holders = "SELECT THREAD_ID FROM information_schema.METADATA_LOCK_INFO WHERE TABLE_SCHEMA = %s"
    assert _rows(b, holders % "'identity_mdl'") == [(a.thread_id(),)]


def test_many_clients_on_few_connections_each_see_their_own_id(
    proxyd: Callable[..., ProxydProcess], mariadb: MariaDBServer
) -> None:
    """Twelve clients taking turns on four server connections: whichever connection runs a
    statement, the asking client's row, its locks and its id agree, and no row is of
    proxyd's idle pool."""
    # The server may still be closing an earlier test's connections of the same user:
    # they are not this proxyd's, and would be shown, rightly, as the server has them.
    assert wait_until(lambda: not mariadb.connection_ids("app"), 15)
    proxy = proxyd({"pool": {"max_size": 4, "min_idle": 4, "acquire_timeout": "30s"}})
    proxyds_own = set(mariadb.connection_ids("app"))
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            conn = proxy.connect()
            me = conn.thread_id()
            for _ in range(25):
                ids = [row[0] for row in _rows(conn, "SHOW PROCESSLIST")]
                if ids.count(me) != 1 or proxyds_own & set(ids):
                    errors.append(f"client {me}: process list ids {ids}")
                mine = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
                if _rows(conn, mine) != [(me,)]:
                    errors.append(f"client {me}: own row {_rows(conn, mine)}")
                _rows(conn, f"SELECT GET_LOCK('many_{n}', 5)")
                owner = _rows(conn, f"SELECT IS_USED_LOCK('many_{n}') = CONNECTION_ID()")
                _rows(conn, f"SELECT RELEASE_LOCK('many_{n}')")
                if owner != [(1,)]:
                    errors.append(f"client {me}: lock owner check {owner}")
            conn.close()
        except Exception as exc:
            errors.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]


def test_kill_query_reaches_only_its_clients_statement_under_churn(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    """KILL QUERY of a client whose statement ends just as the KILL travels must not stop
    the next client's statement on the same server connection: the connection goes to no
    one else until the KILL has been answered."""
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 2, "acquire_timeout": "30s"}})
    target, killer = proxy.connect(), proxy.connect()
    stop = threading.Event()
    hit: list[str] = []
    errors: list[str] = []
    stopped = [0]  # the target's statements the KILLs reached

    def target_loop() -> None:
        while not stop.is_set():
            try:
                if _rows(target, "SELECT SLEEP(0.002)") == [(1,)]:
                    stopped[0] += 1
            except pymysql.MySQLError as exc:
                if exc.args[0] != ER.QUERY_INTERRUPTED:
                    errors.append(f"target: {exc!r}")
                stopped[0] += 1

    def bystander(n: int) -> None:
        conn = proxy.connect()
        try:
            while not stop.is_set():
                try:
                    if _rows(conn, "SELECT SLEEP(0.003)") != [(0,)]:
                        hit.append(f"bystander {n}: SLEEP() cut short")
                except pymysql.MySQLError as exc:
                    hit.append(f"bystander {n}: {exc!r}")
        finally:
            conn.close()

    workers = [threading.Thread(target=target_loop)]
    workers += [threading.Thread(target=bystander, args=(n,)) for n in range(3)]
    for w in workers:
        w.start()
    try:
        for _ in range(400):
            _rows(killer, f"KILL QUERY {target.thread_id()}")
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    assert not errors, errors[:3]
    assert not hit, f"{len(hit)} statements of other clients killed, e.g. {hit[:3]}"
    assert stopped[0] > 0, "no KILL QUERY reached the target's statements"
