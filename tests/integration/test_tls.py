"""TLS towards clients (issue 12, part 1): the handshake's SSL request upgrades the socket.

Certificates are made by the test (tests/support/certs.py); clients are PyMySQL and the
`mariadb` command-line client, verifying proxyd's certificate as users would.
"""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysql.constants import CLIENT

from tests.faults.rawclient import handshake_response, packet, read_packet, salt_of
from tests.support.certs import CertificateAuthority, serial_of
from tests.support.processes import wait_until
from tests.support.proxy import ProxydProcess
from tests.unit.test_cli import GOOD, proxyd_command

ER_SECURE_TRANSPORT_REQUIRED = 3159


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "certs")


def _tls_proxy(
    proxyd: Callable[..., ProxydProcess], authority: CertificateAuthority, **tls: Any
) -> ProxydProcess:
    issued = authority.issue("proxyd")
    section = {"cert": str(issued.cert), "key": str(issued.key), **tls}
    return proxyd({"tls": section, "pool": {"max_size": 4}})


def _verified(proxy: ProxydProcess, ca: CertificateAuthority, **kw: Any) -> Any:
    """A PyMySQL client that checks proxyd's certificate and its host name."""
    return proxy.connect(ssl={"ca": str(ca.path), "check_hostname": True}, **kw)


