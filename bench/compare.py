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

Beside sysbench's workloads it has its own (see OWN_WORKLOADS): among them "latency", the
median a target adds to one client's point selects (bench/latency.py), and "idle", the
memory each of thousands of idle clients costs the middle process and a burst of them at
once (bench/idle.py), for issue 10's goals 2 and 4; ``--plot`` draws the results.

Run it with ``scripts/bench`` (``--help`` for the knobs); bench/README.md explains it.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql

from bench import idle, latency, plot
from bench.idle import IdleRound
from bench.procfs import cpu_seconds, rss_kib
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import LoginRefused
from tests.support.certs import CertificateAuthority
from tests.support.mariadb import APP_DATABASE, APP_PASSWORD, APP_USER, MariaDBServer
from tests.support.processes import free_port, port_accepts, stop_process
from tests.support.proxy import ProxydProcess

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("oltp_point_select", "oltp_read_only")
# Not sysbench's: "connect" (each thread: connect, SELECT 1, disconnect, again; its "qps"
# is connections per second), "bulk" (the mariadb CLI reads a 100 MB result; its "qps"
# is MB/s and its CPU figure is per MB), "latency" (one client, point selects back to back,
# each timed: the latency a proxy adds) and "idle" (thousands of idle clients on a small
# pool, then a burst of them at once: memory per client and errors). None is in the default
# set, which stays comparable with earlier runs; "idle" also needs a fresh middle process per
# run and some 20,000 file descriptors at 10,000 clients.
OWN_WORKLOADS = ("connect", "bulk", "latency", "idle")
BULK_SQL = "SELECT REPEAT('x', 1000) FROM seq_1_to_100000"
BULK_MB = 100_000 * 1001 / 1e6  # each row: 1000 bytes and a newline
_QUERIES = re.compile(r"queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)")
_ERRORS = re.compile(r"ignored errors:\s+(\d+)")
_RECONNECTS = re.compile(r"reconnects:\s+(\d+)")
_HISTOGRAM_ROW = re.compile(r"^\s*([\d.]+)\s+\|\**\s+(\d+)\s*$", re.M)


class SysbenchFailed(Exception):
    pass


class WorkloadFailed(Exception):
    """One of the bench's own workloads could not run at all (not: a query failed)."""


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
    error_kinds: Counter[str] = field(default_factory=Counter)  # own workloads: message -> count
    idle: list[IdleRound] = field(default_factory=list)  # the "idle" workload's rounds

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
    if args.tls_dir is not None:
        # sysbench 1.0 reads client-key.pem, client-cert.pem and cacert.pem from its cwd.
        argv.append("--mysql-ssl=on")
    argv.append(command)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
        cwd=args.tls_dir,
    )
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


def one_client(target: Target, args: argparse.Namespace, seconds: float) -> latency.LatencyRun:
    """The "latency" workload: one connection, point selects back to back, each timed."""
    try:
        return latency.run(
            target.host,
            target.port,
            APP_USER,
            APP_PASSWORD,
            APP_DATABASE,
            seconds,
            latency.point_selects(args.tables, args.table_size),
        )
    except (OSError, LoginRefused, ProtocolError) as exc:
        raise WorkloadFailed(f"latency: no connection through {target.name}: {exc}") from exc


def measure(workload: str, target: Target, args: argparse.Namespace, tally: Tally) -> float:
    before = cpu_seconds(target.pid) if target.pid else 0.0
    if workload == "latency":
        timed = one_client(target, args, args.time)
    elif workload == "connect":
        output = connect_per_request(target, args)
    elif workload == "bulk":
        output = bulk(target)
    else:
        output = sysbench(workload, target, "run", args, args.time)
    if target.pid:
        tally.cpu_seconds += cpu_seconds(target.pid) - before
        tally.rss_kib = max(tally.rss_kib, rss_kib(target.pid))
    if workload == "latency":
        qps = timed.queries / timed.seconds
        tally.queries += timed.queries
        tally.qps.append(qps)
        tally.errors += sum(timed.errors.values())
        tally.error_kinds.update(timed.errors)
        for us, count in timed.micros.items():
            tally.latency_ms[us / 1000] += count
        return qps
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


