"""Differential tests: what a client sees directly from MariaDB and through proxyd, compared.

Each SQL script under `scripts/` is run by the `mariadb` command-line client twice, once
against the server and once through a proxyd in front of it, and the two outputs must be the
same bytes. The client runs in batch mode with column metadata (`--batch --table
--column-type-info`; `--table` because batch mode prints metadata only in table format),
`--show-warnings` (it runs SHOW WARNINGS after every statement that had any), and `--force`,
so an error is printed where it happened and the script goes on; `--unbuffered` keeps the
errors on stderr in their place among the results on stdout. The exit status and, should
the client wait for an answer that never comes, a marker for the timeout are part of the
output compared.

Through proxyd, the pool has two server connections and other clients keep using them
with session state of their own (schema, character set, time zone, sql_mode, ...), so the
script's statements move between server connections as they would in production, and
every piece of session state has to follow the client. `test_churn_moves_a_client_between
_server_connections` checks that the moving really happens.

Each run gets a fresh database of the same name, so a run that died halfway leaves nothing
behind for the next one, and both runs see the same names in metadata and messages.

What differs by design is listed once, in BY_DESIGN, and masked in both outputs alike.
`server_latin1/` holds scripts for a server started with character_set_server=latin1, run
by a client that names no character set (the handshake's character set, issue 9).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mariadb import APP_PASSWORD, APP_USER, MariaDBServer, find_binary
from tests.support.proxy import ProxydProcess

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted((HERE / "scripts").glob("*.sql"))
LATIN1_SCRIPTS = sorted((HERE / "server_latin1").glob("*.sql"))

CLI_OPTIONS = (
    "--batch",
    "--table",
    "--column-type-info",
    "--show-warnings",
    "--force",
    "--unbuffered",
)
# Longer than any script takes (a few seconds at most, SLEEPs included): a run still going
# after this waits for an answer that will not come.
CLI_TIMEOUT = 30.0

# Two server connections shared by the script's client and the churn clients: statements
# cannot all land on the same one.
POOL = {"pool": {"max_size": 2, "min_idle": 2}}


@dataclass(frozen=True, slots=True)
class ByDesign:
    """A difference proxyd makes on purpose: `pattern` is masked with `mask` in both outputs."""

    pattern: re.Pattern[bytes]
    mask: bytes
    reason: str
    shown_by: str  # the script that prints it, where the mask must match in both outputs


BY_DESIGN: tuple[ByDesign, ...] = (
    ByDesign(
        re.compile(rb"(?m)^(Variable_name: Com_\w+\n *Value: )\d+$"),
        rb"\g<1><counter>",
        "Session status counters belong to the server connection, which counts the statements"
        " of every client it served and proxyd's own (state replays, pings).",
        "by_design.sql",
    ),
    ByDesign(
        re.compile(rb"(?m)^(connection_id: )\d+$"),
        rb"\g<1><id>",
        "CONNECTION_ID() is the id proxyd gave the client at login (KILL takes it), not the"
        " thread id of whichever server connection runs the statement.",
        "by_design.sql",
    ),
)


def mask_by_design(output: bytes) -> tuple[bytes, set[str]]:
    """`output` with every BY_DESIGN difference masked, and the reasons of those that matched."""
    matched = set()
    for entry in BY_DESIGN:
        output, count = entry.pattern.subn(entry.mask, output)
        if count:
            matched.add(entry.reason)
    return output, matched


# -- running the client ----------------------------------------------------------------------


def fresh_database(server: MariaDBServer, name: str) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}`")


def drop_database(server: MariaDBServer, name: str) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def run_script(
    script: Path,
    host: str,
    port: int,
    database: str,
    *,
    charset: str | None = "utf8mb4",
    locale: str = "C.UTF-8",
) -> bytes:
    """The `mariadb` client's stdout and stderr, interleaved, for `script`, plus its exit status.

    `charset=None` leaves out --default-character-set: the client then takes its character
    set from `locale`, as it does for a user who configured none.
    """
    argv = [
        find_binary("mariadb", "mysql"),
        # First, or the machine's option files (/etc/mysql) are read.
        "--no-defaults",
        *CLI_OPTIONS,
        *([f"--default-character-set={charset}"] if charset else []),
        f"--host={host}",
        f"--port={port}",
        f"--user={APP_USER}",
        f"--password={APP_PASSWORD}",
        database,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": locale}
    with script.open("rb") as stdin:
        try:
            done = subprocess.run(
                argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=CLI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            partial = exc.output or b""
            return partial + f"\n[no answer within {CLI_TIMEOUT:.0f}s, client killed]\n".encode()
    return done.stdout + f"[exit status {done.returncode}]\n".encode()


class Churn:
    """Other clients of the same proxyd, keeping its server connections busy.

    Each holds a server connection for `hold` seconds per statement and asks again at once,
    so with two of them on a pool of two, whoever releases a connection hands it to a
    waiting client: a script's statement finds its previous server connection taken, or
    used by someone else since. Each churn client has session state of its own, different
    from a script's, so the script's schema, character set and session variables must be
    put back every time.
    """

    SESSIONS: tuple[tuple[str, str], ...] = (
        (
            "latin1",
            "SET SESSION time_zone = '-03:00', sql_mode = 'ANSI', lc_time_names = 'ja_JP',"
            " lc_messages = 'sv_SE', div_precision_increment = 13, group_concat_max_len = 9,"
            " max_statement_time = 50, optimizer_switch = 'mrr=on,index_merge=off',"
            " sql_select_limit = 1000",
        ),
        (
            "cp1251",
            "SET SESSION time_zone = '+11:00', sql_mode = 'TRADITIONAL', lc_time_names = 'fr_FR',"
            " lc_messages = 'es_ES', div_precision_increment = 1, group_concat_max_len = 5000,"
            " optimizer_search_depth = 3",
        ),
    )

    def __init__(self, proxy: ProxydProcess, hold: float = 0.005) -> None:
        self.proxy = proxy
        self.hold = hold
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Barrier(len(self.SESSIONS) + 1)
        self._threads = [
            threading.Thread(target=self._run, args=session, daemon=True)
            for session in self.SESSIONS
        ]

    def __enter__(self) -> Churn:
        for thread in self._threads:
            thread.start()
        # Not before every churn client has logged in and set its state, or a short
        # script could be over before the first of them shows up.
        # Broken if a churn client failed: its error is reported with the script's diff.
        with contextlib.suppress(threading.BrokenBarrierError):
            self._ready.wait(timeout=CLI_TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLI_TIMEOUT)

    def _run(self, charset: str, setup: str) -> None:
        try:
            # Schema "test", unlike the script's: the schema must be replayed too.
            conn = self.proxy.connect(charset=charset)
            with conn, conn.cursor() as cur:
                cur.execute(setup)
                cur.execute("DO SLEEP(%s)", (self.hold,))
                self._ready.wait(timeout=CLI_TIMEOUT)
                while not self._stop.is_set():
                    cur.execute("DO SLEEP(%s)", (self.hold,))
        except Exception as exc:  # reported by the test, with the script's diff
            self.errors.append(f"{charset} churn client: {exc!r}")
            self._ready.abort()


# -- comparing -------------------------------------------------------------------------------


def compare(
    script: Path,
    direct: bytes,
    proxied: bytes,
    where: tuple[str, str],
    keep: Path,
    churn_errors: Sequence[str] = (),
) -> None:
    """Fail with a unified diff unless both outputs are the same bytes once BY_DESIGN is masked."""
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "direct.out").write_bytes(direct)
    (keep / "proxyd.out").write_bytes(proxied)
    direct, matched_direct = mask_by_design(direct)
    proxied, matched_proxied = mask_by_design(proxied)
    problems = [*churn_errors]
    for entry in BY_DESIGN:
        if entry.shown_by == script.name and not (
            entry.reason in matched_direct and entry.reason in matched_proxied
        ):
            problems.append(f"BY_DESIGN entry no longer matches both outputs: {entry.reason}")
    if direct != proxied:
        diff = difflib.unified_diff(
            direct.decode("utf-8", "backslashreplace").splitlines(keepends=True),
            proxied.decode("utf-8", "backslashreplace").splitlines(keepends=True),
            fromfile=f"direct ({where[0]})",
            tofile=f"through proxyd ({where[1]})",
        )
        problems.append(
            f"{script.name}: the client sees something else through proxyd"
            f" (raw outputs in {keep}):\n{''.join(diff)}"
        )
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _script_id(path: Path) -> str:
    return path.stem


def run_both(
    script: Path,
    server: MariaDBServer,
    proxy: ProxydProcess,
    keep: Path,
    *,
    charset: str | None = "utf8mb4",
    locale: str = "C.UTF-8",
) -> None:
    name = f"diff_{script.stem}"
    fresh_database(server, name)
    direct = run_script(script, server.host, server.port, name, charset=charset, locale=locale)
    fresh_database(server, name)
    with Churn(proxy) as churn:
        proxied = run_script(script, proxy.host, proxy.port, name, charset=charset, locale=locale)
    drop_database(server, name)
    compare(script, direct, proxied, (server.address, proxy.address), keep, churn.errors)


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=_script_id)
def test_script(
    script: Path,
    mariadb: MariaDBServer,
    proxyd: Callable[..., ProxydProcess],
    tmp_path: Path,
) -> None:
    run_both(script, mariadb, proxyd(POOL), tmp_path)


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
@pytest.mark.parametrize("script", LATIN1_SCRIPTS, ids=_script_id)
def test_script_on_latin1_server(
    script: Path,
    locale: str,
    mariadb_factory: Callable[..., MariaDBServer],
    proxyd: Callable[..., ProxydProcess],
    tmp_path: Path,
) -> None:
    # No --default-character-set: the client's own default (latin1 under the C locale, the
    # server's too, utf8mb3 under C.UTF-8) meets the server's in the handshake.
    server = mariadb_factory(character_set_server="latin1", collation_server="latin1_swedish_ci")
    proxy = proxyd(POOL, backend=server)
    run_both(script, server, proxy, tmp_path, charset=None, locale=locale)


def _greeting_collation(host: str, port: int) -> int:
    """The character set byte of a server greeting (Protocol::HandshakeV10)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"{host}:{port} closed before its greeting")
            data += chunk
    payload = data[4 : 4 + int.from_bytes(data[:3], "little")]
    # protocol version, server version (NUL-terminated), thread id (4), scramble part 1 (8),
    # filler (1), capability flags lower half (2), then the collation.
    at = payload.index(b"\0", 1) + 1 + 4 + 8 + 1 + 2
    return payload[at]


