"""proxyd's configuration: what the YAML file may say, and its loading and validation.

Everything a user can get wrong in the file is reported as one ConfigError naming the file,
the dotted key (``pool.max_size``, ``users[0].password``) and the reason, so that the CLI can
print a single line instead of a traceback. Passwords are resolved (from the file, the
environment or a secret file) at load time and never appear in reprs or error messages.

This module holds the schema (which keys exist, their defaults and the rules between them);
``proxyd.config_fields`` reads the YAML and the typed values under each key, and
``proxyd.config_view`` shows a loaded config (redacted) and checks the file's permissions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from proxyd.addresses import Address, ListenAddress, UnixAddress, listen_address
from proxyd.config_fields import (
    ConfigError,
    Section,
    boolean,
    choice,
    describe,
    duration_or,
    integer,
    parse_duration,
    positive_duration,
    read_yaml,
    required_secret,
    resolve_secret,
    size,
    string,
)
from proxyd.protocol import auth
from proxyd.tls import BackendTLSConfig, TLSConfig, parse_backend_tls, parse_tls

__all__ = [
    "Address",
    "AdminConfig",
    "AuthConfig",
    "BackendConfig",
    "Config",
    "ConfigError",
    "ListenAddress",
    "LogConfig",
    "MetricsConfig",
    "PoolConfig",
    "RetryConfig",
    "ServerEntry",
    "TLSConfig",
    "UnixAddress",
    "UserConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]

POOL_MODES = ("transaction", "session")
READ_ROUTES = ("primary", "replicas")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """The ``backend:`` section: the servers, and how proxyd connects to them."""

    address: Address  # the first of servers (backend.address is one server's shorthand)
    connect_timeout: float
    max_connecting: int
    read_timeout: float | None  # None: statements may run as long as they like
    ping_timeout: float
    tls: BackendTLSConfig = field(default_factory=BackendTLSConfig)
    # backend.servers: with more than one, a monitor finds the writable one (the primary).
    servers: tuple[Address, ...] = ()
    monitor_interval: float = 1.0
    # Whom the monitor logs in as (backend.monitor_user); None: the first user's backend
    # account.
    monitor_user: str | None = None
    monitor_password: str = field(default="", repr=False)
    # One server's share of reads (weight) and cap on proxyd's connections to it
    # (max_connections, 0: none but the pools' own): from its backend.servers entry.
    weight: int = 1
    max_connections: int = 0
    entries: tuple[ServerEntry, ...] = ()  # backend.servers with their weights and caps
    # Read routing: "primary" (every statement there) or "replicas" (autocommit reads on a
    # replica lagging less than max_replica_lag; read_your_writes waits there for the
    # client's last write, up to read_your_writes_timeout, then reads on the primary).
    reads: str = "primary"
    max_replica_lag: float = 5.0
    read_your_writes: bool = True
    read_your_writes_timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One entry of ``backend.servers``."""

    address: Address
    weight: int = 1
    max_connections: int = 0


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One entry of ``users:``: how a client logs in, and as whom proxyd logs in for it."""

    name: str
    password: str = field(repr=False)  # "" when only password_hash is known
    backend_user: str
    # None: proxyd logs in to the server with what a client's login reveals, SHA1(password)
    # (a password_hash user without backend_password, an account read from the server).
    backend_password: str | None = field(repr=False)
    max_connections: int  # 0: unlimited
    require_tls: bool = False  # refuse this user over plaintext
    password_hash: bytes | None = field(default=None, repr=False)  # SHA1(SHA1(password))
    from_server: bool = False  # read from the server (users_from_server), not users:

    @classmethod
    def own(cls, user: str, password: str) -> UserConfig:
        """An account proxyd logs in as for itself (the monitor, account lookups), the
        same name and password on both sides."""
        return cls(
            name=user,
            password=password,
            backend_user=user,
            backend_password=password,
            max_connections=0,
        )

    def credentials(self) -> auth.Credentials:
        if self.password_hash is not None:
            return auth.Credentials.of_hash(self.password_hash)
        return auth.Credentials.of(self.password.encode())


@dataclass(frozen=True, slots=True)
class UsersFromServerConfig:
    """The ``users_from_server:`` section: accounts not in ``users:`` are read from the
    server's mysql.user with this lookup account, cached for ``refresh`` seconds."""

    user: str
    password: str = field(repr=False)
    refresh: float = 60.0


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The ``pool:`` section: how many server connections per user, and their upkeep."""

    mode: str
    max_size: int
    min_idle: int
    max_lifetime: float | None  # None: auto, derived from the server's wait_timeout
    ping_interval: float | None  # None: auto
    acquire_timeout: float


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The ``auth:`` section: slowing password guessing, bounding logins in progress."""

    failed_login_threshold: int = 3
    failed_login_delay: float = 1.0  # 0: no delay
    failed_login_max_delay: float = 30.0
    max_logins_in_progress: int = 1000
    rsa_key_file: str | None = None  # None: a key pair generated at start
    rsa_key: Any = field(default=None, repr=False, compare=False)  # the loaded private key


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """The ``retry:`` section: re-running a read whose server connection was lost."""

    max_attempts: int
    timeout: float
    # A transaction whose server connection was lost is run again and checked. Off by
    # default until the replay covers every case of issue 18 (see README, Not built yet).
    transaction_replay: bool = False
    transaction_replay_max_size: int = 1 << 20  # bytes of statements kept per transaction
    transaction_replay_attempts: int = 3


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The ``admin:`` section: the console's listener and account (absent: no console)."""

    listen: Address
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The ``metrics:`` section: the Prometheus endpoint (absent: none)."""

    listen: Address


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The ``log:`` section."""

    level: str
    format: str


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file, validated; see config/proxyd.yaml for every key."""

    path: str
    listen: tuple[ListenAddress, ...]
    backend: BackendConfig
    users: dict[str, UserConfig]
    users_from_server: UsersFromServerConfig | None
    pool: PoolConfig
    retry: RetryConfig
    admin: AdminConfig | None
    metrics: MetricsConfig | None
    log: LogConfig
    tls: TLSConfig
    auth: AuthConfig
    max_client_connections: int
    client_login_timeout: float
    shutdown_timeout: float
    # SIGTERM: keep serving connected clients until they leave (True), rather than closing
    # idle ones at once; /readyz says "stopping" for shutdown_delay before the listeners
    # close, so that a load balancer's health check takes proxyd out first.
    shutdown_wait_for_clients: bool = False
    shutdown_delay: float = 0.0


# --- the config ------------------------------------------------------------------------------

_TOP_KEYS = (
    "listen",
    "backend",
    "users",
    "users_from_server",
    "pool",
    "max_client_connections",
    "client_login_timeout",
    "shutdown_timeout",
    "shutdown_wait_for_clients",
    "shutdown_delay",
    "retry",
    "admin",
    "metrics",
    "log",
    "tls",
    "auth",
)
_BACKEND_KEYS = (
    "address",
    "servers",
    "monitor_interval",
    "monitor_user",
    "monitor_password",
    "monitor_password_env",
    "monitor_password_file",
    "reads",
    "max_replica_lag",
    "read_your_writes",
    "read_your_writes_timeout",
    "connect_timeout",
    "max_connecting",
    "read_timeout",
    "ping_timeout",
    "tls",
)
_SERVER_KEYS = ("address", "weight", "max_connections")
_USER_KEYS = (
    "name",
    "password",
    "password_env",
    "password_file",
    "password_hash",
    "backend_user",
    "backend_password",
    "backend_password_env",
    "backend_password_file",
    "max_connections",
    "require_tls",
)
_POOL_KEYS = ("mode", "max_size", "min_idle", "max_lifetime", "ping_interval", "acquire_timeout")
_RETRY_KEYS = (
    "max_attempts",
    "timeout",
    "transaction_replay",
    "transaction_replay_max_size",
    "transaction_replay_attempts",
)
_AUTH_KEYS = (
    "failed_login_threshold",
    "failed_login_delay",
    "failed_login_max_delay",
    "max_logins_in_progress",
    "rsa_key",
)
_USERS_FROM_SERVER_KEYS = ("user", "password", "password_env", "password_file", "refresh")
_ADMIN_KEYS = ("listen", "user", "password", "password_env", "password_file")
_METRICS_KEYS = ("listen",)
_LOG_KEYS = ("level", "format")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate the config file; raise ConfigError on any problem."""
    path = os.fspath(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(path, "", "file is empty")
    return parse_config(data, path)


def parse_config(data: object, path: str) -> Config:
    """Validate already-loaded YAML data; ``path`` names the file in errors and anchors
    relative ``password_file`` paths."""
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"expected a mapping of settings, got {describe(data)}")
    config_dir = os.path.dirname(path)
    top = Section(data, "", path, _TOP_KEYS)

    listen = _parse_listen(top)
    backend = _parse_backend(top.section("backend", _BACKEND_KEYS), config_dir)
    users_from_server = None
    if top.data.get("users_from_server") is not None:
        section = top.section("users_from_server", _USERS_FROM_SERVER_KEYS)
        users_from_server = UsersFromServerConfig(
            user=section.get("user", string),
            password=required_secret(section, "password", config_dir),
            refresh=section.get("refresh", positive_duration, 60.0),
        )
    users = _parse_users(top, config_dir, users_from_server is not None)
    monitor_account = backend.monitor_user is not None or any(
        user.backend_password is not None for user in users.values()
    )
    if len(backend.servers) > 1 and not monitor_account:
        raise ConfigError(
            path,
            "backend.monitor_user",
            "missing: with several servers the monitor needs an account to log in as"
            " (or a user of users: with a password)",
        )
    pool = _parse_pool(top.section("pool", _POOL_KEYS))

    retry_section = top.section("retry", _RETRY_KEYS)
    retry = RetryConfig(
        max_attempts=retry_section.get("max_attempts", integer(1), 3),
        timeout=retry_section.get("timeout", positive_duration, 15.0),
        transaction_replay=retry_section.get("transaction_replay", boolean, False),
        transaction_replay_max_size=retry_section.get("transaction_replay_max_size", size, 1 << 20),
        transaction_replay_attempts=retry_section.get("transaction_replay_attempts", integer(1), 3),
    )

    admin = None
    if top.data.get("admin") is not None:
        section = top.section("admin", _ADMIN_KEYS)
        admin = AdminConfig(
            listen=section.get("listen", Address.parse, Address("127.0.0.1", 6032)),
            user=section.get("user", string, "admin"),
            password=required_secret(section, "password", config_dir),
        )

    metrics = None
    if top.data.get("metrics") is not None:
        section = top.section("metrics", _METRICS_KEYS)
        metrics = MetricsConfig(
            listen=section.get("listen", Address.parse, Address("127.0.0.1", 9633))
        )

    log_section = top.section("log", _LOG_KEYS)
    log = LogConfig(
        level=log_section.get("level", choice(LOG_LEVELS), "info"),
        format=log_section.get("format", choice(LOG_FORMATS), "text"),
    )

    tls = parse_tls(top, config_dir)
    auth_section = top.section("auth", _AUTH_KEYS)
    auth = AuthConfig(
        failed_login_threshold=auth_section.get("failed_login_threshold", integer(0), 3),
        failed_login_delay=auth_section.get("failed_login_delay", parse_duration, 1.0),
        failed_login_max_delay=auth_section.get("failed_login_max_delay", parse_duration, 30.0),
        max_logins_in_progress=auth_section.get("max_logins_in_progress", integer(1), 1000),
        **_rsa_key(auth_section, config_dir),
    )
    _check_listeners_distinct(path, listen, admin, metrics)

    return Config(
        path=path,
        listen=listen,
        backend=backend,
        users=users,
        users_from_server=users_from_server,
        pool=pool,
        retry=retry,
        admin=admin,
        metrics=metrics,
        log=log,
        tls=tls,
        auth=auth,
        max_client_connections=top.get("max_client_connections", integer(1), 10000),
        client_login_timeout=top.get("client_login_timeout", positive_duration, 10.0),
        shutdown_timeout=top.get("shutdown_timeout", parse_duration, 30.0),
        shutdown_wait_for_clients=top.get("shutdown_wait_for_clients", boolean, False),
        shutdown_delay=top.get("shutdown_delay", parse_duration, 0.0),
    )