def idle_rounds(
    server: MariaDBServer,
    targets: list[Target],
    args: argparse.Namespace,
    say: Callable[..., None],
) -> dict[str, Tally]:
    """The "idle" workload, alternating like the others, each run on a fresh middle process."""
    tallies = {t.name: Tally() for t in targets}
    statements = latency.point_selects(args.tables, args.table_size)
    login = (APP_USER, APP_PASSWORD, APP_DATABASE)
    for number in range(1, args.rounds + 1):
        for target in targets:
            with fresh_middle(target, server, args) as middle:
                result, micros = idle.run(
                    (middle.host, middle.port),
                    login,
                    probe_of(middle.pid),
                    args.idle_clients,
                    args.idle_busy,
                    args.idle_bursts,
                    statements,
                )
            tally = tallies[target.name]
            tally.idle.append(result)
            tally.queries += result.busy_queries
            tally.qps.append(
                result.busy_queries / result.busy_seconds if result.busy_seconds else 0
            )
            tally.errors += result.error_count
            tally.error_kinds.update(result.errors)
            tally.cpu_seconds += result.cpu_busy_seconds
            tally.rss_kib = max(tally.rss_kib, result.rss_after_kib)
            for us, count in micros.items():
                tally.latency_ms[us / 1000] += count
            per_client = result.kib_per_client
            say(
                f"  idle round {number} {target.name}: {result.connected}/{result.clients}"
                f" clients in {result.connect_seconds:.1f} s"
                + ("" if per_client is None else f", {per_client:.1f} KiB RSS per client")
                + f", {result.busy_queries} busy queries, {result.error_count} errors"
            )
    return tallies


def probe_of(pid: int | None) -> idle.Probe:
    def probe() -> tuple[float, int]:
        return (cpu_seconds(pid), rss_kib(pid)) if pid else (0.0, 0)

    return probe


@contextmanager
def fresh_middle(
    target: Target, server: MariaDBServer, args: argparse.Namespace
) -> Iterator[Target]:
    """A new relay or proxyd for one run of "idle": its "before" RSS must be that of a
    process that never held thousands of clients (freed memory stays with the process).
    proxyd gets a pool of --idle-pool-size, filled from the start, and room for the clients."""
    if target.name == "relay":
        proc, relay = start_relay(server)
        try:
            yield relay
        finally:
            stop_process(proc, signal.SIGTERM, 5)
    elif target.name == "proxyd":
        overrides = {
            "pool": {
                "mode": "transaction",
                "max_size": args.idle_pool_size,
                "min_idle": args.idle_pool_size,
            },
            "max_client_connections": args.idle_clients + 100,
            "log": {"level": "warning"},
        }
        with ProxydProcess(server, overrides) as proxy:
            yield Target("proxyd", proxy.host, proxy.port, proxy.pid)
            if proxy.returncode is not None:
                raise WorkloadFailed(
                    f"proxyd exited with {proxy.returncode} during idle:\n{proxy.log_tail()}"
                )
    else:
        yield target  # direct, or another proxy as it runs


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the server, proxyd and the relay) towards `wanted`;
    the hard limit too where allowed (root). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


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


