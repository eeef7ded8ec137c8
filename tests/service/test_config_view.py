"""How the admin console and the reload log show a config: flat keys, no secrets."""

from __future__ import annotations

from typing import Any

from proxyd.config import Config, parse_config
from proxyd.config_view import flatten_config
from proxyd.console import normalise
from proxyd.reload import config_changes

BASE: dict[str, Any] = {
    "listen": "127.0.0.1:6033",
    "backend": {"address": "127.0.0.1:3306"},
    "users": [{"name": "app", "password": "s3cret"}],
    "admin": {"listen": "127.0.0.1:6032", "password": "adm1n"},
}


def config(**changes: Any) -> Config:
    data = {**BASE, **changes}
    return parse_config(data, "/etc/proxyd/proxyd.yaml")


def test_flat_keys_name_users_and_hide_passwords() -> None:
    flat = flatten_config(config())
    assert flat["pool.max_size"] == 20
    assert flat["listen[0]"] == "127.0.0.1:6033"
    assert flat["users[app].password"] == "***"
    assert flat["admin.password"] == "***"
    assert "s3cret" not in repr(flat) and "adm1n" not in repr(flat)


def test_changes_list_values_but_only_name_passwords() -> None:
    old = config()
    new = config(
        pool={"max_size": 5},
        users=[{"name": "app", "password": "other"}, {"name": "bi", "password": "x"}],
    )
    changes = config_changes(old, new)
    assert "pool.max_size: 20 -> 5" in changes
    assert "users[app].password changed" in changes
    assert "users[bi].password = ***" in changes
    assert not any("other" in change or "s3cret" in change for change in changes)
    assert config_changes(old, config()) == []


def test_statements_are_normalised() -> None:
    assert normalise("  show\n pools ;  ") == "SHOW POOLS"
    assert normalise("kill client 7;") == "KILL CLIENT 7"
