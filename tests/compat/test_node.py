"""Node.js's mysql2 (from the npm registry; tests/compat/node/package.json) through proxyd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess

APP = Path(__file__).parent / "node"


def test_node_mysql2_through_transaction_pooling(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    node = shutil.which("node")
    if node is None or not (APP / "node_modules" / "mysql2").is_dir():
        pytest.fail("node or mysql2 missing; run scripts/setup (nodejs, npm, npm ci)")
    server = mariadb_factory(max_allowed_packet="64M")  # for the 17 MiB packet
    proxy = proxyd({"pool": {"max_size": 4}}, backend=server)
    env = {
        **os.environ,
        "DB_HOST": proxy.host,
        "DB_PORT": str(proxy.port),
        "DB_USER": "app",
        "DB_PASSWORD": "apppw",
        "DB_NAME": "test",
    }
    done = subprocess.run(
        [node, str(APP / "app.js")], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {
        "pool_concurrent": sum(range(1, 41)),
        "execute_round_trip": True,
        "over_16_mib": True,
        "transaction": "committed",
        "multi_statements": [1, 2, 3, 0],
        "change_user_resets": None,
        "streamed_rows": 50000,
        "load_data_local": [3, ["one", "two", "café"]],
        "error": 1146,
        "after_error": 5,
    }
