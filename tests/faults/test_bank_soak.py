"""Bank transfers through proxyd while every open transaction's server connection is KILLed.

The soak of issue 17. Eight PyMySQL clients share a pool of four server connections
(transaction pooling, so sessions really move between them) and run transfers:

    BEGIN; SELECT val FROM acct WHERE id=a FOR UPDATE; SELECT ... id=b FOR UPDATE;
    UPDATE acct SET val=val-1 WHERE id=a; UPDATE acct SET val=val+1 WHERE id=b;
    INSERT INTO tlog (id, a, b) VALUES (k, a, b); COMMIT

and on any error ROLLBACK and go on with the next one. Every half second a root connection
KILLs every server connection of user app that holds an open InnoDB transaction.

The promise checked afterwards, from the server's tables and what each client was told:
nothing of a transaction is ever half applied (the sum of balances is unchanged and every
balance is 1000 plus what the transfers in tlog moved); a COMMIT answered OK is never lost;
a transfer told it was rolled back (1213, or any error before COMMIT) is not in tlog, and
only a COMMIT answered "it may or may not have been applied" may go either way. Clients see
only ERR packets: 1213 with SQLSTATE 40001 (a lost transaction, or a real deadlock of two
transfers) or proxyd's own 1105; never a dropped connection, and never an error on BEGIN (a
BEGIN lost in flight is re-run). The checks do not depend on timing: the clock only sets how
much work is done, and minimums on that work keep the test from passing vacuously.

It takes about 20 s; to run it alone and see its figures:

    .venv/bin/python -m pytest tests/faults/test_bank_soak.py -s

PROXYD_SOAK_SECONDS=60 makes it run longer.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pymysql
import pytest

from tests.support.mariadb import APP_DATABASE, APP_USER, MariaDBServer
from tests.support.proxy import ProxydProcess
from tests.support.workload import (
    Connect,
    Periodic,
    Tally,
    Worker,
    error_class,
    error_code,
    is_err_packet,
    merged,
    running,
)

SOAK_SECONDS = float(os.environ.get("PROXYD_SOAK_SECONDS", "20"))
CLIENTS = 8
POOL_MAX_SIZE = 4  # fewer than the clients: sessions take turns on server connections
KILL_INTERVAL = 0.5
ACCOUNTS = 100
START_BALANCE = 1000
# Far below what a healthy run does on a busy two-core machine, far above zero.
MIN_COMMITTED = 300
MIN_KILLS = 10

ER_LOCK_DEADLOCK = 1213
ER_NO_SUCH_THREAD = 1094  # the connection ended between listing and KILL
OUTCOME_UNKNOWN = "may or may not have been applied"
# error_class() of the only errors a client may see: 1213 (proxyd's lost transaction or a
# real deadlock between two transfers) and proxyd's own 1105.
ALLOWED_ERROR = re.compile(r"(1213 |1105 proxyd: )")


def _transfer(k: int, a: int, b: int) -> list[tuple[str, str]]:
    """(stage, statement) pairs of one transfer of 1 from account a to account b."""
    return [
        ("BEGIN", "BEGIN"),
        ("lock a", f"SELECT val FROM acct WHERE id={a} FOR UPDATE"),
        ("lock b", f"SELECT val FROM acct WHERE id={b} FOR UPDATE"),
        ("debit a", f"UPDATE acct SET val=val-1 WHERE id={a}"),
        ("credit b", f"UPDATE acct SET val=val+1 WHERE id={b}"),
        ("log", f"INSERT INTO tlog (id, a, b) VALUES ({k}, {a}, {b})"),
        ("COMMIT", "COMMIT"),
    ]


class Teller(Worker):
    """One client running transfers; remembers what it was told of each.

    Every transfer ends in exactly one of `committed` (COMMIT answered OK), `unknown`
    (COMMIT failed in a way that does not say whether it was applied) or `rolled_back`
    (an error before COMMIT, or a COMMIT error that says nothing was applied).
    """

    def __init__(self, index: int, connect: Connect, stop: threading.Event) -> None:
        super().__init__(f"teller-{index}", connect, stop)
        self._rng = random.Random(index)
        self._ids = itertools.count(index * 100_000_000 + 1)  # unique over the run
        self.attempted = 0
        self.committed: list[int] = []
        self.unknown: list[int] = []
        self.rolled_back: dict[int, str] = {}  # -> the stage that failed
        self.failures: Counter[str] = Counter()  # "<stage>: <error class>"
        self.examples: dict[str, str] = {}
        self.bad_sqlstate: list[str] = []

    def step(self, conn: pymysql.Connection) -> None:
        k = next(self._ids)
        a, b = self._rng.sample(range(1, ACCOUNTS + 1), 2)
        self.attempted += 1
        stage = "BEGIN"
        try:
            with conn.cursor() as cur:
                for name, sql in _transfer(k, a, b):
                    stage = name  # for the except clause: where the transfer failed
                    cur.execute(sql)
                    cur.fetchall()
        except Exception as exc:
            self._record(stage, exc)
            if stage == "COMMIT" and (not is_err_packet(exc) or OUTCOME_UNKNOWN in str(exc)):
                self.unknown.append(k)
            else:
                self.rolled_back[k] = stage
            if is_err_packet(exc):
                self._roll_back(conn)
            # Worker counts it, proves the connection still answers SELECT 1 or replaces it.
            raise
        self.committed.append(k)

    def _roll_back(self, conn: pymysql.Connection) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("ROLLBACK")
        except Exception as exc:
            self._record("ROLLBACK", exc)
            raise

    def _record(self, stage: str, exc: BaseException) -> None:
        key = f"{stage}: {error_class(exc)}"
        self.failures[key] += 1
        self.examples.setdefault(key, f"{self.name}: {exc!r}")
        sqlstate = getattr(exc, "sqlstate", None)
        if error_code(exc) == ER_LOCK_DEADLOCK and sqlstate != "40001":
            # Frameworks retry a whole transaction on 40001, not on 1213 alone.
            self.bad_sqlstate.append(f"{self.name} {stage}: {exc!r} with SQLSTATE {sqlstate}")


def _kill_open_transactions(server: MariaDBServer) -> int:
    """KILL every server connection of user app with an open transaction; returns how many."""
    killed = 0
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT p.id FROM information_schema.innodb_trx t"
            " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
            " WHERE p.user = %s",
            (APP_USER,),
        )
        for (thread_id,) in cur.fetchall():
            try:
                cur.execute(f"KILL CONNECTION {int(thread_id)}")
            except pymysql.err.OperationalError as exc:
                if error_code(exc) != ER_NO_SUCH_THREAD:
                    raise
            else:
                killed += 1
    return killed


def _create_bank(server: MariaDBServer) -> None:
    server.execute(
        f"CREATE TABLE {APP_DATABASE}.acct (id INT PRIMARY KEY, val INT NOT NULL) ENGINE=InnoDB"
    )
    server.execute(
        f"INSERT INTO {APP_DATABASE}.acct SELECT seq, {START_BALANCE}"
        f" FROM {APP_DATABASE}.seq_1_to_{ACCOUNTS}"
    )
    server.execute(
        f"CREATE TABLE {APP_DATABASE}.tlog (id BIGINT PRIMARY KEY,"
        " a INT NOT NULL, b INT NOT NULL) ENGINE=InnoDB"
    )


@dataclass(frozen=True)
class BankAudit:
    total: int
    unexplained: dict[int, tuple[int, int]]  # account -> (balance, what tlog explains)
    lost: list[int]  # COMMIT answered OK, not in tlog
    rolled_back_present: dict[int, str]  # told rolled back (at that stage), yet in tlog
    unknown: int
    unknown_present: int
    strays: list[int]  # in tlog, yet no client ever ran that transfer

    def summary(self) -> str:
        expected = ACCOUNTS * START_BALANCE
        unexplained = list(self.unexplained.items())[:5]
        present = list(self.rolled_back_present.items())
        return "\n".join(
            [
                f"  sum of balances {self.total} (expected {expected});"
                f" {len(self.unexplained)} accounts not explained by tlog"
                + (
                    f", e.g. account: (balance, expected) {dict(unexplained)}"
                    if unexplained
                    else ""
                ),
                f"  {len(self.lost)} acknowledged commits missing from tlog"
                + (f", e.g. {self.lost[:5]}" if self.lost else ""),
                f"  {len(self.rolled_back_present)} transfers told rolled back yet in tlog"
                + (f", e.g. transfer: failed at {dict(present[:5])}" if present else ""),
                f"  {self.unknown_present} of {self.unknown} COMMITs of unknown outcome applied;"
                f" {len(self.strays)} tlog rows of no transfer"
                + (f", e.g. {self.strays[:5]}" if self.strays else ""),
            ]
        )


def _audit(server: MariaDBServer, tellers: Sequence[Teller]) -> BankAudit:
    balances = {
        int(id_): int(val)
        for id_, val in server.execute(f"SELECT id, val FROM {APP_DATABASE}.acct")
    }
    logged = server.execute(f"SELECT id, a, b FROM {APP_DATABASE}.tlog")
    explained = dict.fromkeys(range(1, ACCOUNTS + 1), START_BALANCE)
    for _, a, b in logged:
        explained[int(a)] -= 1
        explained[int(b)] += 1
    present = {int(row[0]) for row in logged}
    committed = {k for t in tellers for k in t.committed}
    unknown = {k for t in tellers for k in t.unknown}
    rolled_back = {k: stage for t in tellers for k, stage in t.rolled_back.items()}
    return BankAudit(
        total=sum(balances.values()),
        unexplained={
            account: (balances.get(account, 0), value)
            for account, value in explained.items()
            if balances.get(account) != value
        },
        lost=sorted(committed - present),
        rolled_back_present={k: rolled_back[k] for k in sorted(rolled_back.keys() & present)},
        unknown=len(unknown),
        unknown_present=len(unknown & present),
        strays=sorted(present - committed - unknown - rolled_back.keys()),
    )


def _report(tellers: Sequence[Teller], killer: Periodic, seen: Tally, audit: BankAudit) -> str:
    failures: Counter[str] = Counter()
    for teller in tellers:
        failures.update(teller.failures)
    examples = {key: ex for t in tellers for key, ex in t.examples.items()}

    def count(code: str) -> int:
        return sum(n for key, n in failures.items() if key.split(": ", 1)[1].startswith(code))

    lines = [
        f"bank soak: {SOAK_SECONDS:.0f} s, {CLIENTS} clients, pool max_size {POOL_MAX_SIZE},"
        f" a KILL round every {KILL_INTERVAL} s",
        f"  {sum(t.attempted for t in tellers)} transactions ran:"
        f" {sum(len(t.committed) for t in tellers)} committed,"
        f" {sum(len(t.rolled_back) for t in tellers)} rolled back,"
        f" {sum(len(t.unknown) for t in tellers)} of unknown outcome;"
        f" errors: {count('1213 ')} x 1213, {count('1105 ')} x 1105,"
        f" {sum(failures.values()) - count('1213 ') - count('1105 ')} other",
        f"  KILLs: {killer.total} server connections in {killer.rounds} rounds"
        f" ({killer.failed} rounds failed)",
    ]
    for key, n in failures.most_common():
        lines += [f"  {n:6d}  {key}", f"          e.g. {examples[key]}"]
    lines += [f"  clients: {seen.summary()}", audit.summary()]
    return "\n".join(lines)


def test_transfers_stay_whole_while_open_transactions_are_killed(
    fresh_mariadb: MariaDBServer,
    proxyd: Callable[..., ProxydProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = fresh_mariadb
    _create_bank(server)
    proxy = proxyd({"pool": {"max_size": POOL_MAX_SIZE}}, backend=server)
    stop = threading.Event()

    def connect() -> pymysql.Connection:
        # A statement that hangs fails the test within 15 s instead of hanging it.
        return proxy.connect(read_timeout=15, write_timeout=15)

    tellers = [Teller(i, connect, stop) for i in range(CLIENTS)]
    killer = Periodic("killer", lambda: _kill_open_transactions(server), KILL_INTERVAL, stop)
    with running([*tellers, killer], stop):
        stop.wait(SOAK_SECONDS)
    hung = [t.name for t in [*tellers, killer] if t.is_alive()]

    seen = merged(tellers)
    audit = _audit(server, tellers)
    report = _report(tellers, killer, seen, audit)
    with capsys.disabled():  # the figures belong in every CI log, passed or not
        print(f"\n{report}")

    assert not hung, f"still running after the soak: {hung}\n{report}"
    # Enough happened for the checks below to mean something.
    assert sum(len(t.committed) for t in tellers) >= MIN_COMMITTED, report
    assert killer.total >= MIN_KILLS, report
    # Nothing of a transaction is half applied.
    assert audit.total == ACCOUNTS * START_BALANCE, report
    assert not audit.unexplained, report
    # What the clients were told is what happened.
    assert not audit.lost, report
    assert not audit.rolled_back_present, report
    assert not audit.strays, report
    # Only the errors proxyd promises, as ERR packets on connections that still work.
    assert seen.dropped == 0, report
    assert seen.unusable == 0, report
    unexpected = [
        key
        for teller in tellers
        for key in teller.failures
        if key.startswith("BEGIN: ") or not ALLOWED_ERROR.match(key.split(": ", 1)[1])
    ]
    unexpected += [cls for cls in seen.errors if not ALLOWED_ERROR.match(cls)]
    assert not unexpected, f"unexpected errors: {sorted(set(unexpected))}\n{report}"
    bad_sqlstate = [entry for teller in tellers for entry in teller.bad_sqlstate]
    assert not bad_sqlstate, f"1213 without SQLSTATE 40001: {bad_sqlstate[:5]}\n{report}"
    assert "Traceback" not in proxy.log_text()
