"""A throwaway MariaDB server for tests: own datadir, own port, own socket, always torn down.

It never reads the system's option files (`--no-defaults`), so the machine's own MariaDB
service and /etc/mysql stay out of the picture. Initialising and starting one takes well
under a second on a warm machine, so tests that restart or kill the server get their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pymysql

from tests.support.processes import (
    close_at_exit,
    forget_at_exit,
    free_port,
    kill_process,
    log_tail,
    spawn,
    stop_process,
)

APP_USER = "app"
APP_PASSWORD = "apppw"
APP_DATABASE = "test"

# ER_NO_SUCH_THREAD: the connection ended between listing and KILL.
_ER_NO_SUCH_THREAD = 1094

# Small and fast: durability across an OS crash does not matter for a throwaway server, but
# data must survive a mariadbd restart, so the redo log is still written on commit.
_DEFAULT_OPTIONS: dict[str, object] = {
    "bind_address": "127.0.0.1",
    "skip_name_resolve": True,
    "skip_log_bin": True,
    "performance_schema": "OFF",
    "innodb_buffer_pool_size": "32M",
    "innodb_log_file_size": "8M",
    "innodb_flush_log_at_trx_commit": 2,
    "innodb_doublewrite": 0,
    # Linux AIO contexts are a machine-wide budget (fs.aio-max-nr) that several servers
    # started side by side can exhaust; simulated AIO is plenty for tests.
    "innodb_use_native_aio": 0,
    # What Debian's packaged server uses, so tests see the charset a real install would.
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_general_ci",
}


def find_binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for folder in ("/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"):
            candidate = Path(folder, name)
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise FileNotFoundError(f"none of {', '.join(names)} found; run scripts/setup")


def _render(options: Mapping[str, object]) -> list[str]:
    args = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        args.append(f"--{key}" if value is True else f"--{key}={value}")
    return args


def _normalise(options: Mapping[str, object]) -> dict[str, object]:
    return {key.replace("-", "_"): value for key, value in options.items()}


class MariaDBServer:
    """One mariadbd process with its own temporary datadir on a free port of 127.0.0.1.

    `options` are extra server options (`{"wait_timeout": 3}` becomes `--wait_timeout=3`;
    True makes a bare flag); they override the small defaults above. Change `options` and
    call `restart()` to reconfigure. The server provides database `test` and the user
    `app`/`apppw` (mysql_native_password, ALL on *.*) from host `%` and `localhost`.
    """

    host = "127.0.0.1"

    def __init__(
        self, options: Mapping[str, object] | None = None, *, startup_timeout: float = 60.0
    ) -> None:
        self.options: dict[str, object] = _normalise(options or {})
        self.startup_timeout = startup_timeout
        self.port = free_port()
        # Under /tmp rather than pytest's deep tmp_path: unix socket paths must fit in 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="proxyd-mariadb-"))
        self.datadir = self.dir / "data"
        self.socket_path = self.dir / "mysqld.sock"
        self.error_log = self.dir / "error.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._provisioned = False
        close_at_exit(self)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<MariaDBServer {self.address} {state} datadir={self.datadir}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.is_running:
            return
        if not self.datadir.exists():
            self._install_db()
        # A port picked as free can be taken before mariadbd binds it; only the very first
        # start may move to another port, a restart must keep the address clients know.
        attempts = 1 if self._provisioned else 3
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_ready()
                break
            except _PortTaken:
                if attempt == attempts - 1:
                    raise self._failure("port stayed busy") from None
                self.port = free_port()
        if not self._provisioned:
            self._provision()
            self._provisioned = True

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down gracefully (SIGTERM) and wait; SIGKILL if it takes longer than `timeout`."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the next start runs InnoDB crash recovery."""
        if self._proc is not None:
            kill_process(self._proc)

    def restart(self, graceful: bool = True, options: Mapping[str, object] | None = None) -> None:
        """Stop (or kill) and start again on the same port and datadir, with updated options."""
        if graceful:
            self.stop()
        else:
            self.kill()
        if options is not None:
            self.options.update(_normalise(options))
        self.start()

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
        forget_at_exit(self)

    # -- talking to it -----------------------------------------------------------------------

    def connect(self, user: str = "root", password: str = "", **kw: Any) -> pymysql.Connection:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "password": password,
            "autocommit": True,
            "connect_timeout": 5,
        }
        params.update(kw)
        return pymysql.connect(**params)

    def execute(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement as root on a connection of its own; returns the rows, if any."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def connection_ids(self, user: str) -> list[int]:
        rows = self.execute(
            "SELECT id FROM information_schema.processlist"
            " WHERE user = %s AND id <> CONNECTION_ID()",
            (user,),
        )
        return [int(row[0]) for row in rows]

    def count_connections(self, user: str) -> int:
        return len(self.connection_ids(user))

    def kill_connections(self, user: str, wait: float = 5.0) -> int:
        """KILL every connection of `user`, as a DBA or wait_timeout would; returns how many.

        Waits up to `wait` seconds until they are gone from the processlist, so a test can
        count on the server side being closed when this returns.
        """
        # Listed before this connection opens, so KILLing root's connections spares it.
        victims = self.connection_ids(user)
        killed = []
        with self.connect() as conn, conn.cursor() as cur:
            for thread_id in victims:
                try:
                    cur.execute(f"KILL CONNECTION {thread_id}")
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] != _ER_NO_SUCH_THREAD:
                        raise
                else:
                    killed.append(thread_id)
            deadline = time.monotonic() + wait
            while killed and time.monotonic() < deadline:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE id IN %s",
                    (killed,),
                )
                row = cur.fetchone()
                if row is None or row[0] == 0:
                    break
                time.sleep(0.02)
        return len(killed)

    # -- internals ---------------------------------------------------------------------------

    def _server_options(self) -> dict[str, object]:
        options = dict(_DEFAULT_OPTIONS)
        if os.geteuid() == 0:
            # mariadbd refuses to run as root unless told to; there is no mysql user to
            # switch to that could write our temp dir anyway.
            options["user"] = "root"
        options.update(self.options)
        options.update(
            datadir=self.datadir,
            tmpdir=self.dir,
            port=self.port,
            socket=self.socket_path,
            pid_file=self.dir / "mysqld.pid",
            log_error=self.error_log,
        )
        return options

    def _install_db(self) -> None:
        install_db = find_binary("mariadb-install-db", "mysql_install_db")
        options = {
            key: value
            for key, value in self._server_options().items()
            if key.startswith("innodb_") or key in ("user", "datadir", "character_set_server")
        }
        argv = [
            install_db,
            "--no-defaults",
            *_render(options),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        log = self.dir / "install-db.log"
        with log.open("wb") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            # A half-made datadir would be taken as initialised by the next start().
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise RuntimeError(
                f"{install_db} exited with {result.returncode}; last lines of {log}:\n"
                f"{log_tail(log)}"
            )

    def _spawn(self) -> None:
        mariadbd = find_binary("mariadbd", "mysqld")
        # --no-defaults must come first: otherwise /etc/mysql/my.cnf (port 3306, user mysql,
        # the system socket) is read and wins over nothing we pass later.
        argv = [mariadbd, "--no-defaults", *_render(self._server_options())]
        with (self.dir / "mariadbd.out").open("ab") as out:
            self._proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        log_size = self.error_log.stat().st_size if self.error_log.exists() else 0
        while True:
            if self._proc.poll() is not None:
                if b"Address already in use" in self._error_log_since(log_size):
                    raise _PortTaken
                raise self._failure(f"mariadbd exited with {self._proc.returncode}")
            try:
                self.connect(connect_timeout=1).close()
                return
            except (pymysql.MySQLError, OSError):
                pass
            if time.monotonic() > deadline:
                kill_process(self._proc)
                raise self._failure(f"not ready after {self.startup_timeout:.0f}s")
            time.sleep(0.05)

    def _error_log_since(self, offset: int) -> bytes:
        try:
            with self.error_log.open("rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b""

    def _failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"MariaDB on {self.address} failed to start: {what}. "
            f"Last lines of {self.error_log}:\n{log_tail(self.error_log)}"
        )

    def _provision(self) -> None:
        statements = [f"CREATE DATABASE IF NOT EXISTS `{APP_DATABASE}`"]
        for host in ("%", "localhost"):
            account = f"'{APP_USER}'@'{host}'"
            statements += [
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED VIA mysql_native_password"
                f" USING PASSWORD('{APP_PASSWORD}')",
                f"GRANT ALL ON *.* TO {account}",
            ]
        with self.connect() as conn, conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)


class _PortTaken(Exception):
    pass
