"""Overload and refusal: too many clients, a server that refuses proxyd, a client that
reads a huge result slowly. Each costs the client concerned a clear error (or nothing),
never the other clients their service, never proxyd its memory.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from tests.faults.rawclient import logged_in, packet, query, read_packet
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess
from tests.support.workload import Reader, running, wait_for_progress

ER_CON_COUNT = 1040
ER_ACCESS_DENIED = 1045


@contextlib.contextmanager
def _bystander(proxy: ProxydProcess) -> Iterator[Reader]:
    """A client querying all along; it must never fail and must keep getting answers."""
    stop = threading.Event()
    reader = Reader("bystander", lambda: proxy.connect(read_timeout=10), stop)
    with running([reader], stop):
        assert wait_for_progress([reader], 5, timeout=10)
        yield reader
        assert wait_for_progress([reader], 5, timeout=10), reader.tally.summary()
    assert reader.tally.failures == 0, reader.tally.summary()


def _select(conn: pymysql.Connection, value: int) -> None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {value}")
        assert cur.fetchall() == ((value,),)


def test_max_client_connections_refuses_the_sixth_and_keeps_the_five(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd({"max_client_connections": 5})
    five = [proxy.connect() for _ in range(5)]
    for i, conn in enumerate(five):
        _select(conn, i)
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect()
    assert info.value.args[0] == ER_CON_COUNT, info.value.args
    for i, conn in enumerate(five):
        _select(conn, 10 + i)
    # A slot that is given back can be taken again.
    five.pop().close()

    def sixth_gets_in() -> bool:
        try:
            five.append(proxy.connect())
        except pymysql.err.OperationalError:
            return False
        return True

    assert wait_until(sixth_gets_in, timeout=5)
    for i, conn in enumerate(five):
        _select(conn, 20 + i)
        conn.close()


def _refusal_lines(log: str) -> list[str]:
    """Log lines at WARNING or above that report the server's refusal."""
    return [
        line
        for line in log.splitlines()
        if re.search(r"\b(WARNING|ERROR)\b", line) and "Access denied" in line
    ]


