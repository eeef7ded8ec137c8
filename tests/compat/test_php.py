"""PHP's mysqli and PDO (Debian's php-cli and php-mysql, mysqlnd) through proxyd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.proxy import ProxydProcess

APP = Path(__file__).parent / "php" / "app.php"


def test_php_mysqli_and_pdo_through_transaction_pooling(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    php = shutil.which("php")
    if php is None:
        pytest.fail("php not installed; run scripts/setup (Debian packages php-cli php-mysql)")
    proxy = proxyd({"pool": {"max_size": 4}})
    env = {
        **os.environ,
        "DB_HOST": proxy.host,
        "DB_PORT": str(proxy.port),
        "DB_USER": "app",
        "DB_PASSWORD": "apppw",
        "DB_NAME": "test",
    }
    done = subprocess.run(
        [php, "-d", "display_errors=stderr", "-d", "mysqli.allow_local_infile=1", str(APP)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "connect_per_request": 30,  # each connection its own id
        "persistent_reused": True,
        "prepared_round_trip": True,
        "cursor_fetch": [[5, "xxxxx"], [6, "xxxxxx"], [7, "xxxxxxx"]],
        "load_data_local": [3, [["one"], ["two"], ["café"]]],
        "transactions": "committed",
        "multi_results": [[["1"]], [["2", "3"]], [["4"]]],  # text protocol: strings
        "compress": [1235, True],  # declined with ER_NOT_SUPPORTED_YET, not a hang
        "error": 1146,
        "after_error": 5,
        "pdo_native_types": ["integer", "Zoë 🐘", "12.50"],
        "pdo_transaction": 0.5,
    }, seen
