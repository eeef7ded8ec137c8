"""Load and validate proxyd's YAML configuration.

Everything a user can get wrong in the file is reported as one ConfigError naming the file,
the dotted key (``pool.max_size``, ``users[0].password``) and the reason, so that the CLI can
print a single line instead of a traceback. Passwords are resolved (from the file, the
environment or a secret file) at load time and never appear in reprs or error messages.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

__all__ = [
    "Address",
    "AdminConfig",
    "BackendConfig",
    "Config",
    "ConfigError",
    "LogConfig",
    "MetricsConfig",
    "PoolConfig",
    "RetryConfig",
    "UserConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "redacted",
    "world_readable_secrets",
]

POOL_MODES = ("transaction", "session")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

REDACTED = "***"


class ConfigError(Exception):
    """A configuration problem, rendered as ``path: key: reason`` on one line.

    ``key`` is empty for problems with the file as a whole (missing, unreadable, empty);
    for YAML syntax errors it is ``line N``.
    """

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        text = (
            f"{self.path}: {self.key}: {self.reason}" if self.key else f"{self.path}: {self.reason}"
        )
        # One line, whatever a library put into the reason.
        return " ".join(text.splitlines())


@dataclass(frozen=True, slots=True)
class Address:
    host: str  # IPv6 literals are stored without brackets, ready for socket calls
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: object) -> Address:
        """Parse ``host:port`` or ``[ipv6]:port``; raise ValueError with a reason."""
        if not isinstance(value, str):
            raise ValueError(f"expected 'host:port', got {_describe(value)}")
        text = value.strip()
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text:
            raise ValueError(f"expected 'host:port', got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host:
                raise ValueError(f"brackets are only for IPv6 addresses, got {text!r}")
        elif ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets, e.g. '[::1]:6033', got {text!r}")
        if not host:
            raise ValueError(f"missing host in {text!r} (use 0.0.0.0 or [::] for all addresses)")
        if any(c.isspace() for c in host) or "[" in host or "]" in host:
            raise ValueError(f"invalid host in {text!r}")
        if not port_text.isdigit():
            raise ValueError(f"port must be a number, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    address: Address
    connect_timeout: float
    max_connecting: int
    read_timeout: float | None  # None: statements may run as long as they like
    ping_timeout: float


@dataclass(frozen=True, slots=True)
class UserConfig:
    name: str
    password: str = field(repr=False)
    backend_user: str
    backend_password: str = field(repr=False)
    max_connections: int  # 0: unlimited


@dataclass(frozen=True, slots=True)
class PoolConfig:
    mode: str
    max_size: int
    min_idle: int
    max_lifetime: float | None  # None: auto, derived from the server's wait_timeout
    ping_interval: float | None  # None: auto
    acquire_timeout: float


@dataclass(frozen=True, slots=True)
class RetryConfig:
    max_attempts: int
    timeout: float


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Address
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: Address


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str
    format: str


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    listen: tuple[Address, ...]
    backend: BackendConfig
    users: dict[str, UserConfig]
    pool: PoolConfig
    retry: RetryConfig
    admin: AdminConfig | None
    metrics: MetricsConfig | None
    log: LogConfig
    max_client_connections: int
    client_login_timeout: float
    shutdown_timeout: float


# --- durations ---------------------------------------------------------------------------

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "expected a duration such as 500ms, 30s, 5m, 1h, 2h30m or a number of seconds"


def parse_duration(value: object) -> float:
    """Return seconds for ``500ms``, ``30s``, ``5m``, ``1h``, ``2h30m``, ``1.5`` or ``10``.

    Raises ValueError with a reason for anything else, including negative values.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{_DURATION_HINT}, got {_describe(value)}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


# --- YAML ----------------------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars and no duplicate keys.

    PyYAML implements YAML 1.1, where ``off``, ``no`` and ``on`` are booleans, ``1:30`` is
    the integer 90, ``0123`` is octal and ``2024-01-01`` is a date: a password ``no`` would
    arrive as False. Here only true/false are booleans and numbers are plain decimals;
    everything else stays the string the user wrote.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            # PyYAML silently keeps the last of two equal keys, which hides a second
            # `pool:` section or a pasted-over password. Merge keys (<<) may override.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    # SafeConstructor would read a leading zero as octal.
    assert isinstance(node, yaml.ScalarNode)
    return int(node.value, 10)