def test_server_refusing_proxyds_login_is_a_quick_clear_err_logged_once_per_burst(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    acquire_timeout = 10.0
    proxy = proxyd(
        {
            "users": [{"name": "app", "password": "apppw", "backend_password": "wrong"}],
            "pool": {"acquire_timeout": f"{acquire_timeout:g}s"},
        }
    )
    clients = [proxy.connect(read_timeout=30) for _ in range(3)]
    slowest = 0.0
    attempts = 0
    for _ in range(2):  # bursts of statements, every client in each
        for conn in clients:
            started = time.monotonic()
            with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
                cur.execute("SELECT 1")
            slowest = max(slowest, time.monotonic() - started)
            attempts += 1
            code, message = info.value.args
            assert code == ER_ACCESS_DENIED, info.value.args
            assert message.startswith("proxyd:") and "Access denied" in message, message
    # Answered from what proxyd already knows, not after the next attempt's backoff.
    assert slowest < 1.0, f"a refusal took {slowest:.1f}s to reach the client"
    # The client connections survive their errors.
    for conn in clients:
        conn.ping(reconnect=False)
        conn.close()
    lines = _refusal_lines(proxy.log_text())
    assert 1 <= len(lines) <= 2, f"{len(lines)} log lines for {attempts} refusals:\n" + "\n".join(
        lines[:10]
    )


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_slow_reader_of_a_huge_result_does_not_grow_proxyd(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd()
    with logged_in(proxy) as slow, _bystander(proxy) as bystander:
        baseline = _rss_kib(proxy.pid)
        # About 200 MB of rows, asked for and then read at a trickle.
        slow.sendall(packet(b"\x03SELECT REPEAT('x', 1000) FROM test.seq_1_to_200000", 0))
        _, column_count = read_packet(slow)
        assert column_count == b"\x01", column_count
        received = 0
        peak = baseline
        until = time.monotonic() + 5
        while time.monotonic() < until:
            received += len(slow.recv(16 * 1024))
            peak = max(peak, _rss_kib(proxy.pid))
            time.sleep(0.02)
        answered = bystander.tally.ok
    growth_mb = (peak - baseline) / 1024
    assert received > 0
    assert growth_mb < 150, f"proxyd grew by {growth_mb:.0f} MB while {received} bytes were read"
    assert answered > 0


def test_a_client_queued_for_a_busy_pool_gets_a_clear_err_and_the_queue_survives_leavers(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd({"pool": {"max_size": 1, "min_idle": 0, "acquire_timeout": "1s"}})
    holder, queued = proxy.connect(), proxy.connect()
    with holder.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")  # the pool's only server connection stays with this transaction
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info, queued.cursor() as cur:
        cur.execute("SELECT 2")
    waited = time.monotonic() - started
    assert "within acquire_timeout (1s)" in info.value.args[1], info.value.args
    assert "are busy" in info.value.args[1], info.value.args
    assert 0.9 <= waited < 5, waited
    # Clients that leave while queued (a raw socket closed mid-wait, twice) are dropped
    # from the queue: the connection goes to the next client still there.
    leavers = [logged_in(proxy) for _ in range(2)]
    for sock in leavers:
        sock.sendall(packet(b"\x03SELECT 3", 0))
    time.sleep(0.2)
    for sock in leavers:
        sock.close()
    time.sleep(0.2)
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(_one_value(queued, "SELECT 4")))
    waiter.start()
    time.sleep(0.2)
    with holder.cursor() as cur:
        cur.execute("COMMIT")
    waiter.join(timeout=10)
    assert result == [4]
    assert _one_value(holder, "SELECT 5") == 5
    holder.close()
    queued.close()


def _one_value(conn: pymysql.Connection, sql: str) -> object:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        assert row is not None
        return row[0]


def _read_result(sock: socket.socket) -> int:
    """Read one EOF-style text result to its end; return its rows' count."""
    _, first = read_packet(sock)
    assert first[:1] not in (b"\x00", b"\xff"), first
    for _ in range(first[0]):
        read_packet(sock)
    assert read_packet(sock)[1][:1] == b"\xfe"
    rows = 0
    while True:
        _, payload = read_packet(sock)
        if payload[:1] == b"\xfe" and len(payload) < 9:
            return rows
        rows += 1


def test_answers_read_late_leave_the_server_connection_usable(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    """A client that lets an answer pile up makes proxyd stop reading the server until it
    reads again. When that pause comes with the answer's last bytes, the server connection
    goes back to the pool paused; whoever gets it next (with one connection: this client
    again) must still get answers, and a client leaving mid-answer must still free it."""
    proxy = proxyd({"pool": {"max_size": 1, "min_idle": 1}})
    sock = logged_in(proxy)
    sock.settimeout(10)
    # proxyd stops reading the server once the kernel holds all it will of the answer for
    # this client (up to the largest TCP send buffer) and its own buffer passes 64 KiB:
    # answers of sizes around that, each left unread for a moment, meet the pause with
    # their last bytes.
    send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    around = send_buffer_max // 1007  # one row: 1000 bytes, its length, a packet header
    for rows in range(around * 95 // 100, around * 115 // 100, 10):
        sock.sendall(packet(b"\x03SELECT REPEAT('x', 1000) FROM test.seq_1_to_%d" % rows, 0))
        time.sleep(0.02)
        try:
            assert _read_result(sock) == rows
            assert query(sock, b"SELECT 1") == [b"\x011"]
        except TimeoutError:
            pytest.fail(f"no answer within 10s after a {rows}-row result read late")
    # Leaving mid-answer, unread: the connection is drained and reused.
    sock.sendall(packet(b"\x03SELECT REPEAT('x', 1000) FROM test.seq_1_to_100000", 0))
    time.sleep(0.2)
    sock.close()
    assert _one_value(proxy.connect(read_timeout=10), "SELECT 6") == 6
