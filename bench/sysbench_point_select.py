"""sysbench oltp_point_select, directly against MariaDB and through proxyd, alternating.

Starts a throwaway MariaDB and a proxyd (transaction mode) in front of it, prepares the
sysbench tables once, warms both paths up, then runs ``sysbench oltp_point_select`` with
text-protocol queries (``--db-ps-mode=disable``) alternately against the server and against
proxyd, and prints each run's queries per second, the medians and the ratio proxyd/direct.
Alternating spreads drift of the machine (thermal, page cache, other load) over both sides.

Run it with ``scripts/bench`` (``--help`` for the knobs); bench/README.md explains the output.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from tests.support.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.proxy import ProxydProcess

_QPS = re.compile(r"queries:\s+\d+\s+\(([\d.]+) per sec\.\)")
_ERRORS = re.compile(r"ignored errors:\s+(\d+)")
_RECONNECTS = re.compile(r"reconnects:\s+(\d+)")
_PERCENTILE = re.compile(r"(\d+)th percentile:\s+([\d.]+)")


@dataclass(frozen=True, slots=True)
class Result:
    target: str
    qps: float
    p95_ms: float
    errors: int
    reconnects: int


class SysbenchFailed(Exception):
    pass


def sysbench_argv(
    host: str, port: int, command: str, args: argparse.Namespace, seconds: float = 0
) -> list[str]:
    argv = [
        "sysbench",
        "oltp_point_select",
        "--db-driver=mysql",
        f"--mysql-host={host}",
        f"--mysql-port={port}",
        f"--mysql-user={APP_USER}",
        f"--mysql-password={APP_PASSWORD}",
        f"--mysql-db={APP_DATABASE}",
        f"--tables={args.tables}",
        f"--table-size={args.table_size}",
        "--db-ps-mode=disable",
    ]
    if command == "run":
        argv += [f"--threads={args.threads}", f"--time={seconds:g}", "--events=0"]
    else:
        argv += [f"--threads={min(args.tables, args.threads)}"]
    argv.append(command)
    return argv


def sysbench(
    host: str, port: int, command: str, args: argparse.Namespace, seconds: float = 0
) -> str:
    argv = sysbench_argv(host, port, command, args, seconds)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()
        raise SysbenchFailed(
            f"{' '.join(argv)}\nexited with {proc.returncode}; last lines:\n"
            + "\n".join(output[-15:])
        )
    return proc.stdout


def parse(target: str, output: str) -> Result:
    qps = _QPS.search(output)
    if qps is None:
        raise SysbenchFailed(f"no 'queries: ... per sec.' line in sysbench's output:\n{output}")
    percentile = _PERCENTILE.search(output)
    errors = _ERRORS.search(output)
    reconnects = _RECONNECTS.search(output)
    return Result(
        target=target,
        qps=float(qps.group(1)),
        p95_ms=float(percentile.group(2)) if percentile else float("nan"),
        errors=int(errors.group(1)) if errors else 0,
        reconnects=int(reconnects.group(1)) if reconnects else 0,
    )


def run_bench(args: argparse.Namespace) -> int:
    pool_size = max(args.threads, args.pool_size)
    print(
        f"sysbench oltp_point_select: {args.threads} threads, --db-ps-mode=disable, "
        f"{args.tables} tables x {args.table_size} rows, {args.rounds} rounds x {args.time:g} s"
        f" per side; proxyd pool: transaction mode, max_size {pool_size}",
        flush=True,
    )
    with MariaDBServer({"max_connections": 4 * pool_size + 50}) as server:
        overrides = {
            "pool": {"mode": "transaction", "max_size": pool_size, "min_idle": args.threads},
            "log": {"level": "info"},
        }
        with ProxydProcess(server, overrides) as proxy:
            targets = {"direct": (server.host, server.port), "proxyd": (proxy.host, proxy.port)}
            print(f"MariaDB on {server.address}, proxyd on {proxy.address}", flush=True)
            print("preparing tables ...", flush=True)
            sysbench(server.host, server.port, "prepare", args)
            if args.warmup > 0:
                print(f"warming up both sides ({args.warmup:g} s each) ...", flush=True)
                for host, port in targets.values():
                    sysbench(host, port, "run", args, args.warmup)
            command = sysbench_argv(proxy.host, proxy.port, "run", args, args.time)
            print(f"each run, here through proxyd:\n  {' '.join(command)}", flush=True)
            print(f"\n{'round':<7}{'target':<8}{'QPS':>10}{'p95 ms':>9}{'errors':>8}", flush=True)
            results: list[Result] = []
            for number in range(1, args.rounds + 1):
                for name, (host, port) in targets.items():
                    result = parse(name, sysbench(host, port, "run", args, args.time))
                    results.append(result)
                    print(
                        f"{number:<7}{name:<8}{result.qps:>10.1f}{result.p95_ms:>9.2f}"
                        f"{result.errors + result.reconnects:>8}",
                        flush=True,
                    )
            if proxy.returncode is not None:
                print(f"proxyd exited with {proxy.returncode}:\n{proxy.log_tail()}")
                return 1
    direct = statistics.median(r.qps for r in results if r.target == "direct")
    proxied = statistics.median(r.qps for r in results if r.target == "proxyd")
    print(
        f"\nmedian QPS: direct {direct:.1f}, through proxyd {proxied:.1f}; "
        f"proxyd/direct = {proxied / direct:.2f}"
    )
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through the with-blocks, so that the server and proxyd are stopped.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="sysbench oltp_point_select directly against MariaDB and through proxyd.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--time", type=float, default=10, help="seconds per run (default 10)")
    parser.add_argument("--threads", type=int, default=16, help="sysbench threads (default 16)")
    parser.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    parser.add_argument(
        "--table-size", type=int, default=10000, help="rows per table (default 10000)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=16,
        help="proxyd pool.max_size, at least --threads (default 16)",
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="unmeasured seconds per side first (default 2)"
    )
    args = parser.parse_args(argv)
    if min(args.rounds, args.threads, args.tables, args.table_size) < 1 or args.time <= 0:
        parser.error("--rounds, --time, --threads, --tables and --table-size must be positive")
    if shutil.which("sysbench") is None:
        print("scripts/bench: sysbench not found; run scripts/setup", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        status = run_bench(args)
    except SysbenchFailed as exc:
        print(f"scripts/bench: sysbench failed: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, FileNotFoundError) as exc:
        # MariaDB or proxyd would not start; the message says why and where the log is.
        print(f"scripts/bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; MariaDB and proxyd are stopped", file=sys.stderr)
        return 130
    print(f"({time.monotonic() - started:.0f} s in all)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