_Loader.add_constructor(_INT, _construct_decimal_int)

_UNQUOTED_IPV6 = re.compile(r"\[[0-9A-Fa-f:.%]*\]:[0-9]")


def _yaml_error(path: str, text: str, error: yaml.YAMLError) -> ConfigError:
    # The problem/mark fields only: str(error) quotes the offending source line, which
    # may be a password.
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return ConfigError(path, "", "invalid YAML")
    mark = error.problem_mark
    reason = "; ".join(filter(None, [error.context, error.problem]))
    reason = f"{reason} (column {mark.column + 1})"
    lines = text.splitlines()
    if mark.line < len(lines) and _UNQUOTED_IPV6.search(lines[mark.line]):
        reason += "; quote IPv6 addresses, e.g. '[::1]:6033'"
    return ConfigError(path, f"line {mark.line + 1}", reason)


def _read_yaml(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", f"not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, text, e) from None


# --- validation helpers ----------------------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class _Section:
    """One mapping of the config: checks its keys and converts values under dotted names."""

    def __init__(self, data: object, key: str, path: str, allowed: Iterable[str]) -> None:
        self.key = key
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path, key, f"expected a mapping, got {_describe(data)}")
        self.data: dict[object, object] = data
        allowed = tuple(allowed)
        for name in data:
            if name not in allowed:
                reason = "unknown key"
                close = difflib.get_close_matches(str(name), allowed, n=1)
                if close:
                    reason += f" (did you mean {close[0]!r}?)"
                raise ConfigError(path, self.key_of(str(name)), reason)

    def key_of(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key_of(name), reason)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, convert: Callable[[object], T], default: T = _MISSING) -> T:
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "missing")
            return default
        value = self.data[name]
        if value is None:
            raise self.error(name, "no value given")
        try:
            return convert(value)
        except ValueError as e:
            raise self.error(name, str(e)) from None

    def section(self, name: str, allowed: Iterable[str]) -> _Section:
        return _Section(self.data.get(name), self.key_of(name), self.path, allowed)


