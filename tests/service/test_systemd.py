"""The systemd unit: valid for systemd-analyze, and it says what the service contract needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "proxyd.service"
SYSUSERS = REPO / "systemd" / "proxyd.sysusers"
INSTALLED_COMMAND = "/usr/bin/proxyd"


def systemd_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not installed; run scripts/setup (Debian package systemd)")
    return found


def unit_settings() -> dict[str, list[str]]:
    """[Service] settings; keys that repeat (ExecReload=) keep every value in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = systemd_tool("systemd-analyze")
    # verify insists that ExecStart's program exists; proxyd is not installed system-wide
    # here, so point the copy at the proxyd command of this environment.
    command = Path(sys.executable).with_name("proxyd")
    assert os.access(command, os.X_OK), f"{command} missing: pip install -e ."
    unit = tmp_path / "proxyd.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_COMMAND, str(command)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_unit_is_a_notify_service_with_reload_and_hardening() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["ExecStart"] == [f"{INSTALLED_COMMAND} --config /etc/proxyd/proxyd.yaml"]
    assert s["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert s["Restart"] == ["on-failure"]
    assert int(s["LimitNOFILE"][0]) >= 65536
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["CapabilityBoundingSet"] == [""]
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert s["User"] == ["proxyd"] or s.get("DynamicUser") == ["yes"]
    # An invalid config (exit 78, EX_CONFIG) is not worth restarting for.
    assert s["RestartPreventExitStatus"] == ["78"]


def test_sysusers_file_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = systemd_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        [sysusers, "--dry-run", f"--root={tmp_path}", "-"],
        input=SYSUSERS.read_text(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Creating user 'proxyd'" in result.stdout + result.stderr
