"""Read scaling: sysbench's reads through proxyd on the primary only, and on two replicas.

Starts a primary and two replicas (MariaDB GTID replication, tests/support/replication.py),
prepares sysbench's tables on the primary, and runs ``oltp_read_only`` with
``--skip_trx=on`` (its statements in autocommit, as a web application's reads are) against
three targets in turn: the primary directly, proxyd with ``backend.reads: primary`` and
proxyd with ``backend.reads: replicas``. For each it prints queries per second (median of
the rounds), the share of SELECTs each server ran (the servers' own Com_select) and the CPU
proxyd spent per query.

On one machine the three servers, sysbench and proxyd share the same cores, so moving
reads to replicas spreads the work without adding any: the figure to read here is where
the reads went and what routing costs proxyd per query; the throughput gain needs
replicas on hosts of their own.

    .venv/bin/python -m bench.read_scaling --time 10 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from bench.compare import _QUERIES
from bench.procfs import cpu_seconds
from tests.support.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.proxy import ProxydProcess, backend_address
from tests.support.replication import ReplicaSet


@dataclass
class Tally:
    qps: list[float] = field(default_factory=list)
    queries: int = 0
    cpu: float = 0.0
    selects: dict[str, int] = field(default_factory=dict)  # server -> Com_select delta


def _sysbench(host: str, port: int, command: str, args: argparse.Namespace) -> str:
    argv = [
        "sysbench",
        "oltp_read_only",
        "--db-driver=mysql",
        f"--mysql-host={host}",
        f"--mysql-port={port}",
        f"--mysql-user={APP_USER}",
        f"--mysql-password={APP_PASSWORD}",
        f"--mysql-db={APP_DATABASE}",
        f"--tables={args.tables}",
        f"--table-size={args.table_size}",
        "--db-ps-mode=disable",
        "--skip_trx=on",
        f"--threads={args.threads if command == 'run' else args.tables}",
    ]
    if command == "run":
        argv += [f"--time={args.time:g}", "--events=0"]
    proc = subprocess.run(
        [*argv, command], capture_output=True, text=True, timeout=args.time + 300, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sysbench failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return proc.stdout


def _com_select(server: MariaDBServer) -> int:
    return int(server.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")[0][1])


def run(args: argparse.Namespace) -> int:
    started: list[MariaDBServer] = []

    def factory(**options: Any) -> MariaDBServer:
        server = MariaDBServer(options)
        started.append(server)
        server.start()
        return server

    try:
        replicas = ReplicaSet(factory)
        primary = replicas.primary
        labels = ("primary", "replica1", "replica2")
        names = {backend_address(s): n for n, s in zip(labels, replicas.servers, strict=True)}
        print("preparing tables on the primary ...", flush=True)
        _sysbench(primary.host, primary.port, "prepare", args)
        for replica in replicas.replicas:
            replicas.caught_up(replica)
        servers = [backend_address(s) for s in replicas.servers]

        def proxy(reads: str) -> ProxydProcess:
            return ProxydProcess(
                primary,
                {
                    "backend": {"address": None, "servers": servers, "reads": reads},
                    "pool": {"max_size": args.threads, "min_idle": args.threads},
                    "log": {"level": "warning"},
                },
            )

        with proxy("primary") as on_primary, proxy("replicas") as on_replicas:
            targets: list[tuple[str, str, int, int | None]] = [
                ("direct to the primary", primary.host, primary.port, None),
                ("proxyd, reads: primary", on_primary.host, on_primary.port, on_primary.pid),
                ("proxyd, reads: replicas", on_replicas.host, on_replicas.port, on_replicas.pid),
            ]
            tallies = {t[0]: Tally() for t in targets}
            warm_up = argparse.Namespace(**{**vars(args), "time": 2.0})
            for _name, host, port, _pid in targets:  # unmeasured
                _sysbench(host, port, "run", warm_up)
            for number in range(1, args.rounds + 1):
                for name, host, port, pid in targets:
                    _measure(name, host, port, pid, replicas, names, args, tallies[name])
                    print(f"  round {number} {name}: {tallies[name].qps[-1]:.0f} qps", flush=True)
        _report(tallies, names)
        return 0
    finally:
        for server in reversed(started):
            server.stop()


def _measure(
    name: str,
    host: str,
    port: int,
    pid: int | None,
    replicas: ReplicaSet,
    names: dict[str, str],
    args: argparse.Namespace,
    tally: Tally,
) -> None:
    before = {backend_address(s): _com_select(s) for s in replicas.servers}
    cpu = cpu_seconds(pid) if pid is not None else 0.0
    out = _sysbench(host, port, "run", args)
    if pid is not None:
        tally.cpu += cpu_seconds(pid) - cpu
    match = _QUERIES.search(out)
    if match is None:
        raise RuntimeError(f"no query count in sysbench's output:\n{out[-1000:]}")
    tally.queries += int(match.group(1))
    tally.qps.append(float(match.group(2)))
    for server in replicas.servers:
        address = backend_address(server)
        delta = _com_select(server) - before[address]
        tally.selects[names[address]] = tally.selects.get(names[address], 0) + delta


def _report(tallies: dict[str, Tally], names: dict[str, str]) -> None:
    direct = statistics.median(next(iter(tallies.values())).qps)
    servers = list(names.values())
    header = f"{'target':<26}{'qps':>9}{'x direct':>10}{'proxyd CPU/query':>18}"
    header += "".join(f"{'% on ' + s:>14}" for s in servers)
    print("\n" + header)
    for name, tally in tallies.items():
        qps = statistics.median(tally.qps)
        cpu = f"{tally.cpu / tally.queries * 1e6:.1f} us" if tally.cpu and tally.queries else "-"
        total = sum(tally.selects.values()) or 1
        shares = "".join(f"{100 * tally.selects.get(s, 0) / total:>13.0f}%" for s in servers)
        print(f"{name:<26}{qps:>9.0f}{qps / direct:>10.2f}{cpu:>18}{shares}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.read_scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--time", type=float, default=10, help="seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per target (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="sysbench threads (default 16)")
    parser.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    parser.add_argument("--table-size", type=int, default=10000, help="rows per table")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (RuntimeError, KeyboardInterrupt) as exc:
        print(f"bench.read_scaling: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
