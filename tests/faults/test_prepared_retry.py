"""A read-only prepared statement lost with its server connection is re-run, as text is.

Go's database/sql, Connector/J with useServerPrepStmts, PDO without emulation and
mysql-connector's prepared cursors send reads as COM_STMT_EXECUTE. Eight mysql-connector
clients with prepared cursors run autocommit point SELECTs through proxyd, each answer
checked against the table's known rows, while every server connection of user app is
KILLed every 0.3 s. An autocommit execution of a read-only statement is as safe to re-run
as its text form, so the clients must see no error of any kind.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
import pytest

from tests.integration.drivers import connector
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess
from tests.support.workload import Periodic, Tally, running

READERS = 8
SECONDS = 10.0
KILL_EVERY = 0.3
ROWS = 1000
TABLE = "test.prepared_reads"
SQL = f"SELECT id, val FROM {TABLE} WHERE id = %s"


def _val(key: int) -> int:
    return key * 7 + 3


@pytest.fixture
def table(mariadb: MariaDBServer) -> str:
    mariadb.execute(f"DROP TABLE IF EXISTS {TABLE}")
    mariadb.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, val INT NOT NULL) ENGINE=InnoDB")
    mariadb.execute(f"INSERT INTO {TABLE} SELECT seq, seq * 7 + 3 FROM test.seq_1_to_{ROWS}")
    return TABLE


def _describe(exc: BaseException) -> str:
    if isinstance(exc, mysql.connector.Error):
        return f"{exc.errno} {str(exc.msg).split(';')[0][:90]}"
    return f"{type(exc).__name__} {str(exc)[:90]}"


class PreparedReader(threading.Thread):
    """One mysql-connector connection with a prepared cursor, reading until `stop` is set.

    After any error it reconnects (and counts it): the test wants none at all.
    """

    def __init__(self, name: str, proxy: ProxydProcess, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.proxy = proxy
        self.stop = stop
        self.tally = Tally()
        self._random = random.Random(name)

    def run(self) -> None:
        conn: Any = None
        cur: Any = None
        while not self.stop.is_set():
            key = self._random.randint(1, ROWS)
            try:
                if conn is None:
                    conn = connector(
                        self.proxy.host, self.proxy.port, autocommit=True, connection_timeout=15
                    )
                    cur = conn.cursor(prepared=True)
                cur.execute(SQL, (key,))
                rows = [tuple(row) for row in cur.fetchall()]
            except Exception as exc:
                what = _describe(exc)
                self.tally.errors[what] += 1
                self.tally.examples.setdefault(what, f"{self.name}: {exc!r}")
                if (
                    not isinstance(exc, mysql.connector.Error)
                    or not 1000 <= (exc.errno or 0) < 2000
                ):
                    self.tally.dropped += 1
                _close_quietly(conn)
                conn = None
                continue
            if rows == [(key, _val(key))]:
                self.tally.ok += 1
            else:
                self.tally.wrong += 1
                self.tally.note(f"{self.name}: id {key} answered {rows!r}")
        _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def test_prepared_reads_are_rerun_when_their_server_connection_is_killed(
    table: str, mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd()
    stop = threading.Event()
    readers = [PreparedReader(f"prepared-{i}", proxy, stop) for i in range(READERS)]
    killer = Periodic("killer", lambda: mariadb.kill_connections("app", wait=1.0), KILL_EVERY, stop)
    with running([*readers, killer], stop):
        time.sleep(SECONDS)
    total = Tally()
    for reader in readers:
        total.merge(reader.tally)
    print(
        f"\n{total.summary()}\nKILL rounds: {killer.rounds}, server connections killed:"
        f" {killer.total}, failed rounds: {killer.failed}"
    )

    assert killer.rounds >= SECONDS / KILL_EVERY / 2 and killer.total >= 20, (
        f"too few KILLs to prove anything: {killer.rounds} rounds, {killer.total} killed"
    )
    assert total.ok >= 500 and all(r.tally.ok > 0 for r in readers), (
        f"too few reads to prove anything: {total.ok}"
    )
    assert total.failures == 0 and total.dropped == 0, total.summary()
