"""An answer proxyd cannot follow never leaves the client waiting.

A relay between proxyd and MariaDB slips a packet no server would send (an empty one)
into the answer of a running statement. proxyd must close that server connection, answer
the client with a clear ERR at once (not when the statement would have ended, and not
never), log the offending bytes, count the event, and keep the client's session usable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pymysql

from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess
from tests.support.relay import TcpRelay

EMPTY_PACKET_SEQ_1 = b"\x00\x00\x00\x01"


def test_garbage_in_an_answer_is_an_err_not_a_hang(
    proxyd: Callable[..., ProxydProcess], relay: TcpRelay
) -> None:
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 0}}, backend=relay)
    conn = proxy.connect(read_timeout=20)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT SLEEP(5)")
        except BaseException as exc:
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # The statement is running on the server when the garbage arrives.
    assert wait_until(lambda: "SLEEP" in proxy.log_text() or relay.active > 0, timeout=5)
    time.sleep(0.5)
    assert relay.inject(EMPTY_PACKET_SEQ_1) >= 1
    thread.join(20)
    assert not thread.is_alive(), "the client is still waiting"
    assert time.monotonic() - started < 4, "answered only when the statement ended"
    exc = outcome.get("error")
    assert isinstance(exc, pymysql.err.OperationalError), repr(exc)
    code, message = exc.args
    assert code == 1105 and message.startswith("proxyd: could not follow the server's answer")
    # Not re-run (it would fail the same way), and the session goes on elsewhere.
    with conn.cursor() as cur:
        cur.execute("SELECT 41 + 1")
        assert cur.fetchone() == (42,)
    log = proxy.log_text()
    assert "empty packet where a response was expected" in log and "Bytes: 00 00 00 01" in log
    conn.close()


def test_garbage_on_an_idle_server_connection_is_dropped_with_it(
    proxyd: Callable[..., ProxydProcess], relay: TcpRelay
) -> None:
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 1}}, backend=relay)
    conn = proxy.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert relay.inject(EMPTY_PACKET_SEQ_1) >= 1
    for _ in range(5):
        with conn.cursor() as cur:
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
    conn.close()
