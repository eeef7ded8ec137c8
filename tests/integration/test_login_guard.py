"""Failed logins slow down their address (issue 12, part 3), and logins in progress are
bounded. The delays are the behaviour under test, so they are measured here, with lower
bounds only where proxyd must wait and generous upper ones where it must not."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable

import pymysql
import pytest
from pymysql.constants import ER

from tests.faults.rawclient import read_packet
from tests.support.processes import free_port
from tests.support.proxy import ProxydProcess

GUARD = {
    "failed_login_threshold": 5,
    "failed_login_delay": "250ms",
    "failed_login_max_delay": "2s",
}


def _login(proxy: ProxydProcess, password: str, source: str = "127.0.0.1") -> tuple[bool, float]:
    started = time.monotonic()
    try:
        proxy.connect(password=password, bind_address=source, connect_timeout=30).close()
        ok = True
    except pymysql.OperationalError as exc:
        assert exc.args[0] == ER.ACCESS_DENIED_ERROR, exc.args
        ok = False
    return ok, time.monotonic() - started


def test_the_tenth_wrong_password_waits_and_another_address_does_not(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    metrics_port = free_port()
    proxy = proxyd({"auth": GUARD, "metrics": {"listen": f"127.0.0.1:{metrics_port}"}})
    outcomes = [_login(proxy, "wrong") for _ in range(10)]
    assert not any(ok for ok, _ in outcomes)
    assert outcomes[9][1] >= 1.9  # after 9 failures: the 2 s cap
    # Another address is not slowed, and its right password gets in.
    assert _login(proxy, "apppw", source="127.0.0.2") == (True, pytest.approx(0, abs=1.5))
    # The right password from the guessing address waits too (a guesser must not learn
    # early that it was right), then gets in and clears the address.
    ok, waited = _login(proxy, "apppw")
    assert ok and waited >= 1.9
    ok, waited = _login(proxy, "apppw")
    assert ok and waited < 1.5
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    delayed = [
        line for line in text.splitlines() if line.startswith("proxyd_client_logins_delayed_total")
    ]
    assert delayed and float(delayed[0].split()[-1]) >= 5, delayed
    assert "proxyd_client_auth_failures_total 10.0" in text


def test_connections_still_logging_in_are_bounded(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd({"auth": {"max_logins_in_progress": 2}})
    silent = [socket.create_connection((proxy.host, proxy.port), timeout=10) for _ in range(2)]
    for sock in silent:
        read_packet(sock)  # the greeting; no login follows
    with pytest.raises(pymysql.OperationalError) as refused:
        proxy.connect()
    assert refused.value.args[0] == ER.CON_COUNT_ERROR
    assert "logging in" in refused.value.args[1]
    silent[0].close()
    deadline = time.monotonic() + 10
    while True:
        try:
            proxy.connect().close()
            break
        except pymysql.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    silent[1].close()
