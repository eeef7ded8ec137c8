"""The counters and histograms the hot path updates, at the cost of a dict operation.

Counters are plain integers in a Counter; histograms (``Buckets``) keep plain counts per
bucket. Nothing is converted until Prometheus scrapes (proxyd/metrics.py reads them then),
so the pools, sessions and server connections that update them import this module and
nothing of the metrics endpoint.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["RECYCLE_REASONS", "Buckets", "Stats"]

ACQUIRE_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)

RECYCLE_REASONS = (
    "lifetime",
    "ping_failed",
    "killed",
    "server_closed",
    "surplus",
    "profile_swap",
    "drained",
)


class Buckets(Collector):
    """A histogram that costs one bisect and two additions per observation.

    prometheus-client's Histogram takes a lock and walks its buckets in Python on every
    observe(), once per statement here; this one keeps plain counts per bucket and makes
    them cumulative only when Prometheus scrapes.
    """

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative = list(itertools.accumulate(self.counts))
        labels = [*map(floatToGoString, self.bounds), "+Inf"]
        buckets = list(zip(labels, cumulative, strict=True))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self.sum
        )


class Stats:
    """The daemon's counters and histograms; see the module docstring."""

    def __init__(self) -> None:
        # The text format would add a *_created gauge per histogram: noise for Prometheus,
        # and proxyd_info/process_start_time_seconds already date the process.
        disable_created_metrics()
        self.counters: collections.Counter[str] = collections.Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        self.acquire_wait = Buckets(
            "proxyd_acquire_wait_seconds",
            "Time client commands waited for a backend connection",
            ACQUIRE_BUCKETS,
        )
        self.query_duration = Buckets(
            "proxyd_query_duration_seconds",
            "Time from forwarding a client command to the end of its answer",
            QUERY_BUCKETS,
        )
        self.registry.register(self.acquire_wait)
        self.registry.register(self.query_duration)
        ProcessCollector(registry=self.registry)

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe_acquire_wait(self, seconds: float) -> None:
        self.acquire_wait.observe(seconds)

    def observe_query(self, seconds: float) -> None:
        self.query_duration.observe(seconds)

    def recycled(self) -> dict[str, int]:
        """Backend connections closed by proxyd or the server, by reason."""
        counts = dict.fromkeys(RECYCLE_REASONS, 0)
        for name, value in self.counters.items():
            if name.startswith("recycled_"):
                counts[name.removeprefix("recycled_")] = value
        return counts
