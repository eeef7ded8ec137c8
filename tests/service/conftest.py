"""Fixtures for running proxyd as a service: admin console, metrics, systemd notify socket.

- `service(overrides=None, backend=None)`: a proxyd with `admin` and `metrics` listening
  on free ports (admin/adminpw), as a `Service` with helpers for both.
- `notify_socket`: a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support.processes import free_port
from tests.support.proxy import Backend, ProxydProcess

ADMIN_USER = "admin"
ADMIN_PASSWORD = "adminpw"


class Service:
    """A running proxyd plus ways to reach its admin console and metrics endpoint."""

    def __init__(self, proc: ProxydProcess) -> None:
        self.proc = proc
        self.admin_port = int(proc.config["admin"]["listen"].rsplit(":", 1)[1])
        self.metrics_port = int(proc.config["metrics"]["listen"].rsplit(":", 1)[1])

    def admin(self, password: str = ADMIN_PASSWORD, **kw: Any) -> pymysql.Connection:
        params: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.admin_port,
            "user": ADMIN_USER,
            "password": password,
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        params.update(kw)
        return pymysql.connect(**params)

    def admin_query(self, sql: str) -> list[dict[str, Any]]:
        """Run one admin statement through PyMySQL; rows as dicts by column name."""
        with self.admin(cursorclass=pymysql.cursors.DictCursor) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def cli(self, sql: str, password: str = ADMIN_PASSWORD) -> subprocess.CompletedProcess[str]:
        """Run one statement through the `mariadb` command-line client (batch mode)."""
        return subprocess.run(
            [
                mariadb_cli(),
                "--no-defaults",
                "--protocol=TCP",
                "-h127.0.0.1",
                f"-P{self.admin_port}",
                f"-u{ADMIN_USER}",
                f"-p{password}",
                "--connect-timeout=5",
                "-e",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cli_rows(self, sql: str) -> list[dict[str, str]]:
        """`cli` output parsed: batch mode prints a tab-separated header, then the rows."""
        result = self.cli(sql)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]

    def http(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stat(self, name: str) -> int:
        rows = self.admin_query("SHOW STATS")
        return next(int(row["value"]) for row in rows if row["stat"] == name)


def mariadb_cli() -> str:
    found = shutil.which("mariadb") or shutil.which("mysql")
    if found is None:
        pytest.fail("no mariadb/mysql command-line client; run scripts/setup")
    return found


def service_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Admin and metrics on free ports; an `admin` or `metrics` override replaces the
    section whole (ProxydProcess deep-merges everything else into its defaults)."""
    config: dict[str, Any] = {
        "admin": {
            "listen": f"127.0.0.1:{free_port()}",
            "user": ADMIN_USER,
            "password": ADMIN_PASSWORD,
        },
        "metrics": {"listen": f"127.0.0.1:{free_port()}"},
        "shutdown_timeout": "10s",
    }
    config.update(overrides or {})
    return config


@pytest.fixture
def service(
    proxyd: Callable[..., ProxydProcess],
) -> Callable[..., Service]:
    def start(
        overrides: Mapping[str, Any] | None = None, backend: Backend | None = None
    ) -> Service:
        return Service(proxyd(service_config(overrides), backend))

    return start


class NotifySocket:
    """The receiving end of NOTIFY_SOCKET: one datagram per sd_notify message.

    Like systemd, it learns each sender's pid from SCM_CREDENTIALS, so a test can tell
    proxyd's messages from those of a mariadbd started with the same environment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.messages: list[tuple[int, dict[str, str]]] = []

    def receive(self, timeout: float, pid: int | None = None) -> dict[str, str] | None:
        """The next message (from `pid`, if given), or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except TimeoutError:
                return None
            sender = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = struct.unpack("iII", payload[:12])[0]
            text = data.decode()
            message = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
            self.messages.append((sender, message))
            if pid is None or sender == pid:
                return message
        return None

    def wait_for(
        self, key: str, value: str = "1", pid: int | None = None, timeout: float = 20.0
    ) -> dict[str, str]:
        """Read messages until one (from `pid`) sets `key`=`value`; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left, pid)
            if message is not None and message.get(key) == value:
                return message
        raise AssertionError(f"no {key}={value} within {timeout}s; got {self.messages!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """A bound datagram socket, exported as NOTIFY_SOCKET to the proxyd processes started."""
    # Under /tmp: AF_UNIX paths must fit in 108 bytes, pytest's tmp_path may not.
    folder = Path(tempfile.mkdtemp(prefix="proxyd-notify-"))
    receiver = NotifySocket(folder / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(receiver.path))
    yield receiver
    receiver.close()
    with contextlib.suppress(OSError):
        os.unlink(receiver.path)
    shutil.rmtree(folder, ignore_errors=True)
