"""Prometheus metrics, /healthz and /readyz on metrics.listen."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable

import pymysql
import pytest

from tests.service.conftest import Service
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until

REQUIRED = (
    "proxyd_client_connections",
    "proxyd_backend_connections",
    "proxyd_queries_total",
    "proxyd_retries_total",
    "proxyd_backend_errors_hidden_total",
    "proxyd_backend_recycled_total",
    "proxyd_pings_total",
    "proxyd_acquire_wait_seconds",
    "proxyd_query_duration_seconds",
)


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample, e.g. sample(text, "proxyd_backend_connections", 'state="idle"')."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"no sample {name}{{{labels}}} in:\n{text}"
    return float(match.group(1))


def test_metrics_pass_promtool_check(service: Callable[..., Service]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed; run scripts/setup (Debian package prometheus)")
    svc = service()
    with svc.proc.connect() as client, client.cursor() as cur:
        for _ in range(3):
            cur.execute("SELECT 1")
    status, text = svc.http("/metrics")
    assert status == 200
    for name in REQUIRED:
        assert f"# TYPE {name} " in text, name
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    # promtool prints lint problems and exits non-zero for any of them.
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


def test_metrics_follow_traffic_and_live_state(service: Callable[..., Service]) -> None:
    svc = service({"pool": {"min_idle": 2}})
    # start() probed the port with a bare TCP connection; wait for proxyd to notice it left.
    assert wait_until(lambda: sample(svc.http("/metrics")[1], "proxyd_client_connections") == 0, 5)
    _, before = svc.http("/metrics")
    assert sample(before, "proxyd_backend_connections", 'state="idle"') == 2
    for reason in ("lifetime", "ping_failed", "killed", "server_closed"):
        assert sample(before, "proxyd_backend_recycled_total", f'reason="{reason}"') == 0
    client = svc.proc.connect()
    queries = sample(svc.http("/metrics")[1], "proxyd_queries_total")  # the driver's own
    with client.cursor() as cur:
        for _ in range(5):
            cur.execute("SELECT 1")
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    _, after = svc.http("/metrics")
    assert sample(after, "proxyd_client_connections") == 1
    assert sample(after, "proxyd_backend_connections", 'state="active"') == 1
    assert sample(after, "proxyd_queries_total") - queries == 7
    assert sample(after, "proxyd_query_duration_seconds_count") >= 7
    client.close()


def test_metrics_never_show_passwords(service: Callable[..., Service]) -> None:
    svc = service()
    _, text = svc.http("/metrics")
    assert "adminpw" not in text and "apppw" not in text


def test_healthz_follows_the_backend(
    service: Callable[..., Service], fresh_mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"min_idle": 1}}, backend=fresh_mariadb)
    assert svc.http("/healthz")[0] == 200
    fresh_mariadb.stop()
    # The janitor replaces the closed idle backend, fails, and the server counts as down.
    assert wait_until(lambda: svc.http("/healthz")[0] == 503, 15)
    assert "unreachable" in svc.http("/healthz")[1]
    assert svc.http("/readyz")[0] == 503
    fresh_mariadb.start()
    assert wait_until(lambda: svc.http("/healthz")[0] == 200, 20)
    assert wait_until(lambda: svc.http("/readyz")[0] == 200, 10)


def test_readyz_reflects_pause(service: Callable[..., Service]) -> None:
    svc = service()
    assert svc.http("/readyz") == (200, "ready\n")
    svc.admin_query("PAUSE")
    assert svc.http("/readyz") == (503, "paused\n")
    _, text = svc.http("/metrics")
    assert sample(text, "proxyd_paused") == 1
    svc.admin_query("RESUME")
    assert wait_until(lambda: svc.http("/readyz")[0] == 200, 10)


def test_other_paths_and_methods(service: Callable[..., Service]) -> None:
    svc = service()
    assert svc.http("/nope")[0] == 404
    assert svc.http("/metrics?name[]=x")[0] == 200


def test_lost_locks_and_temporary_tables_are_named_counted_and_shown(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"min_idle": 0}})
    client = svc.proc.connect()
    with client.cursor() as cur:
        cur.execute("SELECT GET_LOCK('job_7', 0)")
        assert cur.fetchone() == (1,)
        cur.execute("CREATE TEMPORARY TABLE scratch (a INT)")
        cur.execute("SELECT @@pseudo_thread_id")
        row = cur.fetchone()
        assert row is not None
    mariadb.execute(f"KILL CONNECTION {row[0]}")
    assert wait_until(lambda: row[0] not in mariadb.connection_ids("app"), timeout=5)
    assert wait_until(lambda: svc.stat("session_state_lost") == 1, timeout=5)
    with pytest.raises(pymysql.err.OperationalError) as info, client.cursor() as cur:
        cur.execute("INSERT INTO scratch VALUES (1)")
    code, message = info.value.args
    assert code == 1105, info.value.args
    assert "lock 'job_7'" in message and "temporary table scratch" in message, message
    assert "not run" in message, message
    # Gone on the server too: another connection takes the lock; this one goes on.
    assert mariadb.execute("SELECT GET_LOCK('job_7', 0)")[0][0] == 1
    with client.cursor() as cur:
        cur.execute("SELECT 7")
        assert cur.fetchone() == (7,)
    assert sample(svc.http("/metrics")[1], "proxyd_session_state_lost_total") == 1
    client.close()
