"""Java's MariaDB Connector/J (Debian's libmariadb-java, default-jdk-headless) through proxyd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.proxy import ProxydProcess

APP = Path(__file__).parent / "java" / "App.java"
JAR = Path("/usr/share/java/mariadb-java-client.jar")


def test_connector_j_through_transaction_pooling(proxyd: Callable[..., ProxydProcess]) -> None:
    java = shutil.which("java")
    if java is None or not JAR.is_file():
        pytest.fail(
            "Java or Connector/J missing; run scripts/setup"
            " (Debian packages default-jdk-headless libmariadb-java)"
        )
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
        [java, "-cp", str(JAR), str(APP)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {
        "batch_rows": 100,
        "prepared_round_trip": True,
        "transaction": "committed",
        "cancel": 1317,  # ER_QUERY_INTERRUPTED: KILL QUERY reached this statement's backend
        "cancel_within_5s": True,
        "after_cancel": 5,
        "load_data_local": "3 one,two,café",
    }
