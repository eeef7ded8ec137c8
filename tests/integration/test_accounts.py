"""Full authentication (issue 12, part 3) and accounts read from the server (part 4).

Accounts are created on the test's MariaDB while proxyd runs; proxyd is told only the
lookup account's password (users_from_server) or a stored hash (password_hash), never
the account's password. Clients are PyMySQL, mysql-connector (caching_sha2_password) and
the mariadb CLI.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest
from pymysql.constants import ER

from tests.support.certs import CertificateAuthority
from tests.support.mariadb import MariaDBServer
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess

_names = itertools.count()


def _native_hash(password: str) -> str:
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


@pytest.fixture
def account(mariadb: MariaDBServer) -> Iterator[Callable[..., str]]:
    """Make an account on the server (dropped after the test); returns its name."""
    made: list[str] = []

    def create(password: str = "s3cret", via: str = "") -> str:
        name = f"acct{os.getpid()}_{next(_names)}"
        identified = via or f"IDENTIFIED BY '{password}'"
        mariadb.execute(f"CREATE USER '{name}'@'%' {identified}")
        mariadb.execute(f"GRANT ALL ON test.* TO '{name}'@'%'")
        made.append(name)
        return name

    yield create
    for name in made:
        mariadb.execute(f"DROP USER IF EXISTS '{name}'@'%'")


@pytest.fixture
def lookup(mariadb: MariaDBServer) -> dict[str, Any]:
    mariadb.execute("CREATE USER IF NOT EXISTS 'lookup'@'%' IDENTIFIED BY 'lookuppw'")
    mariadb.execute("GRANT SELECT ON mysql.user TO 'lookup'@'%'")
    return {"user": "lookup", "password": "lookuppw", "refresh": "1s"}


@pytest.fixture
def from_server(proxyd: Callable[..., ProxydProcess], lookup: dict[str, Any]) -> ProxydProcess:
    """proxyd with users_from_server; wrong passwords here are on purpose: not slowed."""
    return proxyd(
        {
            "users_from_server": lookup,
            "pool": {"max_size": 4, "min_idle": 0},
            "auth": {"failed_login_delay": 0},
        }
    )


def _one(conn: Any, sql: str) -> Any:
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return row


def _refused(connect: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises((pymysql.err.OperationalError, mysql.connector.Error)) as refused:
        connect()
    error = refused.value
    if isinstance(error, mysql.connector.Error):
        return error.errno, str(error.msg)
    return error.args[0], error.args[1]


def test_an_account_made_on_the_server_after_start_logs_in_through_proxyd(
    from_server: ProxydProcess, account: Callable[..., str]
) -> None:
    proxy = from_server
    # Not there yet: refused as the server would refuse it.
    code, _ = _refused(lambda: proxy.connect(user="later", password="x"))
    assert code == ER.ACCESS_DENIED_ERROR
    name = account("pw-one")
    client = proxy.connect(user=name, password="pw-one")
    # The server ran it as that account: proxyd logged in with what the scramble gave.
    assert _one(client, "SELECT CURRENT_USER()") == (f"{name}@%",)
    assert _one(client, "SELECT 40 + 2") == (42,)
    code, message = _refused(lambda: proxy.connect(user=name, password="pw-two"))
    assert code == ER.ACCESS_DENIED_ERROR, message
    assert "pw-one" not in proxy.log_text()


def test_a_dropped_account_is_refused_once_the_cache_refreshes(
    from_server: ProxydProcess, mariadb: MariaDBServer, account: Callable[..., str]
) -> None:
    proxy = from_server
    name = account("pw-one")
    first = proxy.connect(user=name, password="pw-one")
    assert _one(first, "SELECT 1") == (1,)
    mariadb.execute(f"DROP USER '{name}'@'%'")

    assert wait_until(lambda: _login_error(proxy, name, "pw-one") == ER.ACCESS_DENIED_ERROR, 5)
    # A password changed on the server: the old one stops working, the new one works.
    other = account("old-pw")
    assert _one(proxy.connect(user=other, password="old-pw"), "SELECT 2") == (2,)
    mariadb.execute(f"ALTER USER '{other}'@'%' IDENTIFIED BY 'new-pw'")
    assert wait_until(lambda: _login_error(proxy, other, "new-pw") is None, 5)
    assert _one(proxy.connect(user=other, password="new-pw"), "SELECT CURRENT_USER()") == (
        f"{other}@%",
    )


def test_a_killed_lookup_connection_does_not_fail_the_next_login(
    from_server: ProxydProcess, mariadb: MariaDBServer, account: Callable[..., str]
) -> None:
    proxy = from_server
    name = account("pw-one")
    proxy.connect(user=name, password="pw-one").close()
    assert mariadb.kill_connections("lookup") >= 1
    other = account("pw-two")  # not cached: read over a new lookup connection
    assert _one(proxy.connect(user=other, password="pw-two"), "SELECT 5") == (5,)
    assert "cannot read account" not in proxy.log_text()


def test_many_clients_of_new_accounts_log_in_at_once(
    from_server: ProxydProcess, account: Callable[..., str]
) -> None:
    proxy = from_server
    names = [account(f"pw-{i}") for i in range(4)]

    def work(i: int) -> tuple[str, ...]:
        name = names[i % 4]
        password = f"pw-{i % 4}" if i % 5 else "wrong"
        try:
            conn = proxy.connect(user=name, password=password)
        except pymysql.err.OperationalError as exc:
            return ("refused", str(exc.args[0]))
        with conn:
            return ("ran as", _one(conn, "SELECT CURRENT_USER()")[0])

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(work, range(40)))
    for i, result in enumerate(results):
        if i % 5:
            assert result == ("ran as", f"{names[i % 4]}@%"), (i, result)
        else:
            assert result == ("refused", str(ER.ACCESS_DENIED_ERROR)), (i, result)


def _login_error(proxy: ProxydProcess, user: str, password: str) -> int | None:
    """The error code of a login through proxyd; None when it worked."""
    try:
        proxy.connect(user=user, password=password).close()
    except pymysql.err.OperationalError as exc:
        return int(exc.args[0])
    return None


def test_an_account_with_another_plugin_is_refused_saying_which_and_what_to_do(
    from_server: ProxydProcess, mariadb: MariaDBServer, account: Callable[..., str]
) -> None:
    _install_ed25519(mariadb)
    name = account(via="IDENTIFIED VIA ed25519 USING PASSWORD('edpw')")
    code, message = _refused(lambda: from_server.connect(user=name, password="edpw"))
    assert code == ER.ACCESS_DENIED_ERROR
    assert "uses the ed25519 plugin" in message and "mysql_native_password" in message, message


def test_a_wrong_lookup_password_refuses_clearly_and_is_logged(
    proxyd: Callable[..., ProxydProcess],
    lookup: dict[str, Any],
    account: Callable[..., str],
) -> None:
    name = account("pw-one")
    proxy = proxyd({"users_from_server": {**lookup, "password": "wrong"}, "pool": {"min_idle": 0}})
    code, message = _refused(lambda: proxy.connect(user=name, password="pw-one"))
    assert code == ER.ACCESS_DENIED_ERROR
    assert "cannot read this account from the server" in message, message
    assert "cannot read account" in proxy.log_text()
    # The users of users: are not affected.
    assert _one(proxy.connect(), "SELECT 3") == (3,)


def _install_ed25519(mariadb: MariaDBServer) -> None:
    installed = mariadb.execute(
        "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'"
    )
    if not installed[0][0]:
        mariadb.execute("INSTALL SONAME 'auth_ed25519'")


def test_proxyd_logs_in_to_the_server_with_ed25519(
    proxyd: Callable[..., ProxydProcess],
    mariadb: MariaDBServer,
    account: Callable[..., str],
) -> None:
    _install_ed25519(mariadb)
    name = account(via="IDENTIFIED VIA ed25519 USING PASSWORD('edpw')")
    users = [
        {"name": "app", "password": "apppw"},
        {"name": "ed", "password": "clientpw", "backend_user": name, "backend_password": "edpw"},
    ]
    proxy = proxyd({"users": users, "pool": {"max_size": 4, "min_idle": 1}})
    client = proxy.connect(user="ed", password="clientpw")
    assert _one(client, "SELECT CURRENT_USER()") == (f"{name}@%",)


# -- password_hash, and caching_sha2_password's full path ---------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "certs")


def _hashed_proxy(
    proxyd: Callable[..., ProxydProcess], name: str, password: str, ca: CertificateAuthority
) -> ProxydProcess:
    issued = ca.issue("proxyd", ("127.0.0.1", "localhost"))
    users = [
        {"name": "app", "password": "apppw"},
        {"name": name, "password_hash": _native_hash(password)},
    ]
    return proxyd(
        {
            "users": users,
            "tls": {"cert": str(issued.cert), "key": str(issued.key)},
            "pool": {"max_size": 4, "min_idle": 1},
        }
    )


def test_password_hash_logs_in_native_clients_and_then_the_server(
    proxyd: Callable[..., ProxydProcess], account: Callable[..., str], ca: CertificateAuthority
) -> None:
    name = account("hashed-pw")
    proxy = _hashed_proxy(proxyd, name, "hashed-pw", ca)
    client = proxy.connect(user=name, password="hashed-pw")
    assert _one(client, "SELECT CURRENT_USER()") == (f"{name}@%",)
    code, _ = _refused(lambda: proxy.connect(user=name, password="wrong"))
    assert code == ER.ACCESS_DENIED_ERROR


def _connector(proxy: ProxydProcess, user: str, password: str, **kw: Any) -> Any:
    return mysql.connector.connect(
        host=proxy.host,
        port=proxy.port,
        user=user,
        password=password,
        database="test",
        auth_plugin="caching_sha2_password",
        use_pure=True,
        connection_timeout=10,
        **kw,
    )


def test_caching_sha2_full_path_over_tls_with_mysql_connector(
    proxyd: Callable[..., ProxydProcess], account: Callable[..., str], ca: CertificateAuthority
) -> None:
    name = account("sha2-pw")
    proxy = _hashed_proxy(proxyd, name, "sha2-pw", ca)
    # proxyd knows only the native hash: it asks for the password itself, inside TLS.
    client = _connector(proxy, name, "sha2-pw", ssl_ca=str(ca.path), ssl_verify_cert=True)
    assert _one(client, "SELECT CURRENT_USER()") == (f"{name}@%",)
    client.close()
    code, _ = _refused(
        lambda: _connector(proxy, name, "wrong", ssl_ca=str(ca.path), ssl_verify_cert=True)
    )
    assert code == ER.ACCESS_DENIED_ERROR
    # Without TLS this driver answers "perform full authentication" with the password in
    # clear; proxyd never accepts a password in clear over plaintext.
    code, _ = _refused(lambda: _connector(proxy, name, "sha2-pw", ssl_disabled=True))
    assert code == ER.ACCESS_DENIED_ERROR


def _cli_as(
    proxy: ProxydProcess, user: str, password: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """``SELECT CURRENT_USER()`` through proxyd with the mariadb client and ``options``."""
    return subprocess.run(
        [
            "mariadb",
            "-h",
            "127.0.0.1",
            "-P",
            str(proxy.port),
            f"-u{user}",
            f"-p{password}",
            *options,
            "-N",
            "-e",
            "SELECT CURRENT_USER()",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_caching_sha2_full_path_over_rsa_without_tls(
    proxyd: Callable[..., ProxydProcess], account: Callable[..., str], ca: CertificateAuthority
) -> None:
    name = account("rsa-pw")
    proxy = _hashed_proxy(proxyd, name, "rsa-pw", ca)
    # The mariadb CLI (MariaDB Connector/C) asks for proxyd's public key and sends the
    # password encrypted with it.
    cli = _cli_as(proxy, name, "rsa-pw", "--skip-ssl", "--default-auth=caching_sha2_password")
    assert (cli.returncode, cli.stdout.strip()) == (0, f"{name}@%"), cli.stderr


def test_clear_password_only_over_tls(
    proxyd: Callable[..., ProxydProcess], account: Callable[..., str], ca: CertificateAuthority
) -> None:
    name = account("clear-pw")
    proxy = _hashed_proxy(proxyd, name, "clear-pw", ca)
    clear = "--default-auth=mysql_clear_password"
    ok = _cli_as(proxy, name, "clear-pw", clear, f"--ssl-ca={ca.path}", "--ssl-verify-server-cert")
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{name}@%"), ok.stderr
    plain = _cli_as(proxy, name, "clear-pw", clear, "--skip-ssl")
    assert plain.returncode != 0
    assert "3159" in plain.stderr and "only accepted over TLS" in plain.stderr, plain.stderr
