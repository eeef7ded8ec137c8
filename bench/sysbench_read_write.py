"""sysbench oltp_read_write with prepared statements, through transaction pooling.

Runs ``sysbench oltp_read_write --db-ps-mode=auto`` with more client threads than
proxyd has backend connections, alternately against MariaDB directly and through
proxyd, and reports what multiplexing cost: how many statements proxyd had to
prepare again on another backend, and how many times it replayed session state
(schema, character set, variables) on a backend, per thousand queries. The
counters come from proxyd's admin console (SHOW STATS) before and after each run.

Run it with ``.venv/bin/python -m bench.sysbench_read_write`` (``--help`` for knobs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys

import pymysql

from tests.support.mariadb import APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.processes import free_port
from tests.support.proxy import ProxydProcess

_QPS = re.compile(r"queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)")
_ERRORS = re.compile(r"ignored errors:\s+(\d+)")
ADMIN_PASSWORD = "bench-admin"


def sysbench(port: int, command: str, args: argparse.Namespace) -> str:
    argv = [
        "sysbench",
        "oltp_read_write",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={port}",
        f"--mysql-user={APP_USER}",
        f"--mysql-password={APP_PASSWORD}",
        "--mysql-db=sbtest",
        f"--tables={args.tables}",
        f"--table-size={args.table_size}",
        "--db-ps-mode=auto",
        "--mysql-ignore-errors=1213,1205",  # InnoDB deadlocks and lock waits are the server's
    ]
    if command == "run":
        argv += [f"--threads={args.threads}", f"--time={args.time:g}"]
    argv.append(command)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.time + 300)
    if proc.returncode != 0:
        raise SystemExit(f"sysbench failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def stats(admin_port: int) -> dict[str, int]:
    conn = pymysql.connect(
        host="127.0.0.1", port=admin_port, user="admin", password=ADMIN_PASSWORD
    )
    with conn.cursor() as cur:
        cur.execute("SHOW STATS")
        rows = cur.fetchall()
    conn.close()
    return {str(name): int(value) for name, value, *_ in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sysbench_read_write", description=__doc__)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--time", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=10000)
    args = parser.parse_args(argv)
    if shutil.which("sysbench") is None:
        print("sysbench not found; run scripts/setup", file=sys.stderr)
        return 1
    admin_port = free_port()
    overrides = {
        "pool": {"mode": "transaction", "max_size": args.pool_size, "min_idle": 0},
        "admin": {
            "listen": f"127.0.0.1:{admin_port}",
            "user": "admin",
            "password": ADMIN_PASSWORD,
        },
        "log": {"level": "info"},
    }
    print(
        f"sysbench oltp_read_write --db-ps-mode=auto: {args.threads} threads on a pool of "
        f"{args.pool_size} backends, {args.rounds} rounds x {args.time:g} s per side"
    )
    with MariaDBServer() as server, ProxydProcess(server, overrides) as proxy:
        server.execute("CREATE DATABASE IF NOT EXISTS sbtest")
        sysbench(server.port, "prepare", args)
        direct_qps: list[float] = []
        proxied_qps: list[float] = []
        totals = {"queries": 0, "reprepares": 0, "state_replays": 0, "errors": 0}
        for number in range(1, args.rounds + 1):
            out = sysbench(server.port, "run", args)
            direct_qps.append(float(_QPS.search(out).group(2)))  # type: ignore[union-attr]
            before = stats(admin_port)
            out = sysbench(proxy.port, "run", args)
            after = stats(admin_port)
            m = _QPS.search(out)
            assert m is not None
            proxied_qps.append(float(m.group(2)))
            errors = int(_ERRORS.search(out).group(1))  # type: ignore[union-attr]
            queries = int(m.group(1))
            reprepares = after.get("reprepares", 0) - before.get("reprepares", 0)
            replays = after.get("state_replays", 0) - before.get("state_replays", 0)
            totals["queries"] += queries
            totals["reprepares"] += reprepares
            totals["state_replays"] += replays
            totals["errors"] += errors
            print(
                f"round {number}: direct {direct_qps[-1]:.0f} qps, proxyd {proxied_qps[-1]:.0f} "
                f"qps; {queries} queries, {reprepares} re-prepares, {replays} state replays, "
                f"{errors} ignored server errors"
            )
    per_k = 1000 / max(1, totals["queries"])
    print(
        f"\nmedian qps: direct {statistics.median(direct_qps):.0f}, proxyd "
        f"{statistics.median(proxied_qps):.0f} "
        f"(ratio {statistics.median(proxied_qps) / statistics.median(direct_qps):.2f})\n"
        f"per 1000 queries through proxyd: {totals['reprepares'] * per_k:.2f} re-prepares, "
        f"{totals['state_replays'] * per_k:.2f} state replays"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
