"""sysbench through nothing, a bare byte relay and proxyd, alternating; CPU per query of each.

Starts a throwaway MariaDB, a proxyd (transaction pooling) and ``bench/relay.py`` in front
of it, prepares the sysbench tables once, warms every path up, then runs each workload
against each target in turn (direct, relay, proxyd, direct, relay, proxyd, ...), so that
drift of the machine spreads over all of them. Other proxies can be measured the same way
with ``--other NAME=HOST:PORT[@PID]`` (the PID gives their CPU figure).

For each workload and target it prints queries per second (median of the rounds), latency
percentiles (over all rounds, from sysbench's histogram), errors, the CPU time the kernel
counted for the middle process (user + system) divided by the queries it carried, its RSS,
and the ratios to direct and to the relay. On a shared machine CPU per query is the figure
that decides throughput: every microsecond the proxy spends is taken from the server and
the clients.

Run it with ``scripts/bench`` (``--help`` for the knobs); bench/README.md explains it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import pymysql

from tests.support.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.processes import free_port, port_accepts, stop_process
from tests.support.proxy import ProxydProcess

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("oltp_point_select", "oltp_read_only")
# Not sysbench's: "connect" (each thread: connect, SELECT 1, disconnect, again; its "qps"
# is connections per second) and "bulk" (the mariadb CLI reads a 100 MB result; its "qps"
# is MB/s and its CPU figure is per MB).
OWN_WORKLOADS = ("connect", "bulk")
BULK_SQL = "SELECT REPEAT('x', 1000) FROM seq_1_to_100000"
BULK_MB = 100_000 * 1001 / 1e6  # each row: 1000 bytes and a newline
_QUERIES = re.compile(r"queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)")
_ERRORS = re.compile(r"ignored errors:\s+(\d+)")
_RECONNECTS = re.compile(r"reconnects:\s+(\d+)")
_HISTOGRAM_ROW = re.compile(r"^\s*([\d.]+)\s+\|\**\s+(\d+)\s*$", re.M)
_TICK = os.sysconf("SC_CLK_TCK")


class SysbenchFailed(Exception):
    pass


@dataclass
class Target:
    name: str
    host: str
    port: int
    pid: int | None  # the middle process, for its CPU and memory; None for direct


@dataclass
class Tally:
    """One workload through one target, summed over the rounds."""

    qps: list[float] = field(default_factory=list)
    queries: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0
    rss_kib: int = 0
    latency_ms: Counter[float] = field(default_factory=Counter)  # histogram bucket -> count

    def percentile(self, p: float) -> float:
        total = sum(self.latency_ms.values())
        if not total:
            return float("nan")
        seen = 0
        for value in sorted(self.latency_ms):
            seen += self.latency_ms[value]
            if seen >= total * p / 100:
                return value
        return max(self.latency_ms)

    @property
    def cpu_us_per_query(self) -> float | None:
        return self.cpu_seconds / self.queries * 1e6 if self.queries else None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sysbench(
    workload: str, target: Target, command: str, args: argparse.Namespace, seconds: float = 0
) -> str:
    argv = [
        "sysbench",
        workload,
        "--db-driver=mysql",
        f"--mysql-host={target.host}",
        f"--mysql-port={target.port}",
        f"--mysql-user={APP_USER}",
        f"--mysql-password={APP_PASSWORD}",
        f"--mysql-db={APP_DATABASE}",
        f"--tables={args.tables}",
        f"--table-size={args.table_size}",
        f"--db-ps-mode={args.ps_mode}",
    ]
    if command == "run":
        argv += [f"--threads={args.threads}", f"--time={seconds:g}", "--events=0"]
        argv += ["--histogram=on"]
    else:
        argv += [f"--threads={min(args.tables, args.threads)}"]
    argv.append(command)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise SysbenchFailed(f"{' '.join(argv)}\nexited with {proc.returncode}:\n{tail}")
    return proc.stdout


def connect_per_request(target: Target, args: argparse.Namespace) -> str:
    """Threads that connect, run SELECT 1 and disconnect, for args.time seconds; the
    result in sysbench's words so that measure() reads both alike."""
    stop = time.monotonic() + args.time
    done: list[int] = []
    errors: list[int] = []
    latencies: Counter[float] = Counter()

    def worker() -> None:
        n = failed = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                conn = pymysql.connect(
                    host=target.host,
                    port=target.port,
                    user=APP_USER,
                    password=APP_PASSWORD,
                    database=APP_DATABASE,
                )
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                conn.close()
                n += 1
            except pymysql.MySQLError:
                failed += 1
            latencies[round((time.monotonic() - started) * 1000, 2)] += 1
        done.append(n)
        errors.append(failed)

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(done)
    rows = "\n".join(f"   {value} |* {count}" for value, count in sorted(latencies.items()))
    return (
        f"queries: {total} ({total / args.time:.2f} per sec.)\n"
        f"ignored errors: {sum(errors)}\n{rows}\n"
    )


