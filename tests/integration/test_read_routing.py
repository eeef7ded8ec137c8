"""Reads on replicas (issue 13): ``backend.reads: replicas`` sends autocommit reads to a
replica by weight, everything else to the primary; read-your-writes under a lagging
replica; replicas that must not be read are not.

Real MariaDB GTID replication (tests/support/replication.py): a primary and two replicas.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.drivers import connector
from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port, wait_until
from tests.support.proxy import ProxydProcess, backend_address
from tests.support.replication import ReplicaSet


@pytest.fixture
def replicas(mariadb_factory: Callable[..., MariaDBServer]) -> ReplicaSet:
    return ReplicaSet(mariadb_factory)


def _proxy(
    proxyd: Callable[..., ProxydProcess], servers: list[Any], **backend: Any
) -> ProxydProcess:
    return proxyd(
        {
            "backend": {
                "address": None,
                "servers": servers,
                "monitor_interval": "0.2s",
                "reads": "replicas",
                **backend,
            },
            "pool": {"max_size": 8, "min_idle": 1, "acquire_timeout": "20s"},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
        },
    )


def _one(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def _stat(proxy: ProxydProcess, name: str) -> int:
    return next(int(r["value"]) for r in proxy.admin_rows("SHOW STATS") if r["stat"] == name)


def _replicas_ready(proxy: ProxydProcess, servers: list[MariaDBServer]) -> bool:
    rows = {r["address"]: r for r in proxy.admin_rows("SHOW SERVERS")}
    return all(
        rows.get(backend_address(s), {}).get("role") == "replica"
        and rows[backend_address(s)]["lag"] is not None
        for s in servers
    )


def _com_select(server: MariaDBServer) -> int:
    return int(server.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")[0][1])


def test_reads_go_to_replicas_by_weight_and_the_rest_to_the_primary(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    heavy, light = replicas.replicas
    replicas.primary.execute("CREATE TABLE test.routed (id INT PRIMARY KEY)")
    replicas.primary.execute("INSERT INTO test.routed VALUES (1)")
    replicas.caught_up(heavy)
    replicas.caught_up(light)
    proxy = _proxy(
        proxyd,
        [
            backend_address(replicas.primary),
            {"address": backend_address(heavy), "weight": 3},
            {"address": backend_address(light), "weight": 1},
        ],
    )
    assert wait_until(lambda: _replicas_ready(proxy, [heavy, light]), 10)
    ids = {s: replicas.server_id(s) for s in replicas.servers}
    primary_id = ids[replicas.primary]
    client = proxy.connect()
    before = {s: _com_select(s) for s in replicas.servers}
    seen = collections.Counter(
        _one(client, "SELECT @@server_id FROM test.routed WHERE id = %s", (1,))[0]
        for _ in range(400)
    )
    after = {s: _com_select(s) for s in replicas.servers}
    # Every read on a replica, about three quarters of them on the heavier one.
    assert set(seen) <= {ids[heavy], ids[light]}, seen
    assert seen[ids[heavy]] > 2 * seen[ids[light]] > 0, seen
    # As the servers themselves count them (proxyd's own checks run no SELECT there).
    assert after[heavy] - before[heavy] >= seen[ids[heavy]]
    assert after[light] - before[light] >= seen[ids[light]]
    assert after[replicas.primary] - before[replicas.primary] < 10
    assert _stat(proxy, "reads_on_replicas") >= 400

    # Everything that is not a plain autocommit read runs on the primary.
    for sql in (
        "/* proxyd:primary */ SELECT @@server_id",
        "SELECT @@server_id FROM test.routed FOR UPDATE",
        "SELECT @@server_id, GET_LOCK('routing', 0), RELEASE_LOCK('routing')",
        "SELECT @@server_id, LAST_INSERT_ID()",
    ):
        assert _one(client, sql)[0] == primary_id, sql
    _one(client, "INSERT INTO test.routed VALUES (2)")
    client.begin()
    assert _one(client, "SELECT @@server_id")[0] == primary_id  # inside a transaction
    client.commit()
    _one(client, "SET autocommit = 0")
    assert _one(client, "SELECT @@server_id")[0] == primary_id
    client.rollback()
    _one(client, "SET autocommit = 1")
    # The session's own state goes with a read to a replica (schema, variables).
    _one(client, "SET SESSION sql_mode = 'ANSI_QUOTES'")
    for _ in range(10):
        assert _one(client, "SELECT @@server_id, @@session.sql_mode, DATABASE()")[1:] == (
            "ANSI_QUOTES",
            "test",
        )

    # Prepared reads too (mysql-connector's server-side prepared statements).
    prepared = connector(proxy.host, proxy.port, autocommit=True)
    try:
        cur = prepared.cursor(prepared=True)
        found = set()
        for _ in range(20):
            cur.execute("SELECT @@server_id FROM routed WHERE id = %s", (1,))
            found.add(cur.fetchone()[0])
        assert found <= {ids[heavy], ids[light]} and found, found
        cur.execute("INSERT INTO routed VALUES (%s)", (3,))
    finally:
        prepared.close()
    assert replicas.primary.execute("SELECT COUNT(*) FROM test.routed") == [(3,)]


def test_read_your_writes_under_a_lagging_replica(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    lagging = replicas.replicas[0]
    replicas.primary.execute("CREATE TABLE test.ryw (id INT PRIMARY KEY)")
    replicas.caught_up(lagging)
    servers = [backend_address(replicas.primary), backend_address(lagging)]
    # The monitor looks once at the start and then not for a minute: it goes on seeing
    # the replica healthy while its SQL thread is stopped, the lag read-your-writes covers.
    slow_monitor = {"monitor_interval": "60s", "read_your_writes_timeout": "300ms"}
    proxy = _proxy(proxyd, servers, **slow_monitor)
    unsafe = _proxy(proxyd, servers, read_your_writes=False, **slow_monitor)
    assert wait_until(lambda: _replicas_ready(proxy, [lagging]), 10)
    assert wait_until(lambda: _replicas_ready(unsafe, [lagging]), 10)
    writer, other = proxy.connect(), proxy.connect()
    careless = unsafe.connect()
    lagging.execute("STOP SLAVE SQL_THREAD")
    try:
        for n in range(1, 21):
            _one(writer, "INSERT INTO ryw VALUES (%s)", (n,))
            # The writer reads its own write, every time...
            assert _one(writer, "SELECT COUNT(*) FROM ryw WHERE id = %s", (n,)) == (1,)
            # ...while a client that wrote nothing reads the replica as it is.
            assert _one(other, "SELECT COUNT(*) FROM ryw") == (0,)
        assert _stat(proxy, "read_your_writes_on_primary") >= 20
        # Without read_your_writes a client does not see its own write on that replica.
        _one(careless, "INSERT INTO ryw VALUES (100)")
        assert _one(careless, "SELECT COUNT(*) FROM ryw WHERE id = 100") == (0,)
    finally:
        lagging.execute("START SLAVE SQL_THREAD")
    # Caught up: the writer's reads wait on the replica for its write, and stay there.
    replicas.caught_up(lagging)
    lagging_id = replicas.server_id(lagging)
    _one(writer, "INSERT INTO ryw VALUES (21)")
    assert _one(writer, "SELECT COUNT(*), @@server_id FROM ryw WHERE id = 21") == (1, lagging_id)
    assert _stat(proxy, "read_your_writes_waits") >= 21


def test_replicas_that_must_not_be_read_are_not(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    healthy, broken = replicas.replicas
    unreachable = f"127.0.0.1:{free_port()}"
    proxy = _proxy(
        proxyd,
        [
            backend_address(replicas.primary),
            backend_address(healthy),
            backend_address(broken),
            unreachable,
        ],
        max_replica_lag="5s",
    )
    broken.execute("STOP SLAVE SQL_THREAD")
    try:
        rows: dict[str, Any] = {}

        def shown() -> bool:
            rows.update({r["address"]: r for r in proxy.admin_rows("SHOW SERVERS")})
            broken_row = rows.get(backend_address(broken), {})
            return (
                rows.get(backend_address(healthy), {}).get("lag") is not None
                and "replication stopped" in (broken_row.get("error") or "")
                and rows.get(unreachable, {}).get("role") == "down"
            )

        assert wait_until(shown, 10), rows
        client = proxy.connect()
        seen = {_one(client, "SELECT @@server_id")[0] for _ in range(100)}
        assert seen == {replicas.server_id(healthy)}, seen
        # The one replica gone: reads fall back to the primary, without an error.
        healthy.execute("STOP SLAVE SQL_THREAD")
        primary_id = replicas.server_id(replicas.primary)
        assert wait_until(lambda: _one(client, "SELECT @@server_id")[0] == primary_id, 5)
        assert _stat(proxy, "reads_no_replica") > 0
        healthy.execute("START SLAVE SQL_THREAD")
    finally:
        broken.execute("START SLAVE SQL_THREAD")


def test_max_connections_caps_a_server_and_reads_spill_to_the_primary(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    small = replicas.replicas[0]
    proxy = _proxy(
        proxyd,
        [
            backend_address(replicas.primary),
            {"address": backend_address(small), "max_connections": 3},
        ],
    )
    assert wait_until(lambda: _replicas_ready(proxy, [small]), 10)
    most = [0]
    errors: list[str] = []
    seen: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            count = small.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"
            )[0][0]
            most[0] = max(most[0], int(count))
            time.sleep(0.01)

    start = threading.Barrier(8)

    def read() -> None:
        try:
            conn = proxy.connect()
            start.wait(30)  # all at once, whatever the machine's pace: they must overlap
            for _ in range(15):
                server_id = _one(conn, "SELECT @@server_id, SLEEP(0.1)")[0]
                with lock:
                    seen[server_id] += 1
        except Exception as exc:  # every failure is reported below
            errors.append(repr(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    readers = [threading.Thread(target=read) for _ in range(8)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(60)
    stop.set()
    watcher.join(10)
    assert errors == []
    # proxyd's connections to the small replica (the monitor's included) never passed 3;
    # the reads that found it full ran on the primary.
    assert 0 < most[0] <= 3, most
    assert seen[replicas.server_id(small)] > 0 and seen[replicas.server_id(replicas.primary)] > 0
    assert sum(seen.values()) == 120


def _reload(proxy: ProxydProcess, backend: dict[str, Any]) -> None:
    reloads = proxy.log_text().count("reloaded ")
    proxy.config["backend"] = backend
    proxy.write_config()
    proxy.send_signal(signal.SIGHUP)
    assert wait_until(lambda: proxy.log_text().count("reloaded ") > reloads, 10), proxy.log_tail()


def _app_connections(server: MariaDBServer) -> int:
    query = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"
    return int(server.execute(query)[0][0])


def test_a_reload_adds_and_removes_servers_without_dropping_a_client(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    first, second = replicas.replicas
    ids = {s: replicas.server_id(s) for s in replicas.servers}
    primary = backend_address(replicas.primary)
    # One server to start with: every read on it.
    proxy = proxyd(
        {
            "backend": {"address": primary, "reads": "replicas"},
            "pool": {"max_size": 4, "min_idle": 1},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
        }
    )
    client = proxy.connect()

    def reads() -> set[int]:
        return {_one(client, "SELECT @@server_id")[0] for _ in range(60)}

    assert reads() == {ids[replicas.primary]}
    several = {"servers": [primary, backend_address(first)], "monitor_interval": "0.2s"}
    _reload(proxy, {**several, "reads": "replicas"})
    assert wait_until(lambda: reads() == {ids[first]}, 10)
    # A server added, then one removed: reads follow, its connections close.
    several["servers"] = [primary, backend_address(first), backend_address(second)]
    _reload(proxy, {**several, "reads": "replicas"})
    assert wait_until(lambda: reads() == {ids[first], ids[second]}, 10)
    several["servers"] = [primary, backend_address(second)]
    _reload(proxy, {**several, "reads": "replicas"})
    assert wait_until(lambda: reads() == {ids[second]}, 10)
    assert wait_until(lambda: _app_connections(first) == 0, 10)
    # Reads back on the primary, and back to one server: no monitor any more.
    _reload(proxy, {**several, "reads": "primary"})
    assert reads() == {ids[replicas.primary]}
    _reload(proxy, {"address": primary})
    assert reads() == {ids[replicas.primary]}
    assert wait_until(lambda: _app_connections(second) == 0, 10)
    rows = proxy.admin_rows("SHOW SERVERS")
    assert rows and {r["address"] for r in rows} == {primary}, rows
    assert {r["role"] for r in rows} == {None}, rows
    # The client was never dropped, and writes always went to the primary.
    _one(client, "CREATE TABLE IF NOT EXISTS test.reloaded (id INT)")
    assert replicas.primary.execute("SHOW TABLES FROM test LIKE 'reloaded'") == [("reloaded",)]
