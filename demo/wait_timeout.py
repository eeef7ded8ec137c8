"""The demo: an app's idle connections outlive wait_timeout, directly and through proxyd.

MariaDB closes a connection that stayed idle longer than ``wait_timeout``. An app whose pool
hands out such a connection gets error 2006 "MySQL server has gone away" or 2013 "Lost
connection to MySQL server during query" on its next query, unless it sets ``pool_recycle``
below the server's timeout or pings before every checkout. This program starts a throwaway
MariaDB with ``wait_timeout=3`` and a proxyd in front of it, then runs the same SQLAlchemy
code (a plain ``create_engine(url)``) against both, side by side, and prints what each saw.

Exit status 0 means the point was made: direct connections failed at least once and proxyd
never did. Run it with ``scripts/demo``; everything it starts is stopped when it ends, also
on Ctrl-C. proxyd's generated config and log stay in ``demo-run/`` for reading afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
import time
from types import FrameType

import sqlalchemy
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from tests.support.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.proxy import REPO_ROOT, ProxydProcess

WAIT_TIMEOUT = 3  # seconds; the server's, small so that the demo is short
IDLE = 4.5  # seconds the app sits idle between queries: past wait_timeout
RUN_DIR = REPO_ROOT / "demo-run"

# Columns: round, statement, what the direct engine saw (room for an error), proxyd's.
ROUND_WIDTH = 9
STATEMENT_WIDTH = 20
DIRECT_WIDTH = 40


class Target:
    """One engine, as the app would create it, and a tally of what happened on it."""

    def __init__(self, url: str) -> None:
        # As in the write-up: no pool_recycle, no pool_pre_ping. The read timeout only turns
        # a hang into an error instead of stalling the demo.
        self.engine = create_engine(url, connect_args={"read_timeout": 15})
        self.statements = 0
        self.errors = 0

    def run(self, sql: str) -> str:
        """Run one statement on a connection from the engine's pool; describe the outcome."""
        self.statements += 1
        try:
            with self.engine.connect() as conn:
                result = conn.execute(text(sql))
                value = result.scalar() if result.returns_rows else None
        except DBAPIError as exc:
            self.errors += 1
            return describe_error(exc)
        if isinstance(value, datetime.datetime):
            return f"ok {value:%H:%M:%S}"
        return "ok"


def describe_error(exc: DBAPIError) -> str:
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        # PyMySQL appends the socket error, e.g. "(ConnectionResetError(104, ...))".
        message = str(args[1]).split(" (", 1)[0]
        return f"ERROR {args[0]} {message}"
    return f"ERROR {exc.orig!r}"


class Table:
    """Prints rounds as rows: the round number only on its first line."""

    def __init__(self, direct: Target, proxied: Target) -> None:
        self.direct = direct
        self.proxied = proxied
        self.label = ""

    def heading(self, title: str) -> None:
        print(f"\n{title}")
        pad = " " * (ROUND_WIDTH + STATEMENT_WIDTH)
        print(f"  {pad}{'directly to MariaDB':<{DIRECT_WIDTH}}through proxyd", flush=True)

    def start_round(self, number: int) -> None:
        self.label = f"round {number}"

    def line(self, middle: str, direct: str = "", proxied: str = "") -> None:
        print(
            f"  {self.label:<{ROUND_WIDTH}}{middle:<{STATEMENT_WIDTH}}"
            f"{direct:<{DIRECT_WIDTH - 1}} {proxied}".rstrip(),
            flush=True,
        )
        self.label = ""

    def both(self, sql: str) -> None:
        self.line(sql, self.direct.run(sql), self.proxied.run(sql))

    def idle(self, seconds: float) -> None:
        self.line(f"(idle {seconds:g} s)")
        time.sleep(seconds)


def run_demo(rounds: int, idle_seconds: float) -> int:
    RUN_DIR.mkdir(exist_ok=True)
    (RUN_DIR / "proxyd.log").unlink(missing_ok=True)
    print("Starting a throwaway MariaDB and a proxyd in front of it ...", flush=True)
    with (
        MariaDBServer({"wait_timeout": WAIT_TIMEOUT}) as server,
        ProxydProcess(server, {"log": {"level": "debug"}}, workdir=RUN_DIR) as proxy,
    ):
        version = str(server.execute("SELECT VERSION()")[0][0]).split("-", 1)[0]
        account = f"{APP_USER}:{APP_PASSWORD}"
        direct = Target(f"mysql+pymysql://{account}@{server.address}/{APP_DATABASE}")
        proxied = Target(f"mysql+pymysql://{account}@{proxy.address}/{APP_DATABASE}")
        print(
            f"  MariaDB {version} on {server.address}, wait_timeout={WAIT_TIMEOUT}\n"
            f"  proxyd on {proxy.address} in front of it (config and log: {RUN_DIR.name}/)\n"
            f"  The app: SQLAlchemy {sqlalchemy.__version__} + PyMySQL, create_engine(url) with"
            " no pool_recycle, no pool_pre_ping.\n"
            "  It runs every statement twice: directly against MariaDB, and through proxyd.",
            flush=True,
        )
        table = Table(direct, proxied)

        table.heading(f"1. The app sits idle longer than wait_timeout ({WAIT_TIMEOUT} s)")
        for number in range(1, rounds + 1):
            table.start_round(number)
            table.both("SELECT now()")
            table.idle(idle_seconds)
            table.both("SELECT now()")

        table.heading("2. As in the bug report: the app also sets its own session's wait_timeout")
        for number in range(1, max(1, rounds - 1) + 1):
            table.start_round(number)
            table.both("SELECT now()")
            table.both(f"SET wait_timeout={WAIT_TIMEOUT}")
            table.idle(idle_seconds)
            table.both("SELECT now()")

        direct.engine.dispose()
        proxied.engine.dispose()

    print(
        f"\ndirect: {direct.errors} errors in {direct.statements} queries; "
        f"through proxyd: {proxied.errors} errors in {proxied.statements} queries"
    )
    if proxied.errors:
        print(f"FAILED: proxyd let errors through; see {RUN_DIR.name}/proxyd.log", file=sys.stderr)
        return 1
    if not direct.errors:
        print(
            "FAILED: the direct connections never failed, so this run proves nothing "
            f"(did the server apply wait_timeout={WAIT_TIMEOUT}?)",
            file=sys.stderr,
        )
        return 1
    print(
        f"proxyd learned wait_timeout={WAIT_TIMEOUT} from the server, and pinged and replaced its"
        " idle server\nconnections before the server could close them: the app never got a dead"
        f" one.\n({RUN_DIR.name}/proxyd.log lists the replacements.)"
    )
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through the with-blocks, so that the server and proxyd are stopped.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run the same SQLAlchemy app directly against MariaDB and through proxyd.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 1 (default 3)")
    parser.add_argument(
        "--idle", type=float, default=IDLE, help=f"seconds idle between queries (default {IDLE})"
    )
    args = parser.parse_args(argv)
    if args.idle <= WAIT_TIMEOUT:
        parser.error(f"--idle must exceed the server's wait_timeout ({WAIT_TIMEOUT} s)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run_demo(args.rounds, args.idle)
    except (RuntimeError, FileNotFoundError) as exc:
        # MariaDB or proxyd would not start; the message says why and where the log is.
        print(f"scripts/demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; MariaDB and proxyd are stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