def report(results: dict[str, dict[str, Tally]], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for workload, tallies in results.items():
        direct = statistics.median(tallies["direct"].qps)
        relay = tallies.get("relay")
        relay_qps = statistics.median(relay.qps) if relay else None
        relay_cpu = relay.cpu_us_per_query if relay else None
        for name, t in tallies.items():
            qps = statistics.median(t.qps)
            cpu = t.cpu_us_per_query if t.cpu_seconds or name != "direct" else None
            row: dict[str, Any] = {
                "workload": workload,
                "target": name,
                "qps": round(qps, 1),
                "p50_ms": t.percentile(50),
                "p95_ms": t.percentile(95),
                "p99_ms": t.percentile(99),
                "errors": t.errors,
                "cpu_us_per_query": None if cpu is None else round(cpu, 1),
                "rss_mib": round(t.rss_kib / 1024, 1) if t.rss_kib else None,
                "x_direct": round(qps / direct, 2) if direct else None,
                "x_relay_qps": round(qps / relay_qps, 2) if relay_qps else None,
                "x_relay_cpu": round(cpu / relay_cpu, 2) if cpu and relay_cpu else None,
                "rounds": [round(q, 1) for q in t.qps],
            }
            if workload == "latency":
                row |= latency_figures(t, tallies["direct"])
            if workload == "idle":
                row |= idle_figures(t)
            if t.error_kinds:
                row["error_kinds"] = dict(t.error_kinds.most_common())
            row["raw"] = asdict(t) | {"latency_ms": None, "error_kinds": None}
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
        if "latency" in results:
            print_latency([r for r in rows if r["workload"] == "latency"])
        if "idle" in results:
            print_idle([r for r in rows if r["workload"] == "idle"], args)
    return rows


def latency_figures(t: Tally, direct: Tally) -> dict[str, Any]:
    """p50/p99 in us, and what the target adds to direct's (1 us resolution)."""
    p50, p99 = t.percentile(50) * 1000, t.percentile(99) * 1000
    return {
        "p50_us": round(p50, 1),
        "p99_us": round(p99, 1),
        "added_p50_us": round(p50 - direct.percentile(50) * 1000, 1),
        "added_p99_us": round(p99 - direct.percentile(99) * 1000, 1),
    }


def idle_figures(t: Tally) -> dict[str, Any]:
    rounds = t.idle
    connected = sum(r.connected for r in rounds)
    connect_seconds = sum(r.connect_seconds for r in rounds)
    per_client = [kib for r in rounds if (kib := r.kib_per_client) is not None]
    measured = [r for r in rounds if r.rss_after_kib]  # the middle process was seen
    return {
        "clients": rounds[0].clients,
        "connected_min": min(r.connected for r in rounds),
        "connects_per_sec": round(connected / connect_seconds, 1) if connect_seconds else None,
        "kib_per_client": round(statistics.median(per_client), 2) if per_client else None,
        "kib_per_client_rounds": [round(kib, 2) for kib in per_client],
        "rss_before_mib": round(max(r.rss_before_kib for r in measured) / 1024, 1)
        if measured
        else None,
        "rss_idle_mib": round(max(r.rss_after_kib for r in measured) / 1024, 1)
        if measured
        else None,
        "cpu_us_per_login": round(
            sum(r.cpu_connect_seconds for r in measured)
            / max(1, sum(r.connected for r in measured))
            * 1e6,
            1,
        )
        if measured
        else None,
        "busy": rounds[0].busy,
        "lost_while_idle": sum(r.lost_while_idle for r in rounds),
    }


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'workload':<19}{'target':<9}{'qps':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'err':>5}"
        f"{'CPU us/q':>10}{'RSS MiB':>9}{'x direct':>9}{'x relay qps':>12}{'x relay CPU':>12}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['workload']:<19}{r['target']:<9}{r['qps']:>9.0f}{r['p50_ms']:>7.2f}"
            f"{r['p95_ms']:>7.2f}{r['p99_ms']:>7.2f}{r['errors']:>5}"
            f"{_cell(r['cpu_us_per_query'], '.1f'):>10}{_cell(r['rss_mib'], '.1f'):>9}"
            f"{_cell(r['x_direct'], '.2f'):>9}{_cell(r['x_relay_qps'], '.2f'):>12}"
            f"{_cell(r['x_relay_cpu'], '.2f'):>12}"
        )
    print(
        "(qps: the median round; p50/p95/p99: ms per sysbench event over all rounds, an event"
        " being one query for oltp_point_select and a 14-query read-only transaction for"
        " oltp_read_only; CPU: of the middle process; latency: one client; idle: its bursts)"
    )


def print_latency(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'latency, 1 client':<19}{'target':<9}{'qps':>9}{'p50 us':>9}{'p99 us':>9}"
        f"{'+p50 us':>9}{'+p99 us':>9}{'err':>5}{'CPU us/q':>10}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{'point selects':<19}{r['target']:<9}{r['qps']:>9.0f}{r['p50_us']:>9.1f}"
            f"{r['p99_us']:>9.1f}{r['added_p50_us']:>9.1f}{r['added_p99_us']:>9.1f}"
            f"{r['errors']:>5}{_cell(r['cpu_us_per_query'], '.1f'):>10}"
        )
    print(
        "(one connection, one query at a time, each timed by the client, over all rounds;"
        " +p50/+p99: added over direct. Issue 10, goal 2: proxyd's +p50 <= 50 us)"
    )
    _print_errors(rows)