def bulk(target: Target) -> str:
    """The mariadb CLI reads a 100 MB result to /dev/null; MB and MB/s as 'queries'."""
    argv = ["mariadb", "--no-defaults", "-h", target.host, "-P", str(target.port)]
    argv += [f"-u{APP_USER}", f"-p{APP_PASSWORD}", "--batch", "--skip-column-names"]
    argv += ["-e", BULK_SQL, APP_DATABASE]
    started = time.monotonic()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.monotonic() - started
    errors = 0 if proc.returncode == 0 else 1
    return f"queries: {BULK_MB:.0f} ({BULK_MB / seconds:.2f} per sec.)\nignored errors: {errors}\n"


def measure(workload: str, target: Target, args: argparse.Namespace, tally: Tally) -> float:
    before = cpu_seconds(target.pid) if target.pid else 0.0
    if workload == "connect":
        output = connect_per_request(target, args)
    elif workload == "bulk":
        output = bulk(target)
    else:
        output = sysbench(workload, target, "run", args, args.time)
    if target.pid:
        tally.cpu_seconds += cpu_seconds(target.pid) - before
        tally.rss_kib = max(tally.rss_kib, rss_kib(target.pid))
    queries = _QUERIES.search(output)
    if queries is None:
        raise SysbenchFailed(f"no 'queries: N (X per sec.)' line in sysbench's output:\n{output}")
    tally.queries += int(queries.group(1))
    tally.qps.append(float(queries.group(2)))
    for found in (_ERRORS.search(output), _RECONNECTS.search(output)):
        tally.errors += int(found.group(1)) if found else 0
    for value, count in _HISTOGRAM_ROW.findall(output):
        tally.latency_ms[float(value)] += int(count)
    return float(queries.group(2))


