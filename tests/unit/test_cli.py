"""The proxyd command: --check, --version and config errors as one line, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import proxyd
from proxyd.cli import EX_CONFIG, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "proxyd.yaml"

GOOD = """\
listen: 127.0.0.1:6033
backend:
  address: 127.0.0.1:3306
users:
  - name: app
    password_env: PROXYD_TEST_PW
"""


def proxyd_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PROXYD_TEST_PW="pw")
    env.pop("JOURNAL_STREAM", None)
    return subprocess.run(
        [sys.executable, "-m", "proxyd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_check_good_config(tmp_path: Path) -> None:
    path = tmp_path / "proxyd.yaml"
    path.write_text(GOOD)
    result = proxyd_command("--check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK\n"
    assert result.stderr == ""


def test_check_example_config() -> None:
    result = proxyd_command("--check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXAMPLE}: OK\n"


def test_check_broken_config(tmp_path: Path) -> None:
    path = tmp_path / "proxyd.yaml"
    path.write_text(GOOD + "pool:\n  max_sise: 5\n")
    result = proxyd_command("--check", "--config", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"proxyd: {path}: pool.max_sise: unknown key (did you mean 'max_size'?)\n"
    )


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    result = proxyd_command("--check", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr == f"proxyd: {path}: cannot read: No such file or directory\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_start_with_broken_config_exits_ex_config(tmp_path: Path) -> None:
    path = tmp_path / "proxyd.yaml"
    path.write_text(GOOD.replace("127.0.0.1:3306", "127.0.0.1:70000"))
    result = proxyd_command("--config", str(path))
    assert result.returncode == EX_CONFIG
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"proxyd: {path}: backend.address: port must be")
    assert "Traceback" not in result.stdout + result.stderr


def test_check_warns_about_world_readable_passwords(tmp_path: Path) -> None:
    path = tmp_path / "proxyd.yaml"
    path.write_text(GOOD.replace("password_env: PROXYD_TEST_PW", 'password: "pw"'))
    path.chmod(0o644)
    result = proxyd_command("--check", "--config", str(path))
    assert result.returncode == 0
    assert "readable by other users" in result.stderr
    path.chmod(0o600)
    assert proxyd_command("--check", "--config", str(path)).stderr == ""


def test_version() -> None:
    result = proxyd_command("--version")
    assert result.returncode == 0
    assert result.stdout == f"proxyd {proxyd.__version__}\n"


def test_main_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert main(["--no-such-option"]) == 2
    assert main(["--help"]) == 0
    assert "EX_CONFIG" in capsys.readouterr().out
