"""Chaos soak: readers and writers through proxyd while the server behind it is abused.

Starts a throwaway MariaDB, a TcpRelay in front of it and a proxyd in front of the relay,
then runs reader threads (autocommit SELECTs whose answers are checked) and writer threads
(autocommit INSERTs of ids unique over the run) for ``--seconds``, while:

- every ``--kill-every`` seconds, every backend of user app is KILLed from the server;
- every ``--drop-every`` seconds, the relay resets every connection (RST both ways);
- every ``--restart-every`` seconds, the server restarts, gracefully and by SIGKILL in turn.

Then it prints what the application saw: reads and writes done, errors by class (MySQL
error code and message prefix), dropped client connections, acknowledged writes missing
from the table and writes applied twice. It exits 1 if any of proxyd's promises broke (a
read failed, a connection dropped or was unusable after an ERR, an acknowledged write was
lost or one applied twice), else 0.

    .venv/bin/python -m bench.chaos --seconds 60

Not part of the test suite; ``tests/faults/`` holds the short versions of each fault.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pymysql

from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess
from tests.support.relay import TcpRelay
from tests.support.workload import (
    Periodic,
    Reader,
    Tally,
    WriteAudit,
    Writer,
    audit_writes,
    create_write_table,
    merged,
    running,
)

TABLE = "chaos_writes"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (60)")
    parser.add_argument("--readers", type=int, default=4, help="reader threads (4)")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (4)")
    parser.add_argument("--kill-every", type=float, default=1.0, help="seconds between KILLs (1)")
    parser.add_argument(
        "--drop-every", type=float, default=5.0, help="seconds between relay resets (5)"
    )
    parser.add_argument(
        "--restart-every", type=float, default=15.0, help="seconds between server restarts (15)"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep proxyd's config and log in DIR"
    )
    return parser.parse_args(argv)


def _at(start: float) -> str:
    return f"t={time.monotonic() - start:6.1f}s"


def run(args: argparse.Namespace) -> int:
    print(
        f"chaos: {args.seconds:g} s through proxyd; {args.readers} readers, {args.writers}"
        f" writers; KILL all backends every {args.kill_every:g} s, relay reset every"
        f" {args.drop_every:g} s, server restart every {args.restart_every:g} s"
        " (graceful and SIGKILL in turn)",
        flush=True,
    )
    with (
        MariaDBServer() as server,
        TcpRelay(server.address) as relay,
        ProxydProcess(relay, {"log": {"level": "info"}}, workdir=args.keep) as proxy,
    ):
        print(
            f"MariaDB {server.address} <- relay {relay.address} <- proxyd {proxy.address}",
            flush=True,
        )
        create_write_table(server, TABLE)
        stop = threading.Event()

        def connect() -> pymysql.Connection:
            return proxy.connect(read_timeout=30, write_timeout=30)

        readers = [Reader(f"reader-{i}", connect, stop) for i in range(args.readers)]
        writers = [Writer(f"writer-{i}", connect, stop, TABLE) for i in range(args.writers)]
        faults_stop = threading.Event()
        killer = Periodic(
            "killer", lambda: server.kill_connections("app", wait=0.5), args.kill_every, faults_stop
        )
        dropper = Periodic("dropper", relay.drop_all, args.drop_every, faults_stop)
        restarts: Counter[str] = Counter()
        start = time.monotonic()
        with running([*readers, *writers], stop), running([killer, dropper], faults_stop):
            end = start + args.seconds
            next_restart = start + args.restart_every
            graceful = True
            while time.monotonic() < end:
                if time.monotonic() >= next_restart and next_restart < end:
                    kind = "graceful" if graceful else "SIGKILL"
                    began = time.monotonic()
                    server.restart(graceful=graceful)
                    print(
                        f"  {_at(start)}  {kind} restart, server back after"
                        f" {time.monotonic() - began:.1f} s",
                        flush=True,
                    )
                    restarts[kind] += 1
                    graceful = not graceful
                    next_restart += args.restart_every
                time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        elapsed = time.monotonic() - start
        hung = [w.name for w in (*readers, *writers) if w.is_alive()]
        reads, writes = merged(readers), merged(writers)
        audit = audit_writes(server, TABLE, writers)
        tracebacks = proxy.log_text().count("Traceback")
    return report(elapsed, restarts, killer, dropper, reads, writes, audit, tracebacks, hung)


def report(
    elapsed: float,
    restarts: Counter[str],
    killer: Periodic,
    dropper: Periodic,
    reads: Tally,
    writes: Tally,
    audit: WriteAudit,
    tracebacks: int,
    hung: list[str],
) -> int:
    print(
        f"\nafter {elapsed:.1f} s; faults: {restarts['graceful']} graceful restarts,"
        f" {restarts['SIGKILL']} SIGKILL restarts, {killer.rounds} KILL rounds"
        f" ({killer.total} backends killed), {dropper.rounds} relay resets"
        f" ({dropper.total} connections reset)"
    )
    print(
        f"reads:  {reads.ok} answered, {reads.failures - reads.wrong} failed,"
        f" {reads.wrong} wrong answers"
    )
    print(
        f"writes: {audit.acknowledged} acknowledged, {audit.unknown} failed"
        f" (outcome unknown to the app: {audit.unknown_applied} applied,"
        f" {audit.unknown - audit.unknown_applied} not)"
    )
    print("errors by class:")
    classes = [(n, "read ", cls, reads.examples[cls]) for cls, n in reads.errors.items()]
    classes += [(n, "write", cls, writes.examples[cls]) for cls, n in writes.errors.items()]
    if not classes:
        print("  none")
    for n, side, cls, example in sorted(classes, reverse=True):
        print(f"  {n:7d}  {side}  {cls}\n                  e.g. {example}")
    dropped = reads.dropped + writes.dropped
    unusable = reads.unusable + writes.unusable
    print(f"dropped client sockets:            {dropped}")
    print(f"connections unusable after an ERR: {unusable}")
    print(f"acknowledged writes lost:          {len(audit.lost)}")
    print(f"writes duplicated:                 {len(audit.duplicated)}")
    print(f"tracebacks in proxyd's log:        {tracebacks}")
    for sample in (reads.samples + writes.samples)[:5]:
        print(f"  {sample}")
    broken = {
        "reads failed": reads.failures,
        "client sockets dropped": dropped,
        "connections unusable after an ERR": unusable,
        "acknowledged writes lost": len(audit.lost),
        "writes duplicated": len(audit.duplicated),
        "tracebacks": tracebacks,
        "workers hung": len(hung),
    }
    broken = {k: v for k, v in broken.items() if v}
    if broken:
        print("verdict: BROKEN: " + ", ".join(f"{k} ({v})" for k, v in broken.items()))
        return 1
    print("verdict: OK, every promise held")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a server or proxyd that would not start
        print(f"chaos: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
