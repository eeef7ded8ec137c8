"""A Unix socket listener (issue 12, part 5): an entry of `listen` that starts with `/`
or `unix:`, with socket_mode and socket_owner; its file removed on stop and refused
when something else holds the path."""

from __future__ import annotations

import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest

from tests.support.processes import free_port
from tests.support.proxy import ProxydProcess
from tests.unit.test_cli import GOOD, proxyd_command


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Under /tmp: a socket path must fit in 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="pxs-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _listen(path: Path, **socket: str) -> dict[str, object]:
    entry: object = str(path) if not socket else {"address": f"unix:{path}", **socket}
    return {"listen": [f"127.0.0.1:{free_port()}", entry]}


def test_clients_log_in_over_the_socket_and_it_goes_away_on_stop(
    proxyd: Callable[..., ProxydProcess], short_dir: Path
) -> None:
    path = short_dir / "proxyd.sock"
    proxy = proxyd(_listen(path, socket_mode="0660", socket_owner="root:root"))
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    conn = pymysql.connect(unix_socket=str(path), user="app", password="apppw", database="test")
    with conn.cursor() as cur:
        cur.execute("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
        assert cur.fetchone() == ("localhost",)  # as the server shows its own socket's
    cli = subprocess.run(
        ["mariadb", f"--socket={path}", "-uapp", "-papppw", "-N", "-e", "SELECT 'by socket'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (cli.returncode, cli.stdout.strip()) == (0, "by socket"), cli.stderr
    conn.close()
    assert proxy.stop(signal.SIGTERM) == 0
    assert not path.exists()


def test_a_stale_socket_file_is_replaced(
    proxyd: Callable[..., ProxydProcess], short_dir: Path
) -> None:
    path = short_dir / "stale.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # bound, never listening: what a killed process leaves
    left.close()
    proxyd(_listen(path))
    conn = pymysql.connect(unix_socket=str(path), user="app", password="apppw")
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


@pytest.mark.parametrize("holder", ["a listening process", "a regular file"])
def test_a_path_someone_else_holds_is_refused_and_left_alone(
    proxyd: Callable[..., ProxydProcess], short_dir: Path, holder: str
) -> None:
    path = short_dir / "taken.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if holder == "a regular file":
        path.write_text("not a socket")
    else:
        other.bind(str(path))
        other.listen()
    try:
        with pytest.raises(RuntimeError, match="exited with") as failed:
            proxyd(_listen(path))
        reason = (
            "exists and is not a socket"
            if holder == "a regular file"
            else "another process is listening"
        )
        assert f"cannot listen on unix:{path}" in str(failed.value)
        assert reason in str(failed.value)
        assert path.exists()  # not removed from under its owner
    finally:
        other.close()


def test_check_refuses_a_relative_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "proxyd.yaml"
    path.write_text(GOOD.replace("listen: 127.0.0.1:6033", "listen: unix:run/proxyd.sock"))
    result = proxyd_command("--check", "--config", str(path))
    assert result.returncode == 1
    assert "listen: a Unix socket needs an absolute path" in result.stderr
