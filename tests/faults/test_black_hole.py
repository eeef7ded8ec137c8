"""A server that stops answering without closing anything (a black hole, no FIN, no RST).

proxyd talks to MariaDB through a relay the test controls. A black hole cannot be seen on
the socket; proxyd finds it by pinging idle connections (`pool.ping_interval`, each ping
allowed `backend.ping_timeout`) and, for a statement in flight, by `backend.read_timeout`.

To see from outside that proxyd *replaced* the dead connections, the relay here can cut
off only the connections open at one moment, as when a server host vanishes and its
address answers again (a failover, a rebooted middlebox): old connections stay silent
forever, new ones work. A connection proxyd did not give up on would hang its client.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Iterator

import pymysql
import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess
from tests.support.relay import TcpRelay

PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
# The janitor looks at idle connections every quarter ping interval at most.
DETECTION_BOUND = PING_INTERVAL + PING_TIMEOUT + PING_INTERVAL / 4
SLACK = 1.0  # a loaded 2-core machine; well below anything a hang would take
JANITOR_LAG = 0.25  # the janitor's own work on a busy event loop

_accepted_in = contextvars.ContextVar("accepted_in", default=0)


class PartitionRelay(TcpRelay):
    """A TcpRelay whose `partition()` silences the connections open now, for good.

    Their bytes are held (reading stops both ways, nothing is closed), as by `blackhole()`;
    connections accepted afterwards are relayed as usual. Each connection's tasks inherit
    the context of its accept handler, so they know which epoch they were accepted in.
    """

    def __init__(self, target: str) -> None:
        self._epoch = 0
        super().__init__(target)

    def partition(self) -> None:
        async def apply() -> None:
            self._epoch += 1

        self._call(apply())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _accepted_in.set(self._epoch)
        await super()._accept(reader, writer)

    async def _until_flowing(self) -> None:
        if _accepted_in.get() < self._epoch:
            await asyncio.Event().wait()  # until close() cancels it
        await super()._until_flowing()


@pytest.fixture
def partition_relay(mariadb: MariaDBServer) -> Iterator[PartitionRelay]:
    with PartitionRelay(mariadb.address) as relay:
        yield relay


def _timed_query(conn: pymysql.Connection, sql: str) -> tuple[object, float]:
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    return rows, time.monotonic() - started


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_black_holed_backends_are_replaced_within_the_ping_bound(
    mode: str, partition_relay: PartitionRelay, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd(
        {
            "pool": {"mode": mode, "ping_interval": f"{PING_INTERVAL}s", "min_idle": 2},
            "backend": {"ping_timeout": f"{PING_TIMEOUT}s"},
        },
        backend=partition_relay,
    )
    # In session mode this client holds a backend of its own, which must be pinged too.
    conn = proxy.connect(read_timeout=10)
    assert _timed_query(conn, "SELECT 'before'")[0] == (("before",),)
    before = partition_relay.accepted
    partition_relay.partition()
    cut_at = time.monotonic()
    # Replacements for the two idle connections (min_idle) come through the relay.
    replaced = wait_until(
        lambda: partition_relay.accepted >= before + 2, timeout=DETECTION_BOUND + SLACK
    )
    replaced_after = time.monotonic() - cut_at
    assert replaced, (
        f"no replacement connections {replaced_after:.1f}s after the black hole"
        f" (bound: ping_interval + ping_timeout = {PING_INTERVAL + PING_TIMEOUT:g}s)"
    )
    # Once the bound has passed for every connection (the one used just before the black
    # hole too), the next statement finds a live connection at once, not after a ping
    # timeout.
    time.sleep(max(0.0, cut_at + DETECTION_BOUND + JANITOR_LAG - time.monotonic()))
    rows, seconds = _timed_query(conn, "SELECT 'after'")
    assert rows == (("after",),)
    assert seconds < PING_TIMEOUT, f"the statement took {seconds:.2f}s"
    conn.close()


def test_read_timeout_reruns_a_select_stuck_on_a_black_holed_backend(
    partition_relay: PartitionRelay, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd({"backend": {"read_timeout": f"{READ_TIMEOUT}s"}}, backend=partition_relay)
    conn = proxy.connect(read_timeout=15)
    assert _timed_query(conn, "SELECT 1")[0] == ((1,),)
    partition_relay.partition()
    # The idle backend looks healthy (no ping is due), so the statement goes into the black
    # hole; read_timeout gives up on it and the read-only statement runs again, on a
    # connection that works: one opened since (the pool refills to min_idle meanwhile),
    # not another silent one.
    rows, seconds = _timed_query(conn, "SELECT 'answered'")
    assert rows == (("answered",),)
    assert READ_TIMEOUT - 0.5 <= seconds < READ_TIMEOUT + SLACK, f"answered after {seconds:.1f}s"
    conn.close()


def test_read_timeout_brings_back_a_select_from_a_black_hole_everywhere(
    relay: TcpRelay, proxyd: Callable[..., ProxydProcess]
) -> None:
    """Every connection silent, new ones too: the re-runs cannot succeed, so the client
    gets an ERR, within the configured timeouts added up, instead of hanging."""
    retry_timeout, acquire_timeout = 4.0, 3.0
    bound = READ_TIMEOUT + retry_timeout + acquire_timeout + SLACK
    proxy = proxyd(
        {
            "backend": {
                "read_timeout": f"{READ_TIMEOUT}s",
                "ping_timeout": f"{PING_TIMEOUT}s",
                "connect_timeout": "1s",
            },
            "pool": {"acquire_timeout": f"{acquire_timeout:g}s"},
            "retry": {"timeout": f"{retry_timeout:g}s"},
        },
        backend=relay,
    )
    conn = proxy.connect(read_timeout=bound + 10)
    assert _timed_query(conn, "SELECT 1")[0] == ((1,),)
    relay.blackhole()
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute("SELECT 'in the dark'")
    seconds = time.monotonic() - started
    code, message = info.value.args
    assert code == 1105 and message.startswith("proxyd:"), info.value.args
    assert seconds < bound, f"ERR after {seconds:.1f}s (bound {bound:g}s)"
    relay.forward()
    assert _timed_query(conn, "SELECT 'healed'")[0] == (("healed",),)
    conn.close()


def test_read_timeout_answers_a_write_stuck_on_a_black_hole_with_an_err(
    mariadb: MariaDBServer, relay: TcpRelay, proxyd: Callable[..., ProxydProcess]
) -> None:
    mariadb.execute("CREATE TABLE IF NOT EXISTS test.black_hole_writes (uid INT)")
    proxy = proxyd({"backend": {"read_timeout": f"{READ_TIMEOUT}s"}}, backend=relay)
    conn = proxy.connect(read_timeout=15)
    assert _timed_query(conn, "SELECT 1")[0] == ((1,),)
    relay.blackhole()
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute("INSERT INTO black_hole_writes VALUES (1)")
    seconds = time.monotonic() - started
    code, message = info.value.args
    assert code == 1105, info.value.args
    assert message.startswith("proxyd:") and "may or may not have been applied" in message
    assert READ_TIMEOUT - 0.5 <= seconds < READ_TIMEOUT + SLACK, f"ERR after {seconds:.1f}s"
    # The network heals: the same client connection goes on.
    relay.forward()
    assert _timed_query(conn, "SELECT 'healed'")[0] == (("healed",),)
    conn.close()


def test_black_hole_for_every_connection_is_detected_and_heals(
    relay: TcpRelay, proxyd: Callable[..., ProxydProcess]
) -> None:
    """Old and new connections all silent: proxyd gives up on the old ones within the bound,
    a statement gets a clear ERR after acquire_timeout instead of hanging, and once the
    network forwards again the same client connection goes on."""
    acquire_timeout = 3.0
    proxy = proxyd(
        {
            "pool": {
                "ping_interval": f"{PING_INTERVAL}s",
                "min_idle": 2,
                "acquire_timeout": f"{acquire_timeout:g}s",
            },
            "backend": {"ping_timeout": f"{PING_TIMEOUT}s", "connect_timeout": "1s"},
        },
        backend=relay,
    )
    conn = proxy.connect(read_timeout=15)
    assert _timed_query(conn, "SELECT 'before'")[0] == (("before",),)
    before = relay.accepted
    relay.blackhole()
    # Having given up on the silent ones, proxyd tries new connections (which hang in turn).
    assert wait_until(lambda: relay.accepted > before, timeout=DETECTION_BOUND + SLACK)
    started = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute("SELECT 'in the dark'")
    seconds = time.monotonic() - started
    code, message = info.value.args
    assert code == 1105 and message.startswith("proxyd:"), info.value.args
    assert "acquire_timeout" in message, message
    assert seconds < acquire_timeout + SLACK, f"ERR after {seconds:.1f}s"
    relay.forward()
    assert _timed_query(conn, "SELECT 'healed'")[0] == (("healed",),)
    conn.close()
