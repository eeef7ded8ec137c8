"""Go's go-sql-driver/mysql (Debian's golang-github-go-sql-driver-mysql-dev, with Debian's
Go) through proxyd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.proxy import ProxydProcess

APP = Path(__file__).parent / "go" / "app.go"
GOPATH = Path("/usr/share/gocode")  # where Debian puts Go libraries' sources


def test_go_sql_driver_through_transaction_pooling(
    proxyd: Callable[..., ProxydProcess], tmp_path: Path
) -> None:
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/github.com/go-sql-driver/mysql").is_dir():
        pytest.fail(
            "Go or go-sql-driver/mysql missing; run scripts/setup"
            " (Debian packages golang-go golang-github-go-sql-driver-mysql-dev)"
        )
    proxy = proxyd({"pool": {"max_size": 4}})
    env = {
        **os.environ,
        "GO111MODULE": "off",  # Debian's library, from GOPATH, no download
        "GOPATH": str(GOPATH),
        "GOCACHE": str(tmp_path / "go-build"),
        "DB_HOST": proxy.host,
        "DB_PORT": str(proxy.port),
        "DB_USER": "app",
        "DB_PASSWORD": "apppw",
        "DB_NAME": "test",
    }
    done = subprocess.run(
        [go, "run", str(APP)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {
        "pool_concurrent": sum(range(1, 41)),
        "prepared_round_trip": True,
        "transaction": "committed",
        "cancelled": True,
        "cancelled_statement_running": 0,  # stopped on the server, not left running
        "load_data_local": [3, "one,two,café"],
        "error": 1146,
        "after_error": 5,
    }
