"""Auth scrambles checked against real logins and against PyMySQL's own implementation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from pymysql._auth import scramble_caching_sha2 as pymysql_sha2
from pymysql._auth import scramble_native_password as pymysql_native

from proxyd.protocol import auth
from proxyd.protocol.messages import parse_auth_switch_request
from tests.protocol.captured import CAPTURED, FUZZ, Session, payloads

NATIVE_LOGINS = [
    s for s in CAPTURED.sessions if s.response.auth_plugin_name == auth.NATIVE_PASSWORD
]


@pytest.mark.parametrize("session", NATIVE_LOGINS, ids=[s.name for s in NATIVE_LOGINS])
def test_captured_native_login(session: Session) -> None:
    response = session.response.auth_response
    scramble = session.greeting.auth_plugin_data
    password = b"wrong" if "bad-password" in session.name else CAPTURED.password
    assert auth.check_native(response, scramble, password)
    assert not auth.check_native(response, scramble, password + b"x")
    assert not auth.check_native(response, scramble, b"")
    assert auth.scramble_native(password, scramble) == response
    assert pymysql_native(password, scramble) == response


def test_captured_auth_switch_from_caching_sha2() -> None:
    # mysql-connector opened with a caching_sha2_password scramble of the greeting's
    # nonce; MariaDB switched it to mysql_native_password.
    session = CAPTURED.session("mysql-connector-auth-switch")
    first = session.response.auth_response
    scramble = session.greeting.auth_plugin_data
    assert auth.check_caching_sha2(first, scramble, CAPTURED.password)
    assert not auth.check_caching_sha2(first, scramble, b"capx")
    assert pymysql_sha2(CAPTURED.password, scramble) == first
    switch = parse_auth_switch_request(payloads(session.login[2][1])[0][1])
    (seq, second), *_ = payloads(session.login[3][1])
    assert seq == 3
    assert auth.check_native(second, switch.plugin_data, CAPTURED.password)


@FUZZ
@given(password=st.binary(max_size=64), scramble=st.binary(min_size=20, max_size=21))
def test_scrambles_match_pymysql(password: bytes, scramble: bytes) -> None:
    if not password:
        # An empty password sends an empty response.
        assert auth.scramble_native(password, scramble) == b""
        assert auth.scramble_caching_sha2(password, scramble) == b""
        assert auth.check_native(b"", scramble, b"")
        return
    native = auth.scramble_native(password, scramble)
    assert len(native) == 20
    assert native == pymysql_native(password, scramble[:20])
    assert auth.check_native(native, scramble, password)
    sha2 = auth.scramble_caching_sha2(password, scramble)
    assert len(sha2) == 32
    assert sha2 == pymysql_sha2(password, scramble[:20])
    assert auth.check_caching_sha2(sha2, scramble, password)
    assert not auth.check_caching_sha2(native, scramble, password)


def test_scramble_ignores_the_trailing_nul_of_a_21_byte_nonce() -> None:
    nonce = bytes(range(1, 21))
    assert auth.scramble_native(b"pw", nonce + b"\x00") == auth.scramble_native(b"pw", nonce)
    assert auth.scramble_caching_sha2(b"pw", nonce + b"\x00") == auth.scramble_caching_sha2(
        b"pw", nonce
    )


def test_new_scramble() -> None:
    scrambles = {auth.new_scramble() for _ in range(50)}
    assert len(scrambles) == 50
    for scramble in scrambles:
        assert len(scramble) == 20
        assert b"\x00" not in scramble  # clients read it as a C string
        assert max(scramble) < 128


def test_rsa_encrypted_password_decrypts_to_password_xor_scramble() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    scramble = bytes(range(1, 21))
    password = b"a password longer than the twenty-byte scramble"
    encrypted = auth.rsa_encrypt_password(password, scramble, pem)
    assert len(encrypted) == 256
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    plain = key.decrypt(encrypted, oaep)
    unmasked = bytes(c ^ scramble[i % 20] for i, c in enumerate(plain))
    assert unmasked == password + b"\x00"


def test_rsa_needs_an_rsa_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError):
        auth.rsa_encrypt_password(b"pw", bytes(20), pem)