def _parse_listen(top: Section) -> tuple[ListenAddress, ...]:
    raw = top.get("listen", lambda value: value)
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise top.error("listen", "must name at least one address")
    addresses: list[ListenAddress] = []
    for index, item in enumerate(items):
        key = f"listen[{index}]" if isinstance(raw, list) else "listen"
        try:
            address = listen_address(item, key, top.path)
        except ValueError as e:
            raise ConfigError(top.path, key, str(e)) from None
        if address in addresses:
            raise ConfigError(top.path, key, f"{address} is listed twice")
        addresses.append(address)
    return tuple(addresses)


def _parse_backend(section: Section, config_dir: str) -> BackendConfig:
    entries = _parse_servers(section)
    monitor_user = section.get("monitor_user", string, None)
    monitor_password = resolve_secret(section, "monitor_password", config_dir)
    if monitor_password is not None and monitor_user is None:
        raise section.error("monitor_user", "missing (monitor_password is set)")
    reads = section.get("reads", choice(READ_ROUTES), "primary")
    return BackendConfig(
        address=entries[0].address,
        servers=tuple(e.address for e in entries),
        entries=entries,
        weight=entries[0].weight,
        max_connections=entries[0].max_connections,
        monitor_interval=section.get("monitor_interval", positive_duration, 1.0),
        monitor_user=monitor_user,
        monitor_password=monitor_password or "",
        reads=reads,
        max_replica_lag=section.get("max_replica_lag", parse_duration, 5.0),
        read_your_writes=section.get("read_your_writes", boolean, True),
        read_your_writes_timeout=section.get("read_your_writes_timeout", parse_duration, 1.0),
        connect_timeout=section.get("connect_timeout", positive_duration, 5.0),
        max_connecting=section.get("max_connecting", integer(1), 4),
        read_timeout=section.get("read_timeout", duration_or("off", zero_means_word=True), None),
        ping_timeout=section.get("ping_timeout", positive_duration, 5.0),
        tls=parse_backend_tls(section, config_dir),
    )