def start_relay(server: MariaDBServer) -> tuple[subprocess.Popen[bytes], Target]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.relay", f"--listen=127.0.0.1:{port}"]
    argv.append(f"--target={server.address}")
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not port_accepts("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("bench/relay.py did not start")
        time.sleep(0.05)
    return proc, Target("relay", "127.0.0.1", port, proc.pid)


def other_target(spec: str) -> Target:
    name, _, rest = spec.partition("=")
    address, _, pid = rest.partition("@")
    host, _, port = address.rpartition(":")
    if not name or not port.isdigit():
        raise SystemExit(f"scripts/bench: --other {spec!r}: want NAME=HOST:PORT[@PID]")
    return Target(name, host or "127.0.0.1", int(port), int(pid) if pid else None)


def report(results: dict[str, dict[str, Tally]], as_json: bool) -> None:
    rows = []
    for workload, tallies in results.items():
        direct = statistics.median(tallies["direct"].qps)
        relay = tallies.get("relay")
        relay_qps = statistics.median(relay.qps) if relay else None
        relay_cpu = relay.cpu_us_per_query if relay else None
        for name, t in tallies.items():
            qps = statistics.median(t.qps)
            cpu = t.cpu_us_per_query if t.cpu_seconds or name != "direct" else None
            rows.append(
                {
                    "workload": workload,
                    "target": name,
                    "qps": round(qps, 1),
                    "p50_ms": t.percentile(50),
                    "p95_ms": t.percentile(95),
                    "p99_ms": t.percentile(99),
                    "errors": t.errors,
                    "cpu_us_per_query": None if cpu is None else round(cpu, 1),
                    "rss_mib": round(t.rss_kib / 1024, 1) if t.rss_kib else None,
                    "x_direct": round(qps / direct, 2),
                    "x_relay_qps": round(qps / relay_qps, 2) if relay_qps else None,
                    "x_relay_cpu": round(cpu / relay_cpu, 2) if cpu and relay_cpu else None,
                    "rounds": [round(q, 1) for q in t.qps],
                    "raw": asdict(t) | {"latency_ms": None},
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return

    def cell(value: object, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = (
        f"{'workload':<19}{'target':<9}{'qps':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'err':>5}"
        f"{'CPU us/q':>10}{'RSS MiB':>9}{'x direct':>9}{'x relay qps':>12}{'x relay CPU':>12}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['workload']:<19}{r['target']:<9}{r['qps']:>9.0f}{r['p50_ms']:>7.2f}"
            f"{r['p95_ms']:>7.2f}{r['p99_ms']:>7.2f}{r['errors']:>5}"
            f"{cell(r['cpu_us_per_query'], '.1f'):>10}{cell(r['rss_mib'], '.1f'):>9}"
            f"{r['x_direct']:>9.2f}{cell(r['x_relay_qps'], '.2f'):>12}"
            f"{cell(r['x_relay_cpu'], '.2f'):>12}"
        )
    print(
        "(qps: the median round; p50/p95/p99: ms per sysbench event over all rounds, an event"
        " being one query for oltp_point_select and a 14-query read-only transaction for"
        " oltp_read_only; CPU: of the middle process)"
    )


def run(args: argparse.Namespace) -> int:
    pool_size = args.pool_size
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    say(
        f"sysbench {', '.join(args.workloads)}: {args.threads} threads, --db-ps-mode="
        f"{args.ps_mode}, {args.tables} tables x {args.table_size} rows, {args.rounds} rounds x "
        f"{args.time:g} s per target; proxyd: transaction pooling, max_size {pool_size}"
    )
    with MariaDBServer({"max_connections": 2 * args.threads + pool_size + 100}) as server:
        overrides = {
            "pool": {
                "mode": "transaction",
                "max_size": pool_size,
                "min_idle": min(args.threads, pool_size),
            },
            "log": {"level": "warning"},
        }
        relay_proc, relay = start_relay(server)
        try:
            with ProxydProcess(server, overrides) as proxy:
                targets = [
                    Target("direct", server.host, server.port, None),
                    relay,
                    Target("proxyd", proxy.host, proxy.port, proxy.pid),
                    *(other_target(spec) for spec in args.other),
                ]
                say("preparing tables ...")
                sysbench(WORKLOADS[0], targets[0], "prepare", args)
                results: dict[str, dict[str, Tally]] = {}
                for workload in args.workloads:
                    if args.warmup > 0 and workload not in OWN_WORKLOADS:
                        for target in targets:
                            sysbench(workload, target, "run", args, args.warmup)
                    tallies = results[workload] = {t.name: Tally() for t in targets}
                    for number in range(1, args.rounds + 1):
                        for target in targets:
                            qps = measure(workload, target, args, tallies[target.name])
                            say(f"  {workload} round {number} {target.name}: {qps:.0f} qps")
                if proxy.returncode is not None:
                    say(f"proxyd exited with {proxy.returncode}:\n{proxy.log_tail()}")
                    return 1
        finally:
            stop_process(relay_proc, signal.SIGTERM, 5)
    report(results, args.json)
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind the with-blocks: the server and proxyd are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS + OWN_WORKLOADS)}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per target (default 3)")
    parser.add_argument("--time", type=float, default=10, help="seconds per run (default 10)")
    parser.add_argument("--threads", type=int, default=16, help="sysbench threads (default 16)")
    parser.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    parser.add_argument("--table-size", type=int, default=10000, help="rows per table")
    parser.add_argument("--pool-size", type=int, default=32, help="proxyd pool.max_size")
    parser.add_argument("--ps-mode", default="disable", choices=("disable", "auto"))
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    parser.add_argument("--other", action="append", default=[], help="NAME=HOST:PORT[@PID]")
    parser.add_argument("--json", action="store_true", help="the table as JSON on stdout")
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    if min(args.rounds, args.threads, args.tables, args.table_size) < 1 or args.time <= 0:
        parser.error("--rounds, --time, --threads, --tables and --table-size must be positive")
    if shutil.which("sysbench") is None:
        print("scripts/bench: sysbench not found; run scripts/setup", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except SysbenchFailed as exc:
        print(f"scripts/bench: sysbench failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"scripts/bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; everything started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
