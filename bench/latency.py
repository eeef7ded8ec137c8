"""One client, one connection, point selects back to back: the time of each, in ns.

Issue 10's goal 2 is about the latency a proxy adds to a single client that is never
queued: the median over direct must grow by at most 50 us. sysbench's histogram has
buckets too coarse for that, so this loop times each query itself (``perf_counter_ns``
around send and read-to-the-end) over a blocking socket, with the statements framed
beforehand: what remains of the client's own work per query is the same for every target.
"""

from __future__ import annotations

import gc
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.wire import Connection, QueryFailed, com_query

_STATEMENTS = 1000  # distinct framed point selects, cycled


@dataclass
class LatencyRun:
    queries: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    micros: Counter[int] = field(default_factory=Counter)  # per-query latency, us -> count


def point_selects(tables: int, table_size: int, seed: int = 1) -> list[bytes]:
    """sysbench oltp_point_select's statement, as framed COM_QUERY packets."""
    rng = random.Random(seed)
    return [
        com_query(
            f"SELECT c FROM sbtest{rng.randint(1, tables)} WHERE id={rng.randint(1, table_size)}"
        )
        for _ in range(_STATEMENTS)
    ]


def run(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    seconds: float,
    statements: list[bytes],
) -> LatencyRun:
    result = LatencyRun()
    samples: list[int] = []
    conn = Connection.open(host, port, user, password, database)
    clock = time.perf_counter_ns
    started = clock()
    stop = started + int(seconds * 1e9)
    # A collection in the middle of a query would land in one target's samples only.
    gc.disable()
    try:
        i = 0
        while True:
            before = clock()
            if before >= stop:
                break
            try:
                conn.send_query(statements[i % len(statements)])
            except QueryFailed as exc:
                result.errors[str(exc)] += 1
            except OSError as exc:
                result.errors[f"connection lost: {exc}"] += 1
                conn.close()
                conn = Connection.open(host, port, user, password, database)
                continue
            samples.append(clock() - before)
            i += 1
    finally:
        gc.enable()
        conn.close()
    result.seconds = (clock() - started) / 1e9
    result.queries = len(samples)
    result.micros = Counter(round(ns / 1000) for ns in samples)
    return result