def print_idle(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    head = (
        f"{'idle':<19}{'target':<9}{'clients':>8}{'login/s':>9}{'CPU us/login':>13}"
        f"{'RSS MiB':>9}{'idle MiB':>9}{'KiB/client':>11}{'burst qps':>10}{'p50':>7}{'p99':>7}"
        f"{'err':>5}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{str(r['clients']) + ' on pool ' + str(args.idle_pool_size):<19}{r['target']:<9}"
            f"{r['connected_min']:>8}"
            f"{_cell(r['connects_per_sec'], '.0f'):>9}{_cell(r['cpu_us_per_login'], '.1f'):>13}"
            f"{_cell(r['rss_before_mib'], '.1f'):>9}{_cell(r['rss_idle_mib'], '.1f'):>9}"
            f"{_cell(r['kib_per_client'], '.2f'):>11}{r['qps']:>10.0f}{r['p50_ms']:>7.2f}"
            f"{r['p99_ms']:>7.2f}{r['errors']:>5}"
        )
    print(
        f"({args.idle_clients} clients log in and sit idle; RSS MiB: of the middle process before"
        " they came, idle MiB: with all of them idle; KiB/client: the difference per client,"
        f" median round; then {args.idle_busy} of them at once send a point select,"
        f" {args.idle_bursts} times: burst qps, p50/p99 ms of those queries. err: failed logins,"
        " queries and pings after idling. Issue 10, goal 4: proxyd <= 10 KiB per client, 0 err)"
    )
    _print_errors(rows)


def _print_errors(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        for message, count in list(r.get("error_kinds", {}).items())[:5]:
            print(f"  {r['target']}: {count} x {message}")


def run(args: argparse.Namespace) -> int:
    pool_size = args.pool_size
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    threaded = [w for w in args.workloads if w not in ("latency", "idle")]
    if threaded:
        say(
            f"sysbench {', '.join(threaded)}: {args.threads} threads, --db-ps-mode="
            f"{args.ps_mode}, {args.tables} tables x {args.table_size} rows, {args.rounds} rounds"
            f" x {args.time:g} s per target; proxyd: transaction pooling, max_size {pool_size}"
        )
    if "latency" in args.workloads:
        say(
            f"latency: 1 client, point selects one at a time, {args.rounds} rounds x"
            f" {args.time:g} s per target"
        )
    max_connections = 2 * args.threads + pool_size + 100
    if "idle" in args.workloads:
        say(
            f"idle: {args.idle_clients} clients (proxyd: pool of {args.idle_pool_size}), then"
            f" {args.idle_busy} at once x {args.idle_bursts}; {args.rounds} rounds, a fresh relay"
            f" and proxyd for each; RLIMIT_NOFILE {args.fd_limit}"
        )
        if args.fd_limit < 2 * args.idle_clients + 100:
            say(
                f"  the relay needs two file descriptors per client: with RLIMIT_NOFILE"
                f" {args.fd_limit}, expect relay errors above {args.fd_limit // 2 - 50} clients"
            )
        # direct and the relay each bring every client to the server; the margin covers
        # the previous run's connections that the server is still tearing down.
        max_connections += 2 * args.idle_clients + args.idle_pool_size
    server_options: dict[str, object] = {"max_connections": max_connections}
    overrides: dict[str, Any] = {}
    if args.tls:
        args.tls_dir = tls_files(server_options, overrides, args.backend_tls)
        say(
            f"TLS: sysbench to every target; proxyd's backend.tls.mode {args.backend_tls}"
            " (the relay passes sysbench's TLS through to the server)"
        )
    with MariaDBServer(server_options) as server:
        if "idle" in args.workloads:
            granted = int(server.execute("SELECT @@max_connections")[0][0])
            if granted < max_connections:
                say(f"  MariaDB lowered max_connections to {granted} (open files limit)")
        if args.users_from_server:
            server.execute("CREATE USER IF NOT EXISTS 'lookup'@'%' IDENTIFIED BY 'lookuppw'")
            server.execute("GRANT SELECT ON mysql.user TO 'lookup'@'%'")
            overrides["users"] = []
            overrides["users_from_server"] = {"user": "lookup", "password": "lookuppw"}
            say(
                "proxyd: no users listed; the app account is read from the server"
                " (users_from_server)"
            )
        overrides |= {
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
                    if workload == "idle":
                        results[workload] = idle_rounds(server, targets, args, say)
                        continue
                    if args.warmup > 0 and workload == "latency":
                        for target in targets:
                            one_client(target, args, args.warmup)
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
    rows = report(results, args)
    if args.plot:
        why_not = plot.write(rows, args.plot)
        say(f"scripts/bench: no plot: {why_not}" if why_not else f"plot written to {args.plot}")
    return 0


def tls_files(server_options: dict[str, object], overrides: dict[str, Any], backend: str) -> str:
    """Certificates for a --tls run: the server's and proxyd's (from one CA), and the files
    sysbench looks for in its working directory. Returns that directory."""
    folder = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    ca = CertificateAuthority(folder / "ca")
    server = ca.issue("mariadb")
    proxyd = ca.issue("proxyd")
    client = ca.issue("client", ("sysbench",), client=True)
    server_options.update(ssl_cert=server.cert, ssl_key=server.key, ssl_ca=ca.path)
    overrides["tls"] = {"cert": str(proxyd.cert), "key": str(proxyd.key)}
    overrides["backend"] = {"tls": {"mode": backend}}
    shutil.copy(client.key, folder / "client-key.pem")
    shutil.copy(client.cert, folder / "client-cert.pem")
    shutil.copy(ca.path, folder / "cacert.pem")
    return str(folder)


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
    parser.add_argument(
        "--tls",
        action="store_true",
        help="sysbench connects to every target with TLS (the server gets certificates)",
    )
    parser.add_argument(
        "--backend-tls",
        default="preferred",
        choices=("disabled", "preferred"),
        help="with --tls: proxyd's backend.tls.mode (disabled: TLS on the client side only)",
    )
    parser.add_argument(
        "--users-from-server",
        action="store_true",
        help="proxyd lists no users: it reads the app account from the server's mysql.user",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="bar charts of the results (needs matplotlib)"
    )
    idle_knobs = parser.add_argument_group("the idle workload")
    idle_knobs.add_argument(
        "--idle-clients", type=int, default=10000, help="idle client connections (default 10000)"
    )
    idle_knobs.add_argument(
        "--idle-busy", type=int, default=500, help="of them, how many query at once (default 500)"
    )
    idle_knobs.add_argument(
        "--idle-bursts", type=int, default=5, help="how many such bursts (default 5)"
    )
    idle_knobs.add_argument(
        "--idle-pool-size", type=int, default=20, help="proxyd pool.max_size (default 20)"
    )
    args = parser.parse_args(argv)
    args.tls_dir = None
    args.workloads = [w for w in args.workloads.split(",") if w]
    if min(args.rounds, args.threads, args.tables, args.table_size) < 1 or args.time <= 0:
        parser.error("--rounds, --time, --threads, --tables and --table-size must be positive")
    if min(args.idle_clients, args.idle_busy, args.idle_bursts, args.idle_pool_size) < 1:
        parser.error("--idle-clients, --idle-busy, --idle-bursts, --idle-pool-size: positive")
    # Raised here, before anything starts: MariaDB, proxyd and the relay inherit it.
    args.fd_limit = raise_fd_limit(2 * args.idle_clients + 1024) if "idle" in args.workloads else 0
    if shutil.which("sysbench") is None:
        print("scripts/bench: sysbench not found; run scripts/setup", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except SysbenchFailed as exc:
        print(f"scripts/bench: sysbench failed: {exc}", file=sys.stderr)
        return 1
    except WorkloadFailed as exc:
        print(f"scripts/bench: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"scripts/bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; everything started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