def _parse_servers(section: Section) -> tuple[ServerEntry, ...]:
    """backend.servers (a list of host:port, or of {address, weight, max_connections}),
    or backend.address for one server."""
    if section.has("address") and section.has("servers"):
        raise section.error("servers", "set either address (one server) or servers, not both")
    if not section.has("servers"):
        return (ServerEntry(section.get("address", Address.parse)),)
    raw = section.get("servers", lambda value: value)
    if not isinstance(raw, list) or not raw:
        raise section.error("servers", f"expected a list of server addresses, got {describe(raw)}")
    entries: list[ServerEntry] = []
    for index, item in enumerate(raw):
        if isinstance(item, dict):
            entry = Section(item, section.key_of(f"servers[{index}]"), section.path, _SERVER_KEYS)
            server = ServerEntry(
                entry.get("address", Address.parse),
                entry.get("weight", integer(0), 1),
                entry.get("max_connections", integer(0), 0),
            )
        else:
            try:
                server = ServerEntry(Address.parse(item))
            except ValueError as e:
                raise section.error(f"servers[{index}]", str(e)) from None
        if any(e.address == server.address for e in entries):
            raise section.error(f"servers[{index}]", f"{server.address} is listed twice")
        entries.append(server)
    return tuple(entries)


def _rsa_key(section: Section, config_dir: str) -> dict[str, Any]:
    if not section.has("rsa_key"):
        return {}
    path = os.path.join(config_dir, os.path.expanduser(section.get("rsa_key", string)))
    try:
        with open(path, "rb") as f:
            key = auth.load_rsa_key(f.read())
    except (OSError, ValueError, TypeError) as e:
        raise section.error("rsa_key", f"cannot use {path} as an RSA private key: {e}") from None
    return {"rsa_key_file": path, "rsa_key": key}


