"""Readers and writers that run through proxyd while faults happen, and what they saw.

Shared by the fault tests (`tests/faults/`) and the chaos soak (`bench/chaos.py`). Each
worker is one PyMySQL connection in a thread of its own, running statements until told to
stop, and keeps a `Tally` of what an application would have seen:

- an answer (checked: a reader's answer must be the one its statement asks for);
- an ERR packet: a MySQL error code and message, after which the worker runs `SELECT 1`
  on the same connection, which must work (proxyd's promise: the connection stays usable);
- a dropped connection: PyMySQL's own 2006/2013/2055 (or another client-side error), a
  socket exception, a packet out of order. proxyd promises that never happens.

Writers insert rows with ids unique over the run, so `audit_writes` can tell afterwards
which acknowledged writes are missing and which writes were applied twice.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pymysql

from tests.support.mariadb import APP_DATABASE, MariaDBServer

Connect = Callable[[], pymysql.Connection]

READ_ROWS = 20_000  # rows a reader's statement counts; big enough to take a moment


def error_code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_err_packet(exc: BaseException) -> bool:
    """True for an error the server side sent as an ERR packet; False for a broken connection.

    MySQL and MariaDB server errors are 1000-1999 and 3000 up; 2000-2999 are the client
    library's own (2006 gone away, 2013 lost during query, 2055 lost at ...), and PyMySQL
    uses 0 for a connection it already closed.
    """
    code = error_code(exc)
    return (
        isinstance(exc, pymysql.MySQLError)
        and code is not None
        and code >= 1000
        and not 2000 <= code < 3000
    )


def error_class(exc: BaseException) -> str:
    """`<code> <message prefix>`, the same for every occurrence of one kind of failure.

    Parenthesised details (a connection's close reason, a server address) and numbers are
    left out, and the message ends at its first `;`.
    """
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    message = re.sub(r"\s*\([^)]*\)", "", message)
    message = re.sub(r"\d+", "N", message).split(";")[0].strip()[:90]
    if is_err_packet(exc):
        return f"{error_code(exc)} {message}"
    code = error_code(exc)
    kind = f"{code}" if code is not None else type(exc).__name__
    return f"dropped connection: {kind} {message}".rstrip()


@dataclass
class Tally:
    """What one worker (or, merged, a group of them) saw."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by error_class
    dropped: int = 0  # failures that were not an ERR packet
    unusable: int = 0  # ERRs after which the same connection could not run SELECT 1
    wrong: int = 0  # answers that were not what the statement asked for
    examples: dict[str, str] = field(default_factory=dict)  # error class -> first seen
    samples: list[str] = field(default_factory=list)  # a few other oddities, for reports

    def note(self, what: str) -> None:
        if len(self.samples) < 10:
            self.samples.append(what)

    def merge(self, other: Tally) -> None:
        self.ok += other.ok
        self.errors.update(other.errors)
        self.dropped += other.dropped
        self.unusable += other.unusable
        self.wrong += other.wrong
        for cls, example in other.examples.items():
            self.examples.setdefault(cls, example)
        for sample in other.samples:
            self.note(sample)

    @property
    def failures(self) -> int:
        return sum(self.errors.values()) + self.wrong

    def summary(self) -> str:
        lines = [
            f"{self.ok} ok, {self.failures} failed, {self.dropped} dropped connections,"
            f" {self.unusable} unusable after an ERR, {self.wrong} wrong answers"
        ]
        for cls, count in self.errors.most_common():
            lines += [f"  {count:6d}  {cls}", f"          e.g. {self.examples.get(cls)}"]
        lines += [f"  e.g. {sample}" for sample in self.samples]
        return "\n".join(lines)


def merged(workers: Iterable[Worker]) -> Tally:
    total = Tally()
    for worker in workers:
        total.merge(worker.tally)
    return total


class Worker(threading.Thread):
    """One client connection running `step` in a loop until `stop` is set.

    A connection that broke is replaced by a new one (and counted in `tally.dropped`), so
    one failure does not end the worker.
    """

    def __init__(self, name: str, connect: Connect, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.connect = connect
        self.stop = stop
        self.tally = Tally()

    def step(self, conn: pymysql.Connection) -> None:
        raise NotImplementedError

    def run(self) -> None:
        conn: pymysql.Connection | None = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = self.connect()
                except Exception as exc:
                    self._failed(exc, "connect")
                    self.stop.wait(0.1)
                    continue
            try:
                self.step(conn)
            except Exception as exc:
                conn = self._after_error(conn, exc)
            else:
                self.tally.ok += 1
        if conn is not None:
            _close_quietly(conn)

    def _failed(self, exc: BaseException, doing: str) -> None:
        tally = self.tally
        cls = error_class(exc)
        if doing != "statement":
            cls = f"{doing}: {cls}"
        tally.errors[cls] += 1
        tally.examples.setdefault(cls, f"{self.name}: {exc!r}")
        if not is_err_packet(exc):
            tally.dropped += 1

    def _after_error(
        self, conn: pymysql.Connection, exc: BaseException
    ) -> pymysql.Connection | None:
        self._failed(exc, "statement")
        if not is_err_packet(exc):
            _close_quietly(conn)
            return None
        # An ERR must leave the connection usable: prove it on the spot.
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        except Exception as again:
            self.tally.unusable += 1
            self.tally.note(f"{self.name} SELECT 1 after {error_code(exc)}: {again!r}")
            _close_quietly(conn)
            return None
        return conn


def _close_quietly(conn: pymysql.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()


class Reader(Worker):
    """Autocommit SELECTs that are safe to re-run, each answer checked."""

    def __init__(self, name: str, connect: Connect, stop: threading.Event) -> None:
        super().__init__(name, connect, stop)
        self._n = itertools.count(1)

    def step(self, conn: pymysql.Connection) -> None:
        n = next(self._n)
        with conn.cursor() as cur:
            cur.execute(f"SELECT {n}, COUNT(*), SUM(seq) FROM seq_1_to_{READ_ROWS}")
            row = cur.fetchone()
        expected = (n, READ_ROWS, READ_ROWS * (READ_ROWS + 1) // 2)
        if row is None or tuple(int(v) for v in row) != expected:
            self.tally.wrong += 1
            self.tally.note(f"{self.name}: got {row!r}, expected {expected!r}")


class Writer(Worker):
    """Autocommit INSERTs of ids unique over the run; remembers which were acknowledged."""

    _ids = itertools.count(1)  # shared by all writers of the process
    _ids_lock = threading.Lock()

    def __init__(self, name: str, connect: Connect, stop: threading.Event, table: str) -> None:
        super().__init__(name, connect, stop)
        self.table = table
        self.acknowledged: list[int] = []
        self.unknown: list[int] = []  # the statement failed: applied or not, nobody knows

    def step(self, conn: pymysql.Connection) -> None:
        with self._ids_lock:
            uid = next(self._ids)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {self.table} (uid, writer) VALUES ({uid}, %s)", (self.name,)
                )
        except Exception:
            self.unknown.append(uid)
            raise
        self.acknowledged.append(uid)


def create_write_table(server: MariaDBServer, table: str) -> None:
    server.execute(f"DROP TABLE IF EXISTS {APP_DATABASE}.{table}")
    # No unique key on uid: a write applied twice must show up as two rows, not as an error.
    server.execute(
        f"CREATE TABLE {APP_DATABASE}.{table} (n BIGINT AUTO_INCREMENT PRIMARY KEY,"
        " uid BIGINT NOT NULL, writer VARCHAR(32) NOT NULL, KEY (uid)) ENGINE=InnoDB"
    )


@dataclass(frozen=True)
class WriteAudit:
    acknowledged: int
    unknown: int  # writes that failed, outcome unknown to the app
    unknown_applied: int  # of those, how many the table holds
    lost: list[int]  # acknowledged, yet not in the table
    duplicated: dict[int, int]  # uid -> rows, for uids present more than once

    def summary(self) -> str:
        return (
            f"{self.acknowledged} acknowledged writes, {len(self.lost)} of them lost;"
            f" {self.unknown} failed writes ({self.unknown_applied} applied anyway);"
            f" {len(self.duplicated)} duplicated"
            + (f"; lost e.g. {self.lost[:5]}" if self.lost else "")
            + (
                f"; duplicated e.g. {dict(list(self.duplicated.items())[:5])}"
                if self.duplicated
                else ""
            )
        )


def audit_writes(server: MariaDBServer, table: str, writers: Sequence[Writer]) -> WriteAudit:
    rows = server.execute(f"SELECT uid, COUNT(*) FROM {APP_DATABASE}.{table} GROUP BY uid")
    present = {int(uid): int(count) for uid, count in rows}
    acknowledged = [uid for w in writers for uid in w.acknowledged]
    unknown = [uid for w in writers for uid in w.unknown]
    return WriteAudit(
        acknowledged=len(acknowledged),
        unknown=len(unknown),
        unknown_applied=sum(1 for uid in unknown if uid in present),
        lost=sorted(uid for uid in acknowledged if uid not in present),
        duplicated={uid: count for uid, count in present.items() if count > 1},
    )


@contextlib.contextmanager
def running(threads: Sequence[threading.Thread], stop: threading.Event) -> Iterator[None]:
    """Start `threads`; on leaving, set `stop` and wait for them (each bounded)."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def wait_for_progress(workers: Sequence[Worker], count: int, timeout: float) -> bool:
    """Wait until every worker has `count` more successes than now; False on timeout."""
    targets = [(w, w.tally.ok + count) for w in workers]
    deadline = time.monotonic() + timeout
    while any(w.tally.ok < target for w, target in targets):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Periodic(threading.Thread):
    """Call `action` every `interval` seconds until `stop` is set, counting what it returns.

    Failures of the action itself (the server is down while it tries a KILL) are counted,
    not raised: a fault injector must not stop because the fault it injects happened.
    """

    def __init__(
        self, name: str, action: Callable[[], int], interval: float, stop: threading.Event
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.action = action
        self.interval = interval
        self.stop = stop
        self.rounds = 0
        self.total = 0
        self.failed = 0

    def run(self) -> None:
        next_at = time.monotonic() + self.interval
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            try:
                self.total += self.action()
            except Exception:
                self.failed += 1
            else:
                self.rounds += 1
