"""proxyd.config: the example loads, durations parse, every mistake is one clear line."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from proxyd.config import (
    Address,
    ConfigError,
    load_config,
    parse_config,
    parse_duration,
)
from proxyd.config_view import redacted, world_readable_secrets

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "proxyd.yaml"

MINIMAL = """\
listen: 127.0.0.1:6033
backend:
  address: 127.0.0.1:3306
users:
  - name: app
    password: "apppw"
"""


def write(tmp_path: Path, text: str, name: str = "proxyd.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.path == path
    assert "\n" not in str(error)
    return error


# --- the example and the defaults ----------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(str(EXAMPLE))
    assert config.listen == (Address("127.0.0.1", 6033),)
    assert config.backend.address == Address("127.0.0.1", 3306)
    assert config.backend.read_timeout is None
    assert config.backend.connect_timeout == 5.0
    assert config.pool.mode == "transaction"
    assert (config.pool.max_size, config.pool.min_idle) == (20, 2)
    assert config.pool.max_lifetime is None
    assert config.pool.ping_interval is None
    assert list(config.users) == ["app"]
    assert config.users["app"].backend_user == "app"
    assert config.users["app"].backend_password == config.users["app"].password
    assert config.admin is not None and config.admin.listen == Address("127.0.0.1", 6032)
    assert config.metrics is not None and str(config.metrics.listen) == "127.0.0.1:9633"
    assert (config.log.level, config.log.format) == ("info", "text")


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.admin is None
    assert config.metrics is None
    assert config.backend.max_connecting == 4
    assert config.backend.ping_timeout == 5.0
    assert config.pool.acquire_timeout == 10.0
    assert config.retry.max_attempts == 3
    assert config.retry.timeout == 15.0
    assert config.max_client_connections == 10000
    assert config.client_login_timeout == 10.0
    assert config.shutdown_timeout == 30.0
    assert config.users["app"].max_connections == 0


def test_listen_list_and_ipv6(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL.replace("listen: 127.0.0.1:6033", 'listen: [127.0.0.1:6033, "[::1]:6033"]'),
        )
    )
    assert config.listen == (Address("127.0.0.1", 6033), Address("::1", 6033))
    assert str(config.listen[1]) == "[::1]:6033"


def test_yaml_1_1_surprises_stay_strings(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL.replace(
                'password: "apppw"', "password: no\n    backend_user: 2024-01-01"
            ).replace("127.0.0.1:3306", "127.0.0.1:3306\n  read_timeout: off"),
        )
    )
    assert config.users["app"].password == "no"
    assert config.users["app"].backend_user == "2024-01-01"
    assert config.backend.read_timeout is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (10, 10.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2h30m", 9000.0),
        ("1m30s", 90.0),
        (" 30s ", 30.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "abc", "5x", "s", "5 s", "-1s", -1, "1.2.3s", True, None, [], float("inf")]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_duration(value)


def test_durations_in_config(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent("""\
        pool:
          max_lifetime: 1h
          ping_interval: 30
          acquire_timeout: 500ms
        """)
    config = load_config(write(tmp_path, text))
    assert config.pool.max_lifetime == 3600.0
    assert config.pool.ping_interval == 30.0
    assert config.pool.acquire_timeout == 0.5


# --- errors: one line, file, dotted key, reason ----------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL + "pool:\n  mode: [transaction\n")
    assert error.key.startswith("line ")
    assert str(error).startswith(f"{error.path}: line ")


def test_bad_yaml_does_not_quote_the_source(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL.replace('"apppw"', '"s3cret: oops'))
    assert "s3cret" not in str(error)


def test_unquoted_ipv6_gets_a_hint(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL.replace("listen: 127.0.0.1:6033", "listen: [::1]:6033"))
    assert error.key == "line 1"
    assert "quote IPv6" in error.reason


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL + "pool:\n  max_size: 5\npool:\n  max_size: 6\n")
    assert error.key == "line 9"
    assert "duplicate key 'pool'" in error.reason


@pytest.mark.parametrize("text", ["", "# only comments\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert load_error(tmp_path, text).reason == "file is empty"


def test_not_a_mapping(tmp_path: Path) -> None:
    error = load_error(tmp_path, "- a\n- b\n")
    assert str(error) == f"{error.path}: expected a mapping of settings, got a list"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            MINIMAL + "pool:\n  max_sise: 5\n",
            "pool.max_sise",
            "unknown key (did you mean 'max_size'?)",
        ),
        (MINIMAL + "lsten: x\n", "lsten", "unknown key (did you mean 'listen'?)"),
        (
            MINIMAL + "    passwd_env: X\n",
            "users[0].passwd_env",
            "unknown key (did you mean 'password_env'?)",
        ),
        (MINIMAL + "pool: 5\n", "pool", "expected a mapping, got integer 5"),
        (
            MINIMAL + "pool:\n  max_size: many\n",
            "pool.max_size",
            "expected an integer, got string 'many'",
        ),
        (
            MINIMAL + "pool:\n  max_size: 2.5\n",
            "pool.max_size",
            "expected an integer, got number 2.5",
        ),
        (MINIMAL + "pool:\n  max_size: 0\n", "pool.max_size", "must be at least 1, got 0"),
        (
            MINIMAL + "pool:\n  max_size: 2\n  min_idle: 3\n",
            "pool.min_idle",
            "must not exceed pool.max_size (2), got 3",
        ),
        (
            MINIMAL + "pool:\n  mode: statement\n",
            "pool.mode",
            "expected one of transaction, session, got string 'statement'",
        ),
        (
            MINIMAL + "pool:\n  max_lifetime: 0\n",
            "pool.max_lifetime",
            "must be greater than zero (or 'auto')",
        ),
        (MINIMAL + "pool:\n  acquire_timeout:\n", "pool.acquire_timeout", "no value given"),
        (
            MINIMAL + "log:\n  level: verbose\n",
            "log.level",
            "expected one of debug, info, warning, error, got string 'verbose'",
        ),
        (
            MINIMAL + "log:\n  format: xml\n",
            "log.format",
            "expected one of text, json, got string 'xml'",
        ),
        (
            MINIMAL + "retry:\n  max_attempts: 0\n",
            "retry.max_attempts",
            "must be at least 1, got 0",
        ),
        (MINIMAL + "shutdown_timeout: -5\n", "shutdown_timeout", "must not be negative, got -5"),
        (MINIMAL + "client_login_timeout: soon\n", "client_login_timeout", "expected a duration"),
        (
            MINIMAL.replace("127.0.0.1:3306", "db.internal:99999"),
            "backend.address",
            "port must be between 1 and 65535, got 99999",
        ),
        (
            MINIMAL.replace("127.0.0.1:3306", "db.internal"),
            "backend.address",
            "expected 'host:port'",
        ),
        (
            MINIMAL.replace("127.0.0.1:3306", "::1:3306"),
            "backend.address",
            "write IPv6 addresses in brackets",
        ),
        (
            MINIMAL.replace("  address: 127.0.0.1:3306\n", "  connect_timeout: 1s\n"),
            "backend.address",
            "missing",
        ),
        (MINIMAL.replace("listen: 127.0.0.1:6033\n", ""), "listen", "missing"),
        (
            MINIMAL.replace("listen: 127.0.0.1:6033", "listen: [a:1, a:1]"),
            "listen[1]",
            "a:1 is listed twice",
        ),
        (
            MINIMAL.replace("listen: 127.0.0.1:6033", "listen: []"),
            "listen",
            "must name at least one address",
        ),
        (
            MINIMAL.replace("listen: 127.0.0.1:6033", "listen: 6033"),
            "listen",
            "expected 'host:port', got integer 6033",
        ),
        (
            MINIMAL + "admin:\n  listen: 127.0.0.1:6033\n  password: x\n",
            "admin.listen",
            "127.0.0.1:6033 is already used by listen[0]",
        ),
        (
            MINIMAL + "admin:\n  user: root\n",
            "admin.password",
            "missing (set one of password, password_env or password_file)",
        ),
    ],
)
def test_errors_name_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    error = load_error(tmp_path, text)
    assert error.key == key
    assert error.reason.startswith(reason)
    assert str(error) == f"{error.path}: {key}: {error.reason}"


@pytest.mark.parametrize(
    ("users", "key", "reason"),
    [
        ("users: []\n", "users", "must list at least one user"),
        ("users:\n", "users", "no value given"),
        ("users:\n  app: {password: x}\n", "users", "expected a list of users, got a mapping"),
        ("users:\n  - app\n", "users[0]", "expected a mapping, got string 'app'"),
        ("users:\n  - password: x\n", "users[0].name", "missing"),
        (
            "users:\n  - name: app\n",
            "users[0].password",
            "missing (set one of password, password_env or password_file)",
        ),
        (
            "users:\n  - {name: app, password: x}\n  - {name: app, password: y}\n",
            "users[1].name",
            "duplicate user 'app' (also users[0])",
        ),
        (
            "users:\n  - {name: app, password: x, password_env: APP_PW}\n",
            "users[0].password_env",
            "conflicts with password",
        ),
        (
            "users:\n  - {name: app, password: 12345}\n",
            "users[0].password",
            "expected a string, got integer (quote it in YAML)",
        ),
        (
            "users:\n  - {name: app, password: x, max_connections: -1}\n",
            "users[0].max_connections",
            "must be at least 0",
        ),
        (
            "users:\n  - {name: app, password_hash: '*12AB'}\n",
            "users[0].password_hash",
            "expected '*' followed by 40 hex digits",
        ),
        (
            f"users:\n  - {{name: app, password: x, password_hash: '*{'A' * 40}'}}\n",
            "users[0].password_hash",
            "set either password or password_hash",
        ),
    ],
)
def test_user_errors(tmp_path: Path, users: str, key: str, reason: str) -> None:
    text = MINIMAL.split("users:")[0] + users
    error = load_error(tmp_path, text)
    assert (error.key, error.reason[: len(reason)]) == (key, reason)


def test_password_hash_and_accounts_from_the_server(tmp_path: Path) -> None:
    hashed = MINIMAL.replace('password: "apppw"', f"password_hash: '*{'AB' * 20}'")
    user = load_config(write(tmp_path, hashed)).users["app"]
    assert user.password_hash == bytes.fromhex("AB" * 20) and user.backend_password is None
    # users_from_server: users: may then be left out; the lookup password is a secret.
    text = MINIMAL.split("users:")[0] + (
        "users_from_server:\n  user: lookup\n  password: lookuppw\n  refresh: 5s\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.users == {}
    assert config.users_from_server is not None and config.users_from_server.refresh == 5.0
    assert redacted(config)["users_from_server"]["password"] == "***"
    readable = write(tmp_path, text)
    os.chmod(readable, 0o644)
    assert world_readable_secrets(readable)  # the lookup password counts as a secret
    error = load_error(tmp_path, text.replace("  password: lookuppw\n", ""))
    assert error.key == "users_from_server.password"


def test_rsa_key_file_is_checked(tmp_path: Path) -> None:
    (tmp_path / "not-a-key.pem").write_text("hello")
    error = load_error(tmp_path, MINIMAL + "auth:\n  rsa_key: not-a-key.pem\n")
    assert error.key == "auth.rsa_key" and "not-a-key.pem" in error.reason


def test_wrongly_typed_password_is_not_echoed(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL.replace('"apppw"', "987654"))
    assert "987654" not in str(error)


# --- secrets ---------------------------------------------------------------------------------


def test_password_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYD_TEST_PW", "from-env")
    config = load_config(
        write(tmp_path, MINIMAL.replace('password: "apppw"', "password_env: PROXYD_TEST_PW"))
    )
    assert config.users["app"].password == "from-env"
    assert config.users["app"].backend_password == "from-env"


def test_password_env_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROXYD_TEST_PW", raising=False)
    error = load_error(
        tmp_path, MINIMAL.replace('password: "apppw"', "password_env: PROXYD_TEST_PW")
    )
    assert error.key == "users[0].password_env"
    assert error.reason == "environment variable PROXYD_TEST_PW is not set"


def test_password_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "app.pw").write_text("from-file\n")
    (tmp_path / "server.pw").write_text("server-side\r\n")
    text = MINIMAL.replace(
        'password: "apppw"',
        "password_file: app.pw\n    backend_user: app_rw\n    backend_password_file: server.pw",
    )
    user = load_config(write(tmp_path, text)).users["app"]
    assert (user.password, user.backend_user, user.backend_password) == (
        "from-file",
        "app_rw",
        "server-side",
    )


def test_password_file_missing(tmp_path: Path) -> None:
    error = load_error(tmp_path, MINIMAL.replace('password: "apppw"', "password_file: nope.pw"))
    assert error.key == "users[0].password_file"
    assert error.reason.startswith("cannot read ")
    assert error.reason.endswith("nope.pw: No such file or directory")


def test_admin_password_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYD_ADMIN_PW", "adm")
    config = load_config(write(tmp_path, MINIMAL + "admin:\n  password_env: PROXYD_ADMIN_PW\n"))
    assert config.admin is not None
    assert (config.admin.user, config.admin.password) == ("admin", "adm")


def test_reprs_and_redacted_hide_passwords() -> None:
    config = load_config(str(EXAMPLE))
    assert "apppw" not in repr(config)
    assert "adminpw" not in repr(config)
    shown = redacted(config)
    assert "apppw" not in repr(shown) and "adminpw" not in repr(shown)
    assert shown["users"][0]["password"] == "***"
    assert shown["users"][0]["backend_password"] == "***"
    assert shown["admin"]["password"] == "***"
    assert shown["backend"]["read_timeout"] == "off"
    assert shown["pool"]["max_lifetime"] == "auto"
    assert shown["listen"] == ["127.0.0.1:6033"]


def test_world_readable_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    os.chmod(path, 0o644)
    assert world_readable_secrets(path)
    os.chmod(path, 0o640)
    assert not world_readable_secrets(path)

    monkeypatch.setenv("PROXYD_TEST_PW", "x")
    path = write(
        tmp_path, MINIMAL.replace('password: "apppw"', "password_env: PROXYD_TEST_PW"), "env.yaml"
    )
    os.chmod(path, 0o644)
    assert not world_readable_secrets(path)


def test_parse_config_accepts_plain_yaml_data() -> None:
    # What a test or a reload handler builds with yaml.safe_load: `off` arrives as False.
    config = parse_config(
        {
            "listen": ["127.0.0.1:6033"],
            "backend": {"address": "127.0.0.1:3306", "read_timeout": False},
            "users": [{"name": "app", "password": "pw", "backend_user": "other"}],
            "pool": {"mode": "session", "max_size": 1},
        },
        "<test>",
    )
    assert config.backend.read_timeout is None
    assert config.pool.mode == "session"
    assert config.pool.min_idle == 1
    assert config.users["app"].backend_user == "other"


# --- several servers -------------------------------------------------------------------------


def test_backend_servers(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  address: 127.0.0.1:3306\n",
        "  servers:\n    - 10.0.0.1:3306\n    - address: 10.0.0.2:3307\n"
        "  monitor_interval: 500ms\n",
    )
    config = load_config(write(tmp_path, text))
    backend = config.backend
    assert backend.servers == (Address("10.0.0.1", 3306), Address("10.0.0.2", 3307))
    assert backend.address == Address("10.0.0.1", 3306) and backend.monitor_interval == 0.5
    assert redacted(config)["backend"]["servers"] == ["10.0.0.1:3306", "10.0.0.2:3307"]
    # Reads stay on the primary unless asked; read-your-writes is on when they move.
    assert (backend.reads, backend.max_replica_lag, backend.read_your_writes) == (
        "primary",
        5.0,
        True,
    )
    routed = load_config(
        write(
            tmp_path,
            text.replace(
                "    - address: 10.0.0.2:3307\n",
                "    - {address: 10.0.0.2:3307, weight: 3, max_connections: 50}\n"
                "  reads: replicas\n  max_replica_lag: 2s\n  read_your_writes_timeout: 250ms\n",
            ),
        )
    )
    assert [(e.weight, e.max_connections) for e in routed.backend.entries] == [(1, 0), (3, 50)]
    assert (routed.backend.reads, routed.backend.max_replica_lag) == ("replicas", 2.0)
    assert routed.backend.read_your_writes_timeout == 0.25
    assert redacted(routed)["backend"]["servers"][1] == {
        "address": "10.0.0.2:3307",
        "weight": 3,
        "max_connections": 50,
    }
    # backend.address alone is one server.
    one = load_config(write(tmp_path, MINIMAL)).backend
    assert one.servers == (Address("127.0.0.1", 3306),)


@pytest.mark.parametrize(
    ("backend", "key", "reason"),
    [
        (
            "  address: 10.0.0.1:3306\n  servers: [10.0.0.2:3306]\n",
            "backend.servers",
            "set either address (one server) or servers, not both",
        ),
        ("  servers: []\n", "backend.servers", "expected a list of server addresses"),
        (
            "  servers: [10.0.0.1:3306, 10.0.0.1:3306]\n",
            "backend.servers[1]",
            "10.0.0.1:3306 is listed twice",
        ),
        ("  servers: [10.0.0.1]\n", "backend.servers[0]", "expected 'host:port'"),
        (
            "  servers:\n    - {address: 10.0.0.1:3306, wieght: 2}\n",
            "backend.servers[0].wieght",
            "unknown key (did you mean 'weight'?)",
        ),
        (
            "  servers:\n    - {address: 10.0.0.1:3306, weight: -1}\n",
            "backend.servers[0].weight",
            "must be at least 0",
        ),
        (
            "  servers: [10.0.0.1:3306]\n  reads: replica\n",
            "backend.reads",
            "expected one of primary, replicas",
        ),
        (
            "  servers: [10.0.0.1:3306]\n  monitor_password: x\n",
            "backend.monitor_user",
            "missing (monitor_password is set)",
        ),
    ],
)
def test_backend_server_errors(tmp_path: Path, backend: str, key: str, reason: str) -> None:
    text = MINIMAL.replace("  address: 127.0.0.1:3306\n", backend)
    error = load_error(tmp_path, text)
    assert (error.key, error.reason[: len(reason)]) == (key, reason)


def test_several_servers_need_an_account_for_the_monitor(tmp_path: Path) -> None:
    text = (
        "listen: 127.0.0.1:6033\nbackend:\n  servers: [10.0.0.1:3306, 10.0.0.2:3306]\n"
        "users_from_server:\n  user: lookup\n  password: x\n"
    )
    error = load_error(tmp_path, text)
    assert error.key == "backend.monitor_user" and "monitor needs an account" in error.reason
    with_monitor = text.replace("3306]\n", "3306]\n  monitor_user: mon\n  monitor_password: m\n")
    assert load_config(write(tmp_path, with_monitor)).backend.monitor_user == "mon"


def test_transaction_replay_settings(tmp_path: Path) -> None:
    text = MINIMAL + "retry:\n  transaction_replay: true\n  transaction_replay_max_size: 512KiB\n"
    retry = load_config(write(tmp_path, text)).retry
    assert (retry.transaction_replay, retry.transaction_replay_max_size) == (True, 512 * 1024)
    assert retry.transaction_replay_attempts == 3
    error = load_error(tmp_path, MINIMAL + "retry:\n  transaction_replay_max_size: lots\n")
    assert error.key == "retry.transaction_replay_max_size"
    assert error.reason.startswith("expected a size such as")
