"""A real proxyd process for tests: `python -m proxyd --config <file>` on a free port.

The config written follows proxyd's config contract (README / proxyd/config.py); a test
passes only what it cares about as overrides, deep-merged into `default_config()`.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pymysql
import pymysql.cursors
import yaml

from tests.support.processes import (
    close_at_exit,
    forget_at_exit,
    free_port,
    log_tail,
    port_accepts,
    spawn,
    stop_process,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


class HasAddress(Protocol):
    @property
    def address(self) -> str: ...


Backend = str | tuple[str, int] | HasAddress


def backend_address(backend: Backend) -> str:
    """ "host:port" for a MariaDBServer, a TcpRelay, a (host, port) pair or a string."""
    if isinstance(backend, str):
        return backend
    if isinstance(backend, tuple):
        return f"{backend[0]}:{backend[1]}"
    return backend.address


def default_config(backend: str, port: int) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "backend": {"address": backend, "connect_timeout": "5s"},
        "users": [{"name": "app", "password": "apppw"}],
        "pool": {
            "mode": "transaction",
            "max_size": 20,
            "min_idle": 2,
            "max_lifetime": "auto",
            "ping_interval": "auto",
            "acquire_timeout": "10s",
        },
        "log": {"level": "debug"},
    }


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) in overrides replaces;
    None removes the key (``{"backend": {"address": None, "servers": [...]}}``)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class ProxydProcess:
    """One proxyd subprocess. `start()` returns once its first listen address accepts TCP.

    Its stdout and stderr go to `log_path`; the config lives at `config_path` (`config`
    is the dict written). Files go to `workdir` if given (kept), else to a temp dir that
    `close()` removes.
    """

    def __init__(
        self,
        backend: Backend,
        overrides: Mapping[str, Any] | None = None,
        *,
        workdir: Path | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.config = deep_merge(
            default_config(backend_address(backend), free_port()), overrides or {}
        )
        listen = self.config["listen"]
        self.host, self.port = split_address(listen[0] if isinstance(listen, list) else listen)
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="proxyd-")) if workdir is None else workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "proxyd.yaml"
        self.log_path = self.dir / "proxyd.log"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        close_at_exit(self)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("proxyd was not started")
        return self._proc.pid

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def __enter__(self) -> ProxydProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ProxydProcess {self.address} pid={self._proc and self._proc.pid}>"

    def write_config(self) -> None:
        """Write `config` to `config_path`; for a reload test, edit `config`, call this, SIGHUP."""
        # Owner-only, as proxyd expects of a file that holds passwords.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as config_file:
            yaml.safe_dump(self.config, config_file, sort_keys=False)

    def start(self) -> None:
        self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "proxyd", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self._proc = spawn(
                argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + self.startup_timeout
        while not port_accepts(self.host, self.port, timeout=0.5):
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"proxyd exited with {self._proc.returncode} before listening on"
                    f" {self.address}; last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self._proc.kill()
                self._proc.wait()
                raise RuntimeError(
                    f"proxyd did not listen on {self.address} within {self.startup_timeout:.0f}s;"
                    f" last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def send_signal(self, sig: int) -> None:
        if self._proc is None:
            raise RuntimeError("proxyd was not started")
        self._proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait for the exit code; after `timeout`, SIGKILL and raise."""
        if self._proc is None:
            raise RuntimeError("proxyd was not started")
        code = stop_process(self._proc, sig, timeout)
        if code is None:
            raise TimeoutError(
                f"proxyd (pid {self._proc.pid}) still ran {timeout:.0f}s after signal {sig},"
                f" killed it; last lines of {self.log_path}:\n{self.log_tail()}"
            )
        return code

    def wait(self, timeout: float | None = None) -> int:
        """Wait for proxyd to exit by itself; raises subprocess.TimeoutExpired."""
        if self._proc is None:
            raise RuntimeError("proxyd was not started")
        return self._proc.wait(timeout)

    def close(self) -> None:
        """Stop proxyd if it runs (SIGTERM, then SIGKILL) and remove a temp dir."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, 10.0)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        forget_at_exit(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def connect(
        self, user: str = "app", password: str = "apppw", database: str = "test", **kw: Any
    ) -> pymysql.Connection:
        """A PyMySQL connection through proxyd; `kw` overrides any default.

        Reads and writes time out after 30s by default, so a proxy that swallows a reply
        fails the test with error 2013 instead of hanging it until pytest-timeout.
        """
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "database": database,
            "autocommit": True,
            "connect_timeout": 5,
            "read_timeout": 30,
            "write_timeout": 30,
        }
        params.update(kw)
        return pymysql.connect(**params)

    def admin_rows(self, sql: str) -> list[dict[str, Any]]:
        """One statement of the admin console (``admin`` in the overrides, as
        ``{"listen": ..., "password": ...}``), rows as dicts by column name."""
        admin = self.config["admin"]
        host, port = split_address(admin["listen"])
        with (
            pymysql.connect(
                host=host,
                port=port,
                user=admin.get("user", "admin"),
                password=admin["password"],
                cursorclass=pymysql.cursors.DictCursor,
                connect_timeout=5,
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(sql)
            return list(cur.fetchall())
