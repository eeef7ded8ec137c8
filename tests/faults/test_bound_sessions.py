"""A session in a transaction, or holding state, never goes on on another server connection.

When the server connection under such a session dies, three things race: the close itself,
proxyd noticing it, and the client's next command. Whatever their order, the client must
get the loss answer (1213 / 40001 for a transaction) and nothing of the transaction may be
applied: a statement run on another connection would run in autocommit and commit at once.

Each test fixes one order for real. A TcpRelay between proxyd and MariaDB holds back the
close (``blackhole``) while the test KILLs the server connection and sends the client's
next command, then lets everything through (``forward``):

- noticed first: proxyd has logged the loss before the command arrives;
- command first: the command reaches proxyd while the close is still held;
- while replaying state: the command needs the connection brought to the client's state
  first (a ``SET NAMES`` answered locally), and the close arrives during that replay;
- while a janitor ping is in flight: the ping is held, the command waits for it, and the
  close arrives then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import mysql.connector
import pytest

from tests.faults.lost import assert_lost_transaction, assert_session_goes_on, kill_backend
from tests.integration.drivers import connector, scalar
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess
from tests.support.relay import TcpRelay

ER_UNKNOWN_ERROR = 1105


@pytest.fixture
def table(mariadb: MariaDBServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"bound_{request.node.name.split('[')[0][-30:]}"
    mariadb.execute(f"DROP TABLE IF EXISTS test.{name}")
    mariadb.execute(f"CREATE TABLE test.{name} (uid INT PRIMARY KEY) ENGINE=InnoDB")
    yield name
    mariadb.execute(f"DROP TABLE IF EXISTS test.{name}")


@pytest.fixture
def proxy(proxyd: Callable[..., ProxydProcess], relay: TcpRelay) -> ProxydProcess:
    # No idle refill: with the relay holding everything, a refill would only wait.
    return proxyd({"pool": {"min_idle": 0, "ping_interval": "300ms"}}, backend=relay)


def _open_transaction(proxy: ProxydProcess, table: str) -> tuple[Any, int]:
    """A client inside a transaction that inserted uid 1; and its server thread."""
    conn = connector(proxy.host, proxy.port, autocommit=True, connection_timeout=20)
    cur = conn.cursor()
    cur.execute("START TRANSACTION")
    cur.execute(f"INSERT INTO {table} (uid) VALUES (1)")
    cur.close()
    return conn, int(scalar(conn, "SELECT @@pseudo_thread_id"))




def _run_in_thread(conn: Any, sql: str) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            outcome["rows"] = cur.fetchall() if cur.with_rows else None
        except Exception as exc:
            outcome["error"] = exc
        finally:
            cur.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _answer(thread: threading.Thread, outcome: dict[str, Any]) -> BaseException | None:
    thread.join(30)
    assert not thread.is_alive(), "the client got no answer"
    return outcome.get("error")






def _loss_logged(proxy: ProxydProcess) -> bool:
    return "backend lost inside a transaction" in proxy.log_text()


@pytest.mark.parametrize(
    "statement", ["INSERT INTO {table} (uid) VALUES (2)", "COMMIT", "SELECT 1"]
)
def test_loss_noticed_before_the_next_command(
    statement: str, mariadb: MariaDBServer, proxy: ProxydProcess, table: str
) -> None:
    conn, thread_id = _open_transaction(proxy, table)
    kill_backend(mariadb, thread_id)
    assert wait_until(lambda: _loss_logged(proxy), timeout=10)
    # An idle server connection ready for the taking: the command must not go there.
    other = connector(proxy.host, proxy.port, autocommit=True)
    assert scalar(other, "SELECT 1") == 1
    thread, outcome = _run_in_thread(conn, statement.format(table=table))
    # A COMMIT answered OK here would acknowledge a transaction the server rolled back.
    assert_lost_transaction(_answer(thread, outcome))
    assert_session_goes_on(conn, mariadb, table, 3)


def test_rollback_after_a_noticed_loss_is_answered_ok(
    mariadb: MariaDBServer, proxy: ProxydProcess, table: str
) -> None:
    conn, thread_id = _open_transaction(proxy, table)
    kill_backend(mariadb, thread_id)
    assert wait_until(lambda: _loss_logged(proxy), timeout=10)
    thread, outcome = _run_in_thread(conn, "ROLLBACK")
    assert _answer(thread, outcome) is None, "ROLLBACK of a transaction already rolled back"
    assert_session_goes_on(conn, mariadb, table, 3)


def _held_close(
    mariadb: MariaDBServer,
    proxy: ProxydProcess,
    relay: TcpRelay,
    table: str,
    statement: str,
    meanwhile: Callable[[Any], None] = lambda conn: None,
) -> tuple[Any, BaseException | None]:
    """Open a transaction, KILL its server connection while the relay holds the close back,
    run ``meanwhile``, send ``statement``, then let everything through; the client and the
    error its statement got (None for an answer)."""
    conn, thread_id = _open_transaction(proxy, table)
    relay.blackhole()
    kill_backend(mariadb, thread_id)
    meanwhile(conn)
    thread, outcome = _run_in_thread(conn, statement.format(table=table))
    thread.join(0.5)
    assert thread.is_alive() and not _loss_logged(proxy), "the relay did not hold the close"
    relay.forward()
    return conn, _answer(thread, outcome)


def test_command_arrives_before_the_close(
    mariadb: MariaDBServer, proxy: ProxydProcess, relay: TcpRelay, table: str
) -> None:
    conn, exc = _held_close(mariadb, proxy, relay, table, "INSERT INTO {table} (uid) VALUES (2)")
    assert_lost_transaction(exc)
    assert_session_goes_on(conn, mariadb, table, 3)


def test_commit_in_flight_when_the_connection_dies_is_of_unknown_outcome(
    mariadb: MariaDBServer, proxy: ProxydProcess, relay: TcpRelay, table: str
) -> None:
    conn, exc = _held_close(mariadb, proxy, relay, table, "COMMIT")
    # The COMMIT may have reached the server before it died: "rolled back, retry it" could
    # have the application apply the transaction twice.
    assert isinstance(exc, mysql.connector.Error), repr(exc)
    assert exc.errno == ER_UNKNOWN_ERROR, repr(exc)
    assert exc.msg.startswith("proxyd:") and "may or may not have been applied" in exc.msg
    assert_session_goes_on(conn, mariadb, table, 3)


def _set_names_latin1(conn: Any) -> None:
    # Answered by proxyd itself; the next statement first replays it on the connection.
    cur = conn.cursor()
    cur.execute("SET NAMES latin1")
    cur.close()


def test_close_arrives_while_the_connection_is_brought_to_the_client_state(
    mariadb: MariaDBServer, proxy: ProxydProcess, relay: TcpRelay, table: str
) -> None:
    conn, exc = _held_close(
        mariadb, proxy, relay, table, "INSERT INTO {table} (uid) VALUES (2)", _set_names_latin1
    )
    assert_lost_transaction(exc)
    assert_session_goes_on(conn, mariadb, table, 3)


def test_close_arrives_while_a_janitor_ping_is_in_flight(
    mariadb: MariaDBServer, proxy: ProxydProcess, relay: TcpRelay, table: str
) -> None:
    # Idle past ping_interval (300ms): the janitor pings the held connection; the relay
    # holds that ping, so the client's command finds the connection busy with it.
    conn, exc = _held_close(
        mariadb,
        proxy,
        relay,
        table,
        "INSERT INTO {table} (uid) VALUES (2)",
        lambda conn: threading.Event().wait(1.0),
    )
    assert_lost_transaction(exc)
    assert_session_goes_on(conn, mariadb, table, 3)


def test_lost_user_variables_are_reported_not_read_as_null(
    mariadb: MariaDBServer, proxy: ProxydProcess
) -> None:
    conn = connector(proxy.host, proxy.port, autocommit=True, connection_timeout=20)
    cur = conn.cursor()
    cur.execute("SET @balance = 42")
    cur.close()
    kill_backend(mariadb, int(scalar(conn, "SELECT @@pseudo_thread_id")))
    assert wait_until(lambda: "user variable @balance lost" in proxy.log_text(), timeout=10)
    with pytest.raises(mysql.connector.Error) as info:
        scalar(conn, "SELECT @balance")
    assert info.value.errno == ER_UNKNOWN_ERROR, repr(info.value)
    assert "user variable @balance" in info.value.msg, info.value.msg
    assert "not run" in info.value.msg, info.value.msg
    # Told once; the session goes on without the variable, as after a reconnect.
    assert scalar(conn, "SELECT @balance") is None
    assert scalar(conn, "SELECT 7") == 7