def _integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_describe(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError("must be greater than zero")
    return seconds


def _duration_or(word: str, *, zero_means_word: bool) -> Callable[[object], float | None]:
    def convert(value: object) -> float | None:
        # False: `off` as read by a plain YAML 1.1 loader (parse_config callers).
        if (isinstance(value, str) and value.strip().lower() == word) or (
            word == "off" and value is False
        ):
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError(
                f"expected {word!r} or a duration such as 30s, 5m or 1h, got {_describe(value)}"
            ) from None
        if seconds == 0:
            if zero_means_word:
                return None
            raise ValueError(f"must be greater than zero (or {word!r})")
        return seconds

    return convert


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def _secret(value: object) -> str:
    # Never echo the value: a wrongly typed password is still a password.
    if not isinstance(value, str):
        kind = _describe(value).split()[0]
        raise ValueError(f"expected a string, got {kind} (quote it in YAML)")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if isinstance(value, str) and value.lower() in options:
            return value.lower()
        raise ValueError(f"expected one of {', '.join(options)}, got {_describe(value)}")

    return convert


def _resolve_secret(section: _Section, base: str, config_dir: str) -> str | None:
    """Resolve ``base``, ``base_env`` or ``base_file``; None if none is given."""
    names = (base, f"{base}_env", f"{base}_file")
    given = [name for name in names if section.has(name)]
    if len(given) > 1:
        raise section.error(
            given[1], f"conflicts with {given[0]}: set only one of {', '.join(names)}"
        )
    if not given:
        return None
    name = given[0]
    if name == base:
        return section.get(name, _secret)
    if name.endswith("_env"):
        variable = section.get(name, _string)
        secret = os.environ.get(variable)
        if secret is None:
            raise section.error(name, f"environment variable {variable} is not set")
        if not secret:
            raise section.error(name, f"environment variable {variable} is empty")
        return secret
    secret_path = os.path.join(config_dir, os.path.expanduser(section.get(name, _string)))
    try:
        with open(secret_path, encoding="utf-8") as f:
            secret = f.read().rstrip("\r\n")
    except OSError as e:
        raise section.error(name, f"cannot read {secret_path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise section.error(name, f"{secret_path} is not UTF-8 text") from None
    if not secret:
        raise section.error(name, f"{secret_path} is empty")
    return secret


def _required_secret(section: _Section, base: str, config_dir: str) -> str:
    secret = _resolve_secret(section, base, config_dir)
    if secret is None:
        raise section.error(base, f"missing (set one of {base}, {base}_env or {base}_file)")
    return secret


# --- the config ------------------------------------------------------------------------------

_TOP_KEYS = (
    "listen",
    "backend",
    "users",
    "pool",
    "max_client_connections",
    "client_login_timeout",
    "shutdown_timeout",
    "retry",
    "admin",
    "metrics",
    "log",
)
_BACKEND_KEYS = ("address", "connect_timeout", "max_connecting", "read_timeout", "ping_timeout")
_USER_KEYS = (
    "name",
    "password",
    "password_env",
    "password_file",
    "backend_user",
    "backend_password",
    "backend_password_env",
    "backend_password_file",
    "max_connections",
)
_POOL_KEYS = ("mode", "max_size", "min_idle", "max_lifetime", "ping_interval", "acquire_timeout")
_RETRY_KEYS = ("max_attempts", "timeout")
_ADMIN_KEYS = ("listen", "user", "password", "password_env", "password_file")
_METRICS_KEYS = ("listen",)
_LOG_KEYS = ("level", "format")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate the config file; raise ConfigError on any problem."""
    path = os.fspath(path)
    data = _read_yaml(path)
    if data is None:
        raise ConfigError(path, "", "file is empty")
    return parse_config(data, path)


def parse_config(data: object, path: str) -> Config:
    """Validate already-loaded YAML data; ``path`` names the file in errors and anchors
    relative ``password_file`` paths."""
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping of settings, got {_describe(data)}")
    config_dir = os.path.dirname(path)
    top = _Section(data, "", path, _TOP_KEYS)

    listen = _parse_listen(top)
    backend = _parse_backend(top.section("backend", _BACKEND_KEYS))
    users = _parse_users(top, config_dir)
    pool = _parse_pool(top.section("pool", _POOL_KEYS))

    retry_section = top.section("retry", _RETRY_KEYS)
    retry = RetryConfig(
        max_attempts=retry_section.get("max_attempts", _integer(1), 3),
        timeout=retry_section.get("timeout", _positive_duration, 15.0),
    )

    admin = None
    if top.data.get("admin") is not None:
        section = top.section("admin", _ADMIN_KEYS)
        admin = AdminConfig(
            listen=section.get("listen", Address.parse, Address("127.0.0.1", 6032)),
            user=section.get("user", _string, "admin"),
            password=_required_secret(section, "password", config_dir),
        )

    metrics = None
    if top.data.get("metrics") is not None:
        section = top.section("metrics", _METRICS_KEYS)
        metrics = MetricsConfig(
            listen=section.get("listen", Address.parse, Address("127.0.0.1", 9633))
        )

    log_section = top.section("log", _LOG_KEYS)
    log = LogConfig(
        level=log_section.get("level", _choice(LOG_LEVELS), "info"),
        format=log_section.get("format", _choice(LOG_FORMATS), "text"),
    )

    _check_listeners_distinct(path, listen, admin, metrics)

    return Config(
        path=path,
        listen=listen,
        backend=backend,
        users=users,
        pool=pool,
        retry=retry,
        admin=admin,
        metrics=metrics,
        log=log,
        max_client_connections=top.get("max_client_connections", _integer(1), 10000),
        client_login_timeout=top.get("client_login_timeout", _positive_duration, 10.0),
        shutdown_timeout=top.get("shutdown_timeout", parse_duration, 30.0),
    )


def _parse_listen(top: _Section) -> tuple[Address, ...]:
    raw = top.get("listen", lambda value: value)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise top.error("listen", "must name at least one address")
    addresses: list[Address] = []
    for index, item in enumerate(items):
        key = f"listen[{index}]" if isinstance(raw, list) else "listen"
        try:
            address = Address.parse(item)
        except ValueError as e:
            raise ConfigError(top.path, key, str(e)) from None
        if address in addresses:
            raise ConfigError(top.path, key, f"{address} is listed twice")
        addresses.append(address)
    return tuple(addresses)


def _parse_backend(section: _Section) -> BackendConfig:
    return BackendConfig(
        address=section.get("address", Address.parse),
        connect_timeout=section.get("connect_timeout", _positive_duration, 5.0),
        max_connecting=section.get("max_connecting", _integer(1), 4),
        read_timeout=section.get("read_timeout", _duration_or("off", zero_means_word=True), None),
        ping_timeout=section.get("ping_timeout", _positive_duration, 5.0),
    )


def _parse_users(top: _Section, config_dir: str) -> dict[str, UserConfig]:
    raw = top.get("users", lambda value: value)
    if not isinstance(raw, list):
        raise top.error("users", f"expected a list of users, got {_describe(raw)}")
    if not raw:
        raise top.error("users", "must list at least one user")
    users: dict[str, UserConfig] = {}
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw):
        section = _Section(item, f"users[{index}]", top.path, _USER_KEYS)
        name = section.get("name", _string)
        if name in users:
            raise section.error(
                "name", f"duplicate user {name!r} (also users[{first_index[name]}])"
            )
        password = _required_secret(section, "password", config_dir)
        backend_password = _resolve_secret(section, "backend_password", config_dir)
        users[name] = UserConfig(
            name=name,
            password=password,
            backend_user=section.get("backend_user", _string, name),
            backend_password=password if backend_password is None else backend_password,
            max_connections=section.get("max_connections", _integer(0), 0),
        )
        first_index[name] = index
    return users


def _parse_pool(section: _Section) -> PoolConfig:
    max_size = section.get("max_size", _integer(1), 20)
    min_idle = section.get("min_idle", _integer(0), min(2, max_size))
    if min_idle > max_size:
        raise section.error(
            "min_idle", f"must not exceed pool.max_size ({max_size}), got {min_idle}"
        )
    return PoolConfig(
        mode=section.get("mode", _choice(POOL_MODES), "transaction"),
        max_size=max_size,
        min_idle=min_idle,
        max_lifetime=section.get("max_lifetime", _duration_or("auto", zero_means_word=False), None),
        ping_interval=section.get(
            "ping_interval", _duration_or("auto", zero_means_word=False), None
        ),
        acquire_timeout=section.get("acquire_timeout", _positive_duration, 10.0),
    )


def _check_listeners_distinct(
    path: str,
    listen: tuple[Address, ...],
    admin: AdminConfig | None,
    metrics: MetricsConfig | None,
) -> None:
    taken = {address: f"listen[{i}]" for i, address in enumerate(listen)}
    for key, address in (
        ("admin.listen", admin.listen if admin else None),
        ("metrics.listen", metrics.listen if metrics else None),
    ):
        if address is None:
            continue
        if address in taken:
            raise ConfigError(path, key, f"{address} is already used by {taken[address]}")
        taken[address] = key


# --- display and hygiene ---------------------------------------------------------------------


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain data in the file's own shape, passwords replaced by ``***``."""

    def seconds(value: float | None, word: str) -> float | str:
        return word if value is None else value

    return {
        "path": config.path,
        "listen": [str(address) for address in config.listen],
        "backend": {
            "address": str(config.backend.address),
            "connect_timeout": config.backend.connect_timeout,
            "max_connecting": config.backend.max_connecting,
            "read_timeout": seconds(config.backend.read_timeout, "off"),
            "ping_timeout": config.backend.ping_timeout,
        },
        "users": [
            {
                "name": user.name,
                "password": REDACTED,
                "backend_user": user.backend_user,
                "backend_password": REDACTED,
                "max_connections": user.max_connections,
            }
            for user in config.users.values()
        ],
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
        "retry": {"max_attempts": config.retry.max_attempts, "timeout": config.retry.timeout},
        "admin": None
        if config.admin is None
        else {"listen": str(config.admin.listen), "user": config.admin.user, "password": REDACTED},
        "metrics": None if config.metrics is None else {"listen": str(config.metrics.listen)},
        "log": {"level": config.log.level, "format": config.log.format},
    }


def world_readable_secrets(path: str | os.PathLike[str]) -> bool:
    """True if the file is readable by other users and holds a password in clear text
    (``password`` or ``backend_password`` rather than their ``_env``/``_file`` forms)."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        data = _read_yaml(os.fspath(path))
    except (OSError, ConfigError):
        return False
    if not isinstance(data, dict):
        return False
    holders: list[object] = [data.get("admin")]
    users = data.get("users")
    if isinstance(users, list):
        holders.extend(users)
    return any(
        isinstance(holder, dict)
        and any(holder.get(key) for key in ("password", "backend_password"))
        for holder in holders
    )