def _parse_users(top: Section, config_dir: str, from_server: bool) -> dict[str, UserConfig]:
    raw = top.get("users", lambda value: value) if top.has("users") or not from_server else []
    if not isinstance(raw, list):
        raise top.error("users", f"expected a list of users, got {describe(raw)}")
    if not raw and not from_server:
        raise top.error("users", "must list at least one user (or set users_from_server)")
    users: dict[str, UserConfig] = {}
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw):
        section = Section(item, f"users[{index}]", top.path, _USER_KEYS)
        name = section.get("name", string)
        if name in users:
            raise section.error(
                "name", f"duplicate user {name!r} (also users[{first_index[name]}])"
            )
        password_hash = None
        if section.has("password_hash"):
            if resolve_secret(section, "password", config_dir) is not None:
                raise section.error("password_hash", "set either password or password_hash")
            password_hash = section.get("password_hash", _native_hash)
            password = ""
        else:
            password = required_secret(section, "password", config_dir)
        backend_password = resolve_secret(section, "backend_password", config_dir)
        if backend_password is None and password_hash is None:
            backend_password = password
        users[name] = UserConfig(
            name=name,
            password=password,
            backend_user=section.get("backend_user", string, name),
            backend_password=backend_password,
            max_connections=section.get("max_connections", integer(0), 0),
            require_tls=section.get("require_tls", boolean, False),
            password_hash=password_hash,
        )
        first_index[name] = index
    return users


