"""TLS towards the server (issue 12, part 2): backend.tls.mode as MySQL's --ssl-mode.

A MariaDB started by the test with its own certificates and require_secure_transport=ON:
proxyd reaches it with verify_identity; with the wrong CA or for the wrong host name it is
refused, with the reason in the log and a clear ERR to the client, and no plaintext login
is ever tried instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support.certs import CertificateAuthority
from tests.support.mariadb import MariaDBServer
from tests.support.processes import free_port, wait_until
from tests.support.proxy import ProxydProcess


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "certs")


@pytest.fixture
def secure_server(
    mariadb_factory: Callable[..., MariaDBServer], ca: CertificateAuthority
) -> MariaDBServer:
    issued = ca.issue("mariadb", ("127.0.0.1", "localhost"))
    return mariadb_factory(
        ssl_cert=issued.cert,
        ssl_key=issued.key,
        ssl_ca=ca.path,
        require_secure_transport="ON",
    )


def _proxy(
    proxyd: Callable[..., ProxydProcess], server: MariaDBServer, **tls: Any
) -> ProxydProcess:
    return proxyd(
        {
            "backend": {"tls": tls},
            "pool": {"max_size": 4, "min_idle": 1, "acquire_timeout": "3s"},
            "admin": {"listen": f"127.0.0.1:{free_port()}", "password": "adminpw"},
        },
        backend=server,
    )


def _one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def _server_cipher(conn: Any) -> str:
    """The cipher of the connection the server sees for this statement: proxyd's."""
    return str(_one(conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")[1])


def test_verify_identity_reaches_a_server_that_requires_tls(
    proxyd: Callable[..., ProxydProcess],
    secure_server: MariaDBServer,
    ca: CertificateAuthority,
) -> None:
    with pytest.raises(pymysql.OperationalError):
        # The server itself refuses plaintext: what proxyd must never fall back to.
        secure_server.connect(user="app", password="apppw", ssl_disabled=True)
    proxy = _proxy(proxyd, secure_server, mode="verify_identity", ca=str(ca.path))
    client = proxy.connect(ssl_disabled=True)
    assert _server_cipher(client) != ""
    with client.cursor() as cur:
        cur.execute("SELECT seq, REPEAT('x', 200) FROM seq_1_to_20000")
        assert len(cur.fetchall()) == 20000
        cur.execute("SELECT LENGTH(%s)", ("y" * 3_000_000,))
        assert cur.fetchone() == (3_000_000,)


@pytest.mark.parametrize("mode", ["preferred", "required", "verify_ca"])
def test_the_other_modes_encrypt(
    proxyd: Callable[..., ProxydProcess],
    secure_server: MariaDBServer,
    ca: CertificateAuthority,
    mode: str,
) -> None:
    extra = {"ca": str(ca.path)} if mode == "verify_ca" else {}
    proxy = _proxy(proxyd, secure_server, mode=mode, **extra)
    assert _server_cipher(proxy.connect(ssl_disabled=True)) != ""


def test_preferred_stays_plaintext_with_a_server_without_tls(
    proxyd: Callable[..., ProxydProcess], mariadb: MariaDBServer
) -> None:
    proxy = _proxy(proxyd, mariadb, mode="preferred")
    assert _server_cipher(proxy.connect()) == ""


def test_required_refuses_a_server_without_tls(
    proxyd: Callable[..., ProxydProcess], mariadb: MariaDBServer
) -> None:
    proxy = _proxy(proxyd, mariadb, mode="required")
    client = proxy.connect()  # proxyd logs clients in itself
    with pytest.raises(pymysql.OperationalError) as refused:
        _one(client, "SELECT 1")
    assert "does not offer TLS" in refused.value.args[1], refused.value.args
    assert wait_until(lambda: "does not offer TLS" in proxy.log_text(), 5)


@pytest.mark.parametrize("wrong", ["ca", "host"])
def test_a_certificate_that_fails_verification_is_refused_not_bypassed(
    proxyd: Callable[..., ProxydProcess],
    secure_server: MariaDBServer,
    ca: CertificateAuthority,
    wrong: str,
) -> None:
    if wrong == "ca":
        other = CertificateAuthority(ca.folder / "other", "another CA")
        proxy = _proxy(proxyd, secure_server, mode="verify_ca", ca=str(other.path))
    else:
        proxy = _proxy(
            proxyd, secure_server, mode="verify_identity", ca=str(ca.path), server_name="db.example"
        )
    client = proxy.connect()
    with pytest.raises(pymysql.OperationalError) as refused:
        _one(client, "SELECT 1")
    message = refused.value.args[1]
    assert "certificate was refused" in message, message
    assert wait_until(lambda: "certificate was refused" in proxy.log_text(), 5)
    log = proxy.log_text()
    mismatch = "Hostname mismatch" in log or "IP address mismatch" in log
    untrusted = "self-signed certificate" in log or "unable to get local issuer" in log
    assert (mismatch, untrusted) == ((True, False) if wrong == "host" else (False, True)), log[
        -2000:
    ]
    # The server never saw a plaintext login from proxyd.
    assert "require_secure_transport" not in log
    # The operator sees why in the admin console.
    [row] = proxy.admin_rows("SHOW SERVERS")
    assert row["state"] == "unreachable" and row["id"] is None, row
    assert "certificate was refused" in row["error"], row
