"""Secrets stay secret (logs, SHOW CONFIG, metrics); logs say one line per backend burst."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pymysql

from tests.service.conftest import Service
from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port, wait_until

CLIENT_SECRET = "Cl13nt-s3cret-XYZ"
ADMIN_SECRET = "Adm1n-s3cret-XYZ"
BACKEND_SECRET = "apppw"  # what the test server's app account uses


def test_passwords_never_appear_in_logs_console_or_metrics(
    service: Callable[..., Service], tmp_path: Path
) -> None:
    secret_file = tmp_path / "admin.pw"
    secret_file.write_text(ADMIN_SECRET + "\n")
    secret_file.chmod(0o600)
    svc = service(
        {
            "users": [
                {"name": "app", "password": CLIENT_SECRET, "backend_password": BACKEND_SECRET}
            ],
            "admin": {
                "listen": f"127.0.0.1:{free_port()}",
                "user": "admin",
                "password_file": str(secret_file),
            },
            "log": {"level": "debug"},
        }
    )
    with svc.proc.connect(password=CLIENT_SECRET) as client, client.cursor() as cur:
        cur.execute("SELECT 1")
    try:
        svc.proc.connect(password="wrong-" + CLIENT_SECRET)
    except pymysql.err.OperationalError as exc:
        assert CLIENT_SECRET not in str(exc)
    with svc.admin(password=ADMIN_SECRET) as admin, admin.cursor() as cur:
        cur.execute("SHOW CONFIG")
        shown = repr(cur.fetchall())
        cur.execute("RELOAD")
    _, metrics = svc.http("/metrics")
    # A reload that changes passwords says so, without the values.
    svc.proc.config["users"][0]["password"] = "other-" + CLIENT_SECRET
    svc.proc.write_config()
    svc.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "users[app].password changed" in svc.proc.log_text(), 10)
    # A broken file is reported by line and column, never by quoting the line.
    text = svc.proc.config_path.read_text()
    svc.proc.config_path.write_text(text.replace(f"other-{CLIENT_SECRET}", f"'{CLIENT_SECRET}"))
    svc.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "reload rejected" in svc.proc.log_text(), 10)
    log = svc.proc.log_text()
    for text in (shown, metrics, log):
        for secret in (CLIENT_SECRET, ADMIN_SECRET, BACKEND_SECRET):
            assert secret not in text


def test_world_readable_config_with_passwords_is_warned_about(
    service: Callable[..., Service],
) -> None:
    svc = service()
    os.chmod(svc.proc.config_path, 0o644)
    svc.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "readable by other users" in svc.proc.log_text(), 10)


def test_one_log_line_per_burst_of_backend_recycling(
    service: Callable[..., Service], mariadb: MariaDBServer
) -> None:
    svc = service({"pool": {"min_idle": 5}})
    assert wait_until(lambda: mariadb.count_connections("app") == 5, 10)
    assert mariadb.kill_connections("app") == 5

    def lines() -> list[str]:
        return [line for line in svc.proc.log_text().splitlines() if "backends recycled:" in line]

    def recycled() -> int:
        # killed or server_closed, depending on whether the server's last words arrived.
        return sum(
            int(n)
            for line in lines()
            for _, n in re.findall(r"(\w+)=(\d+)", line.split("backends recycled:")[1])
        )

    assert wait_until(lambda: recycled() == 5, 5), lines()
    assert wait_until(lambda: mariadb.count_connections("app") == 5, 10)
    # The summary is written once a second: five KILLs make one line, or two when they
    # straddle a tick on a busy machine; never one line per connection.
    assert 1 <= len(lines()) <= 2, lines()
    assert all(" INFO " in line for line in lines())
