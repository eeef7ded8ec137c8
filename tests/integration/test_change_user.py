"""COM_CHANGE_USER that fails: what the client sees through proxyd is what the server shows.

On MariaDB a refused COM_CHANGE_USER answers 1045 and the connection goes on as the
previous user (its session reset, since the server resets it before checking), and after
three refusals on one connection every further COM_CHANGE_USER is answered 1047
(MDEV-3915). Each scenario runs directly against the server and through proxyd, and the
two transcripts must be equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mysql.connector
import pytest

from tests.integration.drivers import connector
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess, split_address


@pytest.fixture
def targets(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> dict[str, tuple[str, int]]:
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 0}})
    return {"direct": split_address(mariadb.address), "proxyd": (proxy.host, proxy.port)}


def _transcript(host: str, port: int, attempts: list[tuple[str, str]]) -> list[Any]:
    """Each change_user's outcome (error number and SQLSTATE, or the user now in use),
    then what the session looks like after it."""
    conn = connector(host, port, connection_timeout=20)
    seen: list[Any] = []

    def state() -> tuple[Any, ...]:
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER() LIKE 'app@%', DATABASE(), @kept, @@session.time_zone")
        row = cur.fetchone()
        cur.close()
        return tuple(row) if row else ()

    cur = conn.cursor()
    cur.execute("SET @kept = 1, time_zone = '+03:00'")
    cur.close()
    for user, password in attempts:
        try:
            conn.cmd_change_user(username=user, password=password, database="test")
            seen.append("changed")
        except mysql.connector.Error as exc:
            seen.append((exc.errno, exc.sqlstate))
        seen.append(state())
    conn.close()
    return seen


@pytest.mark.parametrize(
    "attempts",
    [
        pytest.param([("app", "wrong"), ("app", "apppw")], id="wrong-password-then-right"),
        pytest.param([("nobody", "x")], id="unknown-user"),
        pytest.param(
            [("app", "wrong"), ("nobody", "x"), ("app", "wrong"), ("app", "apppw")],
            id="three-failures-then-refused",
        ),
    ],
)
def test_failed_change_user_is_answered_as_the_server_does(
    attempts: list[tuple[str, str]], targets: dict[str, tuple[str, int]]
) -> None:
    direct = _transcript(*targets["direct"], attempts)
    through = _transcript(*targets["proxyd"], attempts)
    assert through == direct
    # The transcripts say something: every refusal was one, the connection lived on.
    assert (1045, "28000") in direct
    if len(attempts) > 3:
        assert direct[-2] == (1047, "08S01")