def test_handshake_announces_the_server_collation(
    mariadb_factory: Callable[..., MariaDBServer],
    proxyd: Callable[..., ProxydProcess],
) -> None:
    # The mariadb client always names a character set (from its locale when not told), so
    # the scripts above cannot see the greeting's; drivers that take it can.
    server = mariadb_factory(character_set_server="latin1", collation_server="latin1_swedish_ci")
    proxy = proxyd(POOL, backend=server)
    direct = _greeting_collation(server.host, server.port)
    assert direct == 8  # latin1_swedish_ci
    assert _greeting_collation(proxy.host, proxy.port) == direct


def test_churn_moves_a_client_between_server_connections(
    mariadb: MariaDBServer,
    proxyd: Callable[..., ProxydProcess],
    tmp_path: Path,
) -> None:
    # @@pseudo_thread_id is the thread id of the server connection that runs the statement.
    probe = tmp_path / "probe.sql"
    probe.write_text("SELECT @@pseudo_thread_id AS server_connection\\G\n" * 40)
    proxy = proxyd(POOL)
    with Churn(proxy) as churn:
        output = run_script(probe, proxy.host, proxy.port, "test")
    assert not churn.errors
    seen = set(re.findall(rb"server_connection: (\d+)", output))
    assert len(seen) > 1, output.decode(errors="replace")


def test_scripts_are_found() -> None:
    # A glob that matches nothing would make the parametrized tests vanish silently.
    assert SCRIPTS and LATIN1_SCRIPTS