def _one(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_a_client_that_asks_gets_tls_and_one_that_does_not_still_connects(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca)
    secure = _verified(proxy, ca)
    assert secure._sock.version() in ("TLSv1.2", "TLSv1.3")
    # Answers of many TLS records, both ways.
    assert _one(secure, "SELECT LENGTH(REPEAT('x', 3000000))") == (3000000,)
    with secure.cursor() as cur:
        cur.execute("SELECT seq, REPEAT('y', 100) FROM seq_1_to_50000")
        assert len(cur.fetchall()) == 50000
        cur.execute("SELECT LENGTH(%s)", ("z" * 2_000_000,))
        assert cur.fetchone() == (2_000_000,)
    plain = proxy.connect(ssl_disabled=True)
    assert not isinstance(plain._sock, ssl.SSLSocket)
    assert _one(plain, "SELECT 2") == (2,)


def test_the_mariadb_client_verifies_proxyds_certificate(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca)
    base = ["mariadb", "-h", "127.0.0.1", "-P", str(proxy.port), "-uapp", "-papppw", "-N"]
    ok = subprocess.run(
        [*base, f"--ssl-ca={ca.path}", "--ssl-verify-server-cert", "-e", "SELECT 'over tls'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (ok.returncode, ok.stdout.strip()) == (0, "over tls"), ok.stderr
    # Another CA's client does not trust proxyd's certificate: the client refuses.
    other = CertificateAuthority(ca.folder / "other", "another CA")
    refused = subprocess.run(
        [*base, f"--ssl-ca={other.path}", "--ssl-verify-server-cert", "-e", "SELECT 1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode != 0
    assert "ERROR 2026" in refused.stderr, refused.stderr


def test_require_refuses_plaintext_with_3159(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca, mode="require")
    with pytest.raises(pymysql.OperationalError) as refused:
        proxy.connect(ssl_disabled=True)
    assert refused.value.args[0] == ER_SECURE_TRANSPORT_REQUIRED
    assert "insecure transport" in refused.value.args[1]
    assert _one(_verified(proxy, ca), "SELECT 3") == (3,)


def test_require_tls_per_user(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    issued = ca.issue("proxyd")
    proxy = proxyd(
        {
            "tls": {"cert": str(issued.cert), "key": str(issued.key)},
            "users": [
                {"name": "app", "password": "apppw"},
                {"name": "vault", "password": "vaultpw", "backend_user": "app",
                 "backend_password": "apppw", "require_tls": True},
            ],
        }
    )  # fmt: skip
    with pytest.raises(pymysql.OperationalError) as refused:
        proxy.connect(user="vault", password="vaultpw", ssl_disabled=True)
    assert refused.value.args == (
        ER_SECURE_TRANSPORT_REQUIRED,
        "proxyd: user 'vault' must connect with TLS (require_tls)",
    )
    vault = _verified(proxy, ca, user="vault", password="vaultpw")
    assert _one(vault, "SELECT CURRENT_USER()")[0].startswith("app@")
    assert _one(proxy.connect(ssl_disabled=True), "SELECT 4") == (4,)  # others may


def test_client_certificates_are_verified_when_presented(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca, ca=str(ca.path))
    mine = ca.issue("client", ("app-client",), client=True)
    with_cert = proxy.connect(
        ssl={"ca": str(ca.path), "cert": str(mine.cert), "key": str(mine.key)}
    )
    assert _one(with_cert, "SELECT 5") == (5,)
    assert _one(_verified(proxy, ca), "SELECT 6") == (6,)  # none presented: fine
    stranger = CertificateAuthority(ca.folder / "stranger", "stranger CA")
    theirs = stranger.issue("stranger", ("intruder",), client=True)
    with pytest.raises(pymysql.OperationalError):
        proxy.connect(ssl={"ca": str(ca.path), "cert": str(theirs.cert), "key": str(theirs.key)})
    assert wait_until(lambda: "TLS failed" in proxy.log_text(), 5)
    assert _one(with_cert, "SELECT 7") == (7,)


def _ssl_request() -> bytes:
    caps = (
        CLIENT.LONG_PASSWORD
        | CLIENT.PROTOCOL_41
        | CLIENT.SECURE_CONNECTION
        | CLIENT.PLUGIN_AUTH
        | CLIENT.SSL
    )
    return packet(struct.pack("<IIB23x", caps, 1 << 24, 45), 1)


def test_the_tls_handshake_may_come_with_the_ssl_request(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    """A client may send its SSLRequest and the start of its TLS handshake in one write:
    those bytes must reach the TLS layer, not be lost or read as a MySQL packet."""
    proxy = _tls_proxy(proxyd, ca)
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    _, greeting = read_packet(sock)
    context = ssl.create_default_context(cafile=str(ca.path))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    sock.sendall(_ssl_request() + outgoing.read())  # one segment
    while True:
        incoming.write(sock.recv(65536))
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
    sock.sendall(outgoing.read())
    # The login, encrypted, with sequence id 2.
    tls.write(packet(handshake_response(salt_of(greeting)), 2))
    sock.sendall(outgoing.read())
    answer = b""
    while len(answer) < 5:
        incoming.write(sock.recv(65536))
        try:
            answer += tls.read(65536)
        except ssl.SSLWantReadError:
            continue
    assert answer[3:5] == b"\x03\x00", answer  # sequence 3, an OK packet
    sock.close()


def test_garbage_instead_of_a_tls_handshake_closes_that_client_only(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca)
    bystander = _verified(proxy, ca)
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    read_packet(sock)
    sock.sendall(_ssl_request() + b"\x16\x03\x01\x00\x05hello, not TLS at all" * 10)
    sock.settimeout(10)
    while sock.recv(4096):
        pass  # proxyd closes it (maybe after a TLS alert)
    sock.close()
    assert wait_until(lambda: "TLS failed" in proxy.log_text(), 5)
    assert _one(bystander, "SELECT 8") == (8,)
    assert "Traceback" not in proxy.log_text()


def test_certificates_rotated_on_disk_are_used_after_sighup(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    first = ca.issue("proxyd")
    proxy = proxyd({"tls": {"cert": str(first.cert), "key": str(first.key)}})
    old = _verified(proxy, ca)
    assert serial_of(old._sock.getpeercert(binary_form=True)) == first.serial
    second = ca.issue("proxyd")  # the same files, rewritten
    assert second.serial != first.serial
    proxy.send_signal(signal.SIGHUP)
    assert wait_until(lambda: "reload" in proxy.log_text().lower(), 10)

    def presented() -> int:
        conn = _verified(proxy, ca)
        try:
            return serial_of(conn._sock.getpeercert(binary_form=True))
        finally:
            conn.close()

    assert wait_until(lambda: presented() == second.serial, 10)
    assert _one(old, "SELECT 9") == (9,)  # the connection from before goes on


def test_check_names_a_bad_certificate_file(tmp_path: Path, ca: CertificateAuthority) -> None:
    good = ca.issue("good")
    expired = ca.issue("expired", expired=True)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = {
        f"tls:\n  cert: {garbage}\n  key: {good.key}\n": f"tls.cert: {garbage}",
        f"tls:\n  cert: {good.cert}\n  key: {tmp_path}/missing.key\n": (
            f"tls.key: {tmp_path}/missing.key: no such file"
        ),
        f"tls:\n  cert: {expired.cert}\n  key: {expired.key}\n": (
            f"tls.cert: {expired.cert}: the certificate expired on"
        ),
        "tls:\n  mode: require\n": "tls.cert: missing (tls.mode require needs a certificate)",
    }
    for section, reason in cases.items():
        path = tmp_path / "proxyd.yaml"
        path.write_text(GOOD + section)
        result = proxyd_command("--check", "--config", str(path))
        assert result.returncode == 1, section
        assert result.stderr.startswith(f"proxyd: {path}: {reason}"), result.stderr
        assert "Traceback" not in result.stderr
    path.write_text(GOOD + f"tls:\n  cert: {good.cert}\n  key: {good.key}\n  mode: require\n")
    assert proxyd_command("--check", "--config", str(path)).returncode == 0


def test_many_tls_clients_at_once(
    proxyd: Callable[..., ProxydProcess], ca: CertificateAuthority
) -> None:
    proxy = _tls_proxy(proxyd, ca)
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            conn = _verified(proxy, ca)
            for i in range(20):
                if _one(conn, f"SELECT {n} * 100 + {i}") != (n * 100 + i,):
                    errors.append(f"client {n}: wrong answer")
            conn.close()
        except Exception as exc:
            errors.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
