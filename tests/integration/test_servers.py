"""Several servers (issue 13, first part): the primary found by asking the servers, and a
failover to a promoted replica that drops no client and loses no acknowledged write.

Real MariaDB GTID replication (tests/support/replication.py): a primary and two replicas.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port, wait_until
from tests.support.proxy import ProxydProcess, backend_address
from tests.support.replication import ReplicaSet
from tests.support.workload import running

# Client-side codes of a connection that broke: what proxyd must never let through.
DROPPED = {2006, 2013, 2014, 2055}


@pytest.fixture
def replicas(mariadb_factory: Callable[..., MariaDBServer]) -> ReplicaSet:
    return ReplicaSet(mariadb_factory)


def _proxy(
    proxyd: Callable[..., ProxydProcess], servers: list[MariaDBServer], **backend: Any
) -> ProxydProcess:
    return _proxy_at(proxyd, [backend_address(s) for s in servers], **backend)


def _proxy_at(
    proxyd: Callable[..., ProxydProcess], addresses: list[str], **backend: Any
) -> ProxydProcess:
    return proxyd(
        {
            "backend": {
                "address": None,
                "servers": addresses,
                "monitor_interval": "0.2s",
                **backend,
            },
            "pool": {"max_size": 8, "min_idle": 2, "acquire_timeout": "20s"},
            "retry": {"timeout": "20s"},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
            "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        },
    )


def _metrics(proxy: ProxydProcess) -> str:
    with urllib.request.urlopen(f"http://{proxy.config['metrics']['listen']}/metrics") as answer:
        return str(answer.read().decode())


def _one(conn: Any, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def test_clients_reach_the_writable_server_wherever_it_is_listed(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    first, second = replicas.replicas
    # The primary is listed last: the monitor, not the order, decides.
    proxy = _proxy(proxyd, [first, second, replicas.primary])
    client = proxy.connect()
    assert _one(client, "SELECT @@server_id") == (replicas.server_id(replicas.primary),)
    _one(client, "CREATE TABLE IF NOT EXISTS t_where (id INT PRIMARY KEY)")
    _one(client, "INSERT INTO t_where VALUES (1)")
    replicas.caught_up(first)
    assert first.execute("SELECT id FROM test.t_where") == [(1,)]
    assert "primary is now" in proxy.log_text()
    # The admin console: the pool's connections go to the primary, and each replica,
    # which no pool uses, has a row of its own.
    rows = proxy.admin_rows("SHOW SERVERS")
    primary = backend_address(replicas.primary)
    assert {r["role"] for r in rows if r["address"] == primary} == {"primary"}
    for replica in (first, second):
        [row] = [r for r in rows if r["address"] == backend_address(replica)]
        assert (row["user"], row["state"], row["role"]) == (None, "replica", "replica"), row
    metrics = _metrics(proxy)
    assert f'proxyd_server_up{{address="{primary}",role="primary"}} 1.0' in metrics


def test_two_writable_servers_are_logged_and_writes_do_not_split(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    proxy = _proxy(proxyd, replicas.servers)
    client = proxy.connect()
    primary_id = replicas.server_id(replicas.primary)
    assert _one(client, "SELECT @@server_id") == (primary_id,)
    rogue = replicas.replicas[0]
    rogue.execute("SET GLOBAL read_only = 0")
    assert wait_until(lambda: "servers are writable at once" in proxy.log_text(), 5)
    for _ in range(20):
        assert _one(client, "SELECT @@server_id") == (primary_id,)
    rogue.execute("SET GLOBAL read_only = 1")


def test_a_server_that_is_down_is_never_chosen(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    # An address where nothing listens, listed first.
    dead = replicas.replicas[1]
    dead.stop()
    proxy = _proxy(proxyd, [dead, replicas.primary])
    assert _one(proxy.connect(), "SELECT @@server_id") == (replicas.server_id(replicas.primary),)
    assert wait_until(lambda: f"server {backend_address(dead)} is out" in proxy.log_text(), 5)
    [row] = [r for r in proxy.admin_rows("SHOW SERVERS") if r["address"] == backend_address(dead)]
    assert (row["state"], row["role"]) == ("down", "down"), row
    assert "cannot connect" in row["error"], row
    address = backend_address(dead)
    assert f'proxyd_server_up{{address="{address}",role="down"}} 0.0' in _metrics(proxy)


def test_replication_lag_and_broken_replication_are_shown(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    healthy, broken = replicas.replicas
    proxy = _proxy(proxyd, replicas.servers)

    def row(server: MariaDBServer) -> dict[str, Any]:
        [found] = [
            r for r in proxy.admin_rows("SHOW SERVERS") if r["address"] == backend_address(server)
        ]
        return found

    assert wait_until(lambda: row(healthy)["lag"] == 0.0, 5), row(healthy)
    assert row(healthy)["error"] is None
    metrics = _metrics(proxy)
    assert (
        f'proxyd_server_replication_lag_seconds{{address="{backend_address(healthy)}"}} 0.0'
        in metrics
    )
    # Replication that stops (here by hand; a failed event stops it the same way) leaves
    # the lag unknown, and says why.
    broken.execute("STOP SLAVE SQL_THREAD")
    assert wait_until(lambda: row(broken)["lag"] is None and row(broken)["error"], 5)
    assert (
        "replication stopped" in row(broken)["error"] and "SQL thread: No" in row(broken)["error"]
    )
    lag_lines = [
        line
        for line in _metrics(proxy).splitlines()
        if line.startswith("proxyd_server_replication_lag_seconds{")
    ]
    assert lag_lines and not [line for line in lag_lines if backend_address(broken) in line]
    broken.execute("START SLAVE SQL_THREAD")


def test_something_that_is_not_a_mysql_server_is_never_chosen(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        stop = threading.Event()

        def babble() -> None:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=babble)
        thread.start()
        try:
            fake = f"127.0.0.1:{listener.getsockname()[1]}"
            # With reads on replicas: the one server that could take them is not MySQL,
            # so every read runs on the primary.
            proxy = _proxy_at(proxyd, [fake, backend_address(replicas.primary)], reads="replicas")
            client = proxy.connect()
            expected = (replicas.server_id(replicas.primary),)
            for _ in range(20):
                assert _one(client, "SELECT @@server_id") == expected
            [row] = [r for r in proxy.admin_rows("SHOW SERVERS") if r["address"] == fake]
            assert row["role"] == "down" and row["error"], row
        finally:
            stop.set()
            thread.join(5)


def test_new_transactions_wait_for_a_primary_to_appear(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet
) -> None:
    old = replicas.primary
    new = replicas.replicas[0]
    old.execute("CREATE TABLE test.waiting (id INT PRIMARY KEY)")
    replicas.caught_up(new)
    proxy = _proxy(proxyd, replicas.servers)
    client = proxy.connect()
    replicas.demote()
    assert wait_until(lambda: "no writable server" in proxy.log_text(), 5)
    # Reads go on meanwhile, answered by the read-only old primary.
    assert _one(client, "SELECT COUNT(*) FROM waiting") == (0,)
    outcome: dict[str, Any] = {}

    def write() -> None:
        started = time.monotonic()
        try:
            writer = proxy.connect()
            writer.begin()
            _one(writer, "INSERT INTO waiting VALUES (1)")
            writer.commit()
            outcome["server"] = _one(writer, "SELECT @@server_id")[0]
        except pymysql.err.MySQLError as exc:
            outcome["error"] = repr(exc)
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), outcome  # waiting for a primary, not refused with 1290
    replicas.caught_up(new)
    replicas.promote(new)
    thread.join(20)
    assert "error" not in outcome, outcome
    assert outcome["server"] == replicas.server_id(new) and outcome["took"] >= 1.0, outcome
    assert new.execute("SELECT id FROM test.waiting") == [(1,)]


class _Traffic:
    """Writers inserting ids through proxyd, readers reading: every outcome kept."""

    def __init__(self, proxy: ProxydProcess, writers: int = 4, readers: int = 4) -> None:
        self.proxy = proxy
        self.stop = threading.Event()
        self.acked: list[int] = []
        self.write_errors: list[int] = []
        self.messages: list[str] = []  # of write_errors, for a failing assertion to show
        self.read_errors: list[str] = []
        self.dropped: list[str] = []
        self.last_writer_server: dict[int, int] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._write, args=(n,)) for n in range(writers)] + [
            threading.Thread(target=self._read) for _ in range(readers)
        ]

    def _write(self, n: int) -> None:
        conn = self.proxy.connect(read_timeout=60, write_timeout=60)
        next_id = n * 1_000_000
        while not self.stop.is_set():
            next_id += 1
            try:
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO failover (id) VALUES (%s)", (next_id,))
                    # Where the write went (with reads on replicas, a plain read would not).
                    cur.execute("/* proxyd:primary */ SELECT @@server_id")
                    row = cur.fetchone()
            except pymysql.err.MySQLError as exc:
                code = exc.args[0] if exc.args else 0
                with self._lock:
                    if code in DROPPED or isinstance(exc, pymysql.err.InterfaceError):
                        self.dropped.append(repr(exc))
                        return
                    self.write_errors.append(code)
                    self.messages.append(str(exc))
                time.sleep(0.02)
                continue
            with self._lock:
                self.acked.append(next_id)
                self.last_writer_server[n] = int(row[0])

    def _read(self) -> None:
        conn = self.proxy.connect(read_timeout=60, write_timeout=60)
        while not self.stop.is_set():
            try:
                _one(conn, "SELECT COUNT(*) FROM failover")
            except pymysql.err.MySQLError as exc:
                with self._lock:
                    if exc.args and exc.args[0] in DROPPED:
                        self.dropped.append(repr(exc))
                        return
                    self.read_errors.append(repr(exc))
            time.sleep(0.005)


@pytest.mark.parametrize("reads", ["primary", "replicas"])
def test_failover_to_a_promoted_replica_drops_no_client_and_loses_no_write(
    proxyd: Callable[..., ProxydProcess], replicas: ReplicaSet, reads: str
) -> None:
    old = replicas.primary
    new, other = replicas.replicas
    old.execute("CREATE TABLE test.failover (id BIGINT PRIMARY KEY)")
    replicas.caught_up(new)
    replicas.caught_up(other)
    proxy = _proxy(proxyd, replicas.servers, reads=reads)
    new_id = replicas.server_id(new)
    traffic = _Traffic(proxy)
    with running(traffic.threads, traffic.stop):
        time.sleep(1.0)
        # What an orchestrator does: stop writes on the primary, let a replica catch up,
        # stop the old primary, promote the replica, point the other one at it.
        replicas.demote()
        replicas.caught_up(new)
        old.stop()
        replicas.promote(new)
        promoted_at = time.monotonic()
        assert wait_until(
            lambda: (
                len(traffic.last_writer_server) == 4
                and set(traffic.last_writer_server.values()) == {new_id}
            ),
            10,
        ), (traffic.last_writer_server, traffic.dropped[:3], traffic.messages[-3:])
        resumed_after = time.monotonic() - promoted_at
        time.sleep(1.0)
    assert traffic.dropped == [], traffic.dropped[:5]
    assert traffic.read_errors == [], traffic.read_errors[:5]
    # Writes refused meanwhile were refused by a read-only server (1290) or told in
    # doubt; none is a dropped connection.
    assert set(traffic.write_errors) <= {1290, 1105, 1213}, traffic.messages[-5:]
    acked = traffic.acked
    assert len(acked) > 100
    stored = {row[0] for row in new.execute("SELECT id FROM test.failover")}
    missing = [i for i in acked if i not in stored]
    assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    replicas.caught_up(other)
    assert other.execute("SELECT COUNT(*) FROM test.failover") == [(len(stored),)]
    assert resumed_after < 5, resumed_after
