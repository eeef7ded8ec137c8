"""MariaDB's command-line tools through proxyd: the mariadb client (a script with `source`
and `\\G`), mariadb-dump of a database and its restore, mariadb-slap."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess, split_address

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed; run scripts/setup (Debian package mariadb-client)")
    return found


def _login(host: str, port: int, charset: bool = True) -> list[str]:
    return [
        f"--host={host}",
        f"--port={port}",
        "--user=app",
        "--password=apppw",
        "--protocol=tcp",
        *(["--default-character-set=utf8mb4"] if charset else []),
    ]


def _run(argv: list[str], stdin: bytes | None = None) -> bytes:
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=120, cwd=REPO)
    # The client goes on after an error in a sourced file: stderr tells.
    assert done.returncode == 0 and b"ERROR" not in done.stderr, (argv, done.stderr[-2000:])
    return done.stdout


@pytest.fixture
def proxy(proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd({"pool": {"max_size": 4}})


def test_a_script_with_source_and_vertical_output_reads_the_same(
    proxy: ProxydProcess, mariadb: MariaDBServer
) -> None:
    client = _tool("mariadb")
    outputs = [
        _run([client, *_login(host, port), "test", "-e", "source tests/compat/cli/script.sql"])
        for host, port in ((proxy.host, proxy.port), split_address(mariadb.address))
    ]
    assert b"*************************** 1. row ***************************" in outputs[0]
    assert "Zoë 🐘".encode() in outputs[0]
    assert outputs[0] == outputs[1]


def test_dump_and_restore_through_proxyd(proxy: ProxydProcess, mariadb: MariaDBServer) -> None:
    for db in ("dump_src", "dump_dst"):
        mariadb.execute(f"DROP DATABASE IF EXISTS {db}")
        mariadb.execute(f"CREATE DATABASE {db}")
    for sql in (
        "CREATE TABLE dump_src.t (id INT PRIMARY KEY, name VARCHAR(30) CHARACTER SET utf8mb4,"
        " data BLOB, at DATETIME(6), price DECIMAL(10,2)) ENGINE=InnoDB",
        "INSERT INTO dump_src.t SELECT seq, CONCAT('Zoë ', seq), UNHEX(SHA2(seq, 256)),"
        " '2026-12-04 10:11:12.123456' + INTERVAL seq SECOND, seq / 7 FROM dump_src.seq_1_to_3000",
        "CREATE TABLE dump_src.log (id INT AUTO_INCREMENT PRIMARY KEY, tid INT) ENGINE=InnoDB",
        "CREATE VIEW dump_src.v AS SELECT id, name FROM dump_src.t WHERE id < 10",
        "CREATE PROCEDURE dump_src.p() SELECT COUNT(*) FROM t",
    ):
        mariadb.execute(sql)
    with mariadb.connect() as conn, conn.cursor() as cur:
        conn.select_db("dump_src")  # a trigger keeps its statement's text: no schema in it
        cur.execute(
            "CREATE TRIGGER tr AFTER UPDATE ON t FOR EACH ROW INSERT INTO log (tid) VALUES (NEW.id)"
        )
    login = _login(proxy.host, proxy.port)
    dump = _run(
        [_tool("mariadb-dump"), *login, "--routines", "--triggers", "--no-tablespaces", "dump_src"]
    )
    assert b"CREATE TABLE `t`" in dump and b"INSERT INTO `t`" in dump
    _run([_tool("mariadb"), *login, "dump_dst"], stdin=dump)
    # Compared without what names the database or dates the copy.
    for check, part in (
        ("CHECKSUM TABLE {db}.t", slice(1, None)),
        ("SELECT COUNT(*), SUM(id) FROM {db}.v", slice(None)),
        ("SHOW CREATE TRIGGER {db}.tr", slice(None, -1)),
        (
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{db}'",
            slice(None),
        ),
    ):
        src = [row[part] for row in mariadb.execute(check.format(db="dump_src"))]
        dst = [row[part] for row in mariadb.execute(check.format(db="dump_dst"))]
        assert src == dst and src, check
    mariadb.execute("UPDATE dump_dst.t SET price = 0 WHERE id = 1")
    assert mariadb.execute("SELECT COUNT(*) FROM dump_dst.log")[0][0] == 1  # the trigger works
    for db in ("dump_src", "dump_dst"):
        mariadb.execute(f"DROP DATABASE {db}")


def test_mariadb_slap_concurrent_load(proxy: ProxydProcess, mariadb: MariaDBServer) -> None:
    mariadb.execute("DROP DATABASE IF EXISTS slap_compat")
    out = _run(
        [
            _tool("mariadb-slap"),
            *_login(proxy.host, proxy.port, charset=False),
            "--create-schema=slap_compat",
            "--concurrency=16",
            "--iterations=2",
            "--auto-generate-sql",
            "--auto-generate-sql-load-type=mixed",
            "--number-of-queries=400",
        ]
    )
    assert b"Average number of seconds to run all queries" in out, out
    mariadb.execute("DROP DATABASE IF EXISTS slap_compat")