def _native_hash(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    try:
        return auth.parse_native_hash(value) if value else b""
    except ValueError:
        raise ValueError(
            "expected '*' followed by 40 hex digits (mysql.user's authentication_string"
            " of a mysql_native_password account), or '' for no password"
        ) from None


def _parse_pool(section: Section) -> PoolConfig:
    max_size = section.get("max_size", integer(1), 20)
    min_idle = section.get("min_idle", integer(0), min(2, max_size))
    if min_idle > max_size:
        raise section.error(
            "min_idle", f"must not exceed pool.max_size ({max_size}), got {min_idle}"
        )
    return PoolConfig(
        mode=section.get("mode", choice(POOL_MODES), "transaction"),
        max_size=max_size,
        min_idle=min_idle,
        max_lifetime=section.get("max_lifetime", duration_or("auto", zero_means_word=False), None),
        ping_interval=section.get(
            "ping_interval", duration_or("auto", zero_means_word=False), None
        ),
        acquire_timeout=section.get("acquire_timeout", positive_duration, 10.0),
    )


def _check_listeners_distinct(
    path: str,
    listen: tuple[ListenAddress, ...],
    admin: AdminConfig | None,
    metrics: MetricsConfig | None,
) -> None:
    taken: dict[ListenAddress, str] = {address: f"listen[{i}]" for i, address in enumerate(listen)}
    for key, address in (
        ("admin.listen", admin.listen if admin else None),
        ("metrics.listen", metrics.listen if metrics else None),
    ):
        if address is None:
            continue
        if address in taken:
            raise ConfigError(path, key, f"{address} is already used by {taken[address]}")
        taken[address] = key
