"""Counters and histograms the rest of proxyd updates, and the HTTP endpoint that shows them.

Counters are plain integers in a Counter (an increment on the hot path is one dict
operation); histograms are prometheus-client Histograms in a registry of the daemon's own.
Nothing is converted until Prometheus asks: at scrape time ``DaemonCollector`` turns the
counters and the daemon's live state (sessions, pools, server) into metric families.

``MetricsHTTP`` is a tiny asyncio HTTP/1.x handler on ``metrics.listen``, one request per
connection, serving

  /metrics  the Prometheus text format (``prometheus_client.generate_latest``)
  /healthz  200 while the backend server is reachable, else 503
  /readyz   200 once the pools are warm and while proxyd is neither PAUSEd nor stopping
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from proxyd import __version__
from proxyd.registry import PoolSummary
from proxyd.session.record import OUTCOMES as REPLAY_OUTCOMES
from proxyd.stats import RECYCLE_REASONS, Stats

__all__ = ["COUNTERS", "RECYCLE_REASONS", "DaemonCollector", "MetricsHTTP", "Stats"]

log = logging.getLogger("proxyd.metrics")

# Stats counter -> (metric name, help). Every one is exported, zero or not, so that
# rate() works from the first scrape.
COUNTERS: dict[str, tuple[str, str]] = {
    "commands": ("proxyd_commands_total", "Commands received from clients"),
    "queries": ("proxyd_queries_total", "COM_QUERY statements received from clients"),
    "transactions": ("proxyd_transactions_total", "Client transactions ended (commit or rollback)"),
    "bytes_received": ("proxyd_client_received_bytes_total", "Bytes received from clients"),
    "bytes_sent": ("proxyd_client_sent_bytes_total", "Bytes sent to clients"),
    "retries": (
        "proxyd_retries_total",
        "Read-only commands re-run on another backend after theirs was lost",
    ),
    "errors_hidden": (
        "proxyd_backend_errors_hidden_total",
        "Backend failures proxyd absorbed without the client seeing an error",
    ),
    "session_state_lost": (
        "proxyd_session_state_lost_total",
        "Client sessions told that a transaction or state held on a lost server connection"
        " (locks, temporary tables, user variables...) is gone",
    ),
    "errors_passed_on": (
        "proxyd_backend_errors_passed_on_total",
        "Backend failures that reached a client as an error",
    ),
    "pings": ("proxyd_pings_total", "Pings of idle backend connections that succeeded"),
    "pings_failed": ("proxyd_pings_failed_total", "Pings of idle backend connections that failed"),
    "resets": ("proxyd_backend_resets_total", "Backend sessions reset before reuse"),
    "server_protocol_errors": (
        "proxyd_backend_protocol_errors_total",
        "Server answers proxyd could not follow (the connection was closed, the client told)",
    ),
    "statements_stopped": (
        "proxyd_backend_statements_stopped_total",
        "Statements stopped with KILL QUERY because their client went away",
    ),
    "backend_connects": ("proxyd_backend_connects_total", "Backend connections opened"),
    "backend_connect_errors": (
        "proxyd_backend_connect_errors_total",
        "Attempts to open a backend connection that failed",
    ),
    "acquire_timeouts": (
        "proxyd_acquire_timeouts_total",
        "Commands that got no backend connection within acquire_timeout",
    ),
    "auth_failures": ("proxyd_client_auth_failures_total", "Client logins refused"),
    "clients_refused": (
        "proxyd_clients_refused_total",
        "Client connections refused by max_client_connections",
    ),
    "logins_delayed": (
        "proxyd_client_logins_delayed_total",
        "Client logins answered late because their address failed to log in before",
    ),
    "logins_refused": (
        "proxyd_client_logins_refused_total",
        "Client connections refused by auth.max_logins_in_progress",
    ),
    "client_tls_errors": (
        "proxyd_client_tls_errors_total",
        "Client TLS handshakes or records that failed (the client was closed)",
    ),
    "client_protocol_errors": (
        "proxyd_client_protocol_errors_total",
        "Client connections closed for a protocol violation",
    ),
    "reloads": ("proxyd_config_reloads_total", "Configuration reloads applied"),
    "reload_failures": (
        "proxyd_config_reload_failures_total",
        "Configuration reloads rejected (the running configuration stayed)",
    ),
    "reads_on_replicas": (
        "proxyd_reads_on_replicas_total",
        "Autocommit reads sent to a replica (backend.reads: replicas)",
    ),
    "reads_no_replica": (
        "proxyd_reads_no_replica_total",
        "Reads that could have gone to a replica but ran on the primary: no replica"
        " qualified (up, lag under max_replica_lag) or had room",
    ),
    "read_your_writes_waits": (
        "proxyd_read_your_writes_waits_total",
        "Reads that waited on a replica for the client's last write (read_your_writes)",
    ),
    "read_your_writes_on_primary": (
        "proxyd_read_your_writes_on_primary_total",
        "Reads sent to the primary because the replica had not applied the client's last"
        " write within read_your_writes_timeout",
    ),
}


# Always exported; other recycled_<reason> counters appear once they happen.
class ServerHealth(Protocol):
    up: bool
    last_error: str
    role: str  # with several servers: primary, replica or down ("" with one)
    lag: float | None  # a replica's Seconds_Behind_Master, when known

    @property
    def config(self) -> Any: ...

    @property
    def threads(self) -> Any: ...  # proxyd's connections to it (ThreadBook)


class Observed(Protocol):
    """What the metrics read of the running daemon, which passes itself."""

    stats: Stats

    @property
    def server(self) -> ServerHealth: ...

    @property
    def servers(self) -> Sequence[ServerHealth]: ...

    @property
    def sessions(self) -> Collection[object]: ...

    @property
    def paused(self) -> bool: ...

    def readiness(self) -> tuple[bool, str]: ...

    def pool_summaries(self) -> list[PoolSummary]: ...

    def login_state(self) -> tuple[int, int]: ...


class DaemonCollector:
    """Reads the daemon's counters and live state when Prometheus scrapes."""

    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon

    def describe(self) -> list[Metric]:
        # Nothing to check for clashes at registration (and the daemon is not running yet).
        return []

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        counters = daemon.stats.counters

        info = GaugeMetricFamily("proxyd_info", "proxyd version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

        pools = daemon.pool_summaries()
        clients = GaugeMetricFamily(
            "proxyd_client_connections", "Client connections open (logged in or logging in)"
        )
        clients.add_metric([], len(daemon.sessions))
        yield clients

        waiting = GaugeMetricFamily(
            "proxyd_client_connections_waiting", "Clients waiting for a backend connection"
        )
        waiting.add_metric([], sum(p.clients_waiting for p in pools))
        yield waiting

        backends = GaugeMetricFamily(
            "proxyd_backend_connections", "Backend connections by state", labels=["state"]
        )
        backends.add_metric(["active"], sum(p.backends_active for p in pools))
        backends.add_metric(["idle"], sum(p.backends_idle for p in pools))
        backends.add_metric(["connecting"], sum(p.backends_connecting for p in pools))
        yield backends

        up = GaugeMetricFamily(
            "proxyd_backend_up", "1 while the backend server accepted proxyd's last connection"
        )
        up.add_metric([], 1 if daemon.server.up else 0)
        yield up

        each = GaugeMetricFamily(
            "proxyd_server_up",
            "Per server of backend.servers: 1 while it answers proxyd (its role as a label:"
            " primary, replica, down; empty with one server)",
            labels=["address", "role"],
        )
        for server in daemon.servers:
            alive = server.role != "down" if server.role else server.up
            each.add_metric([str(server.config.address), server.role], 1 if alive else 0)
        yield each

        lag = GaugeMetricFamily(
            "proxyd_server_replication_lag_seconds",
            "Per replica: Seconds_Behind_Master as the monitor last read it (absent while"
            " unknown: replication stopped, or not readable)",
            labels=["address"],
        )
        for server in daemon.servers:
            if server.lag is not None:
                lag.add_metric([str(server.config.address)], server.lag)
        yield lag

        replays = CounterMetricFamily(
            "proxyd_transaction_replays",
            "Transactions whose server connection was lost, by what became of them: replayed"
            " (the client saw nothing), mismatch (the replay answered differently: 1213),"
            " too_large, not_replayable, commit_in_flight (the in-doubt ERR)",
            labels=["outcome"],
        )
        for outcome in REPLAY_OUTCOMES:
            replays.add_metric([outcome], daemon.stats.counters[f"transaction_replays_{outcome}"])
        yield replays

        conns = GaugeMetricFamily(
            "proxyd_server_connections",
            "Per server: proxyd's open connections to it (all pools, and the monitor's)",
            labels=["address"],
        )
        for server in daemon.servers:
            conns.add_metric([str(server.config.address)], len(server.threads.open))
        yield conns

        logging_in, slowed = daemon.login_state()
        logins = GaugeMetricFamily(
            "proxyd_client_logins_in_progress", "Client connections not logged in yet"
        )
        logins.add_metric([], logging_in)
        yield logins
        guarded = GaugeMetricFamily(
            "proxyd_client_addresses_slowed",
            "Client addresses whose logins are answered late after failed ones",
        )
        guarded.add_metric([], slowed)
        yield guarded

        paused = GaugeMetricFamily("proxyd_paused", "1 while the admin console has PAUSEd proxyd")
        paused.add_metric([], 1 if daemon.paused else 0)
        yield paused

        for key, (name, text) in COUNTERS.items():
            yield CounterMetricFamily(name, text, value=counters[key])

        recycled = CounterMetricFamily(
            "proxyd_backend_recycled_total",
            "Backend connections closed and replaced, by reason",
            labels=["reason"],
        )
        for reason, value in sorted(daemon.stats.recycled().items()):
            recycled.add_metric([reason], value)
        yield recycled


# -- HTTP ----------------------------------------------------------------------------------

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"


class MetricsHTTP(asyncio.Protocol):
    """One HTTP connection on metrics.listen: read one request, answer it, close."""

    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._timer is None:
            return  # answered already
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_REQUEST_HEAD:
                self._respond(431, b"request head too large\n")
            return
        request_line = bytes(self._buffer[: self._buffer.find(b"\r\n")])
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._respond(400, b"bad request\n")
            return
        method, target = parts[0], parts[1]
        if method not in (b"GET", b"HEAD"):
            self._respond(405, b"only GET and HEAD\n", extra=[("Allow", "GET, HEAD")])
            return
        path = target.split(b"?", 1)[0]
        try:
            status, content_type, body = self._route(path)
        except Exception:  # a scrape must never take the daemon down
            log.exception("metrics: error answering %s", path.decode(errors="replace"))
            status, content_type, body = 500, _TEXT, b"internal error\n"
        self._respond(status, body, content_type, head_only=method == b"HEAD")

    def _route(self, path: bytes) -> tuple[int, str, bytes]:
        daemon = self.daemon
        if path == b"/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(daemon.stats.registry)
        if path == b"/healthz":
            if daemon.server.up:
                return 200, _TEXT, b"ok: backend reachable\n"
            reason = daemon.server.last_error or "no connection yet"
            return 503, _TEXT, f"backend unreachable: {reason}\n".encode()
        if path == b"/readyz":
            ready, reason = daemon.readiness()
            return (200 if ready else 503), _TEXT, f"{reason}\n".encode()
        if path == b"/":
            return 200, _TEXT, b"proxyd: /metrics /healthz /readyz\n"
        return 404, _TEXT, b"not found\n"

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str = _TEXT,
        *,
        head_only: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *(extra or []),
        ]
        head = f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers
        )
        transport.write(head.encode("latin-1") + b"\r\n" + (b"" if head_only else body))
        transport.close()

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.close()
