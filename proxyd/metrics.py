"""Counters and histograms the rest of proxyd updates; the exporter reads them.

Counters are plain integers in a Counter (an increment on the hot path is one
dict operation); histograms are prometheus-client Histograms in a registry of
the daemon's own.
"""

from __future__ import annotations

import collections

from prometheus_client import CollectorRegistry, Histogram

ACQUIRE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


class Stats:
    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        self.acquire_wait = Histogram(
            "proxyd_acquire_wait_seconds",
            "Time client commands waited for a backend connection",
            buckets=ACQUIRE_BUCKETS,
            registry=self.registry,
        )
        self.query_duration = Histogram(
            "proxyd_query_duration_seconds",
            "Time from forwarding a client command to the end of its answer",
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe_acquire_wait(self, seconds: float) -> None:
        self.acquire_wait.observe(seconds)

    def observe_query(self, seconds: float) -> None:
        self.query_duration.observe(seconds)
