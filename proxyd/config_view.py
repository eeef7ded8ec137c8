"""A loaded config shown to operators (SHOW CONFIG, reload summaries), passwords redacted,
and the check that a file holding passwords is not readable by other users."""

from __future__ import annotations

import os
import stat
from typing import Any

from proxyd.config import Config
from proxyd.config_fields import ConfigError, read_yaml

REDACTED = "***"


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain data in the file's own shape, passwords replaced by ``***``."""

    def seconds(value: float | None, word: str) -> float | str:
        return word if value is None else value

    return {
        "path": config.path,
        "listen": [str(address) for address in config.listen],
        "backend": {
            **(
                {"address": str(config.backend.address)}
                if len(config.backend.servers) < 2
                else {
                    "servers": [
                        str(e.address)
                        if (e.weight, e.max_connections) == (1, 0)
                        else {
                            "address": str(e.address),
                            "weight": e.weight,
                            "max_connections": e.max_connections,
                        }
                        for e in config.backend.entries
                    ],
                    "monitor_interval": config.backend.monitor_interval,
                    "monitor_user": config.backend.monitor_user,
                    "reads": config.backend.reads,
                    "max_replica_lag": config.backend.max_replica_lag,
                    "read_your_writes": config.backend.read_your_writes,
                    "read_your_writes_timeout": config.backend.read_your_writes_timeout,
                }
            ),
            "connect_timeout": config.backend.connect_timeout,
            "max_connecting": config.backend.max_connecting,
            "read_timeout": seconds(config.backend.read_timeout, "off"),
            "ping_timeout": config.backend.ping_timeout,
            "tls": {
                "mode": config.backend.tls.mode,
                "ca": config.backend.tls.ca,
                "cert": config.backend.tls.cert,
                "key": config.backend.tls.key,
                "server_name": config.backend.tls.server_name,
            },
        },
        "users": [
            {
                "name": user.name,
                "password": REDACTED,
                "backend_user": user.backend_user,
                "backend_password": REDACTED,
                "max_connections": user.max_connections,
                "require_tls": user.require_tls,
            }
            for user in config.users.values()
        ],
        "users_from_server": None
        if config.users_from_server is None
        else {
            "user": config.users_from_server.user,
            "password": REDACTED,
            "refresh": config.users_from_server.refresh,
        },
        "pool": {
            "mode": config.pool.mode,
            "max_size": config.pool.max_size,
            "min_idle": config.pool.min_idle,
            "max_lifetime": seconds(config.pool.max_lifetime, "auto"),
            "ping_interval": seconds(config.pool.ping_interval, "auto"),
            "acquire_timeout": config.pool.acquire_timeout,
        },
        "max_client_connections": config.max_client_connections,
        "client_login_timeout": config.client_login_timeout,
        "shutdown_timeout": config.shutdown_timeout,
        "shutdown_wait_for_clients": config.shutdown_wait_for_clients,
        "shutdown_delay": config.shutdown_delay,
        "retry": {
            "max_attempts": config.retry.max_attempts,
            "timeout": config.retry.timeout,
            "transaction_replay": config.retry.transaction_replay,
            "transaction_replay_max_size": config.retry.transaction_replay_max_size,
            "transaction_replay_attempts": config.retry.transaction_replay_attempts,
        },
        "admin": None
        if config.admin is None
        else {"listen": str(config.admin.listen), "user": config.admin.user, "password": REDACTED},
        "metrics": None if config.metrics is None else {"listen": str(config.metrics.listen)},
        "log": {"level": config.log.level, "format": config.log.format},
        "auth": {
            "failed_login_threshold": config.auth.failed_login_threshold,
            "failed_login_delay": config.auth.failed_login_delay,
            "failed_login_max_delay": config.auth.failed_login_max_delay,
            "max_logins_in_progress": config.auth.max_logins_in_progress,
            "rsa_key": config.auth.rsa_key_file,
        },
        "tls": {
            "mode": config.tls.mode,
            "cert": config.tls.cert,
            "key": config.tls.key,
            "ca": config.tls.ca,
        },
    }


def flatten_config(config: Config) -> dict[str, object]:
    """``{"pool.max_size": 20, "users[app].password": "***", ...}``, passwords redacted."""
    out: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                label = item["name"] if isinstance(item, dict) and "name" in item else index
                walk(item, f"{key}[{label}]")
        else:
            out[key] = value

    walk(redacted(config), "")
    return out


def secrets_warning(path: str) -> str:
    """What to tell when ``world_readable_secrets(path)``."""
    return (
        f"{path} is readable by other users and contains passwords; "
        f"run chmod o-r on it or use password_file/password_env"
    )


def world_readable_secrets(path: str | os.PathLike[str]) -> bool:
    """True if the file is readable by other users and holds a password in clear text
    (``password`` or ``backend_password`` rather than their ``_env``/``_file`` forms)."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        data = read_yaml(os.fspath(path))
    except (OSError, ConfigError):
        return False
    if not isinstance(data, dict):
        return False
    holders: list[object] = [data.get("admin"), data.get("users_from_server")]
    users = data.get("users")
    if isinstance(users, list):
        holders.extend(users)
    return any(
        isinstance(holder, dict)
        and any(holder.get(key) for key in ("password", "backend_password"))
        for holder in holders
    )
