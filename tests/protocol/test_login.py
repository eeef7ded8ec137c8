"""Both sides of the connection phase (ServerLogin, ClientLogin), driven with bytes only."""

from __future__ import annotations

import hashlib

import pytest
from pymysql._auth import scramble_caching_sha2, scramble_native_password

from proxyd.protocol import auth
from proxyd.protocol.constants import CLIENT, MARIADB_CLIENT_EXTENDED_METADATA
from proxyd.protocol.login import ClientLogin, LoginRefused, Outcome, ServerLogin
from proxyd.protocol.messages import (
    HandshakeV10,
    OkPacket,
    build_auth_switch_request,
    build_err,
    build_handshake_v10,
    build_ok,
    parse_auth_switch_request,
    parse_handshake_response,
)

PASSWORDS = {b"app": b"apppw"}


def _login() -> ServerLogin:
    return ServerLogin(PASSWORDS.get)


def test_native_password_accepted_with_ok_next() -> None:
    login = _login()
    answer = scramble_native_password(b"apppw", login.scramble)
    assert login.begin(b"app", auth.NATIVE_PASSWORD, answer, 1) is Outcome.ACCEPTED
    assert login.take_output() == []
    assert login.next_seq == 2


def test_caching_sha2_fast_path_sends_fast_auth_ok_before_the_ok() -> None:
    login = _login()
    answer = scramble_caching_sha2(b"apppw", login.scramble)
    assert login.begin(b"app", auth.CACHING_SHA2_PASSWORD, answer, 1) is Outcome.ACCEPTED
    assert login.take_output() == [(b"\x01\x03", 2)]
    assert login.next_seq == 3


def test_wrong_password_and_unknown_user_are_denied_alike() -> None:
    for user, password in ((b"app", b"wrong"), (b"nobody", b"apppw")):
        login = _login()
        answer = scramble_native_password(password, login.scramble)
        assert login.begin(user, auth.NATIVE_PASSWORD, answer, 1) is Outcome.DENIED
        assert login.next_seq == 2 and login.used_password


def test_unknown_plugin_switches_to_native_with_a_fresh_scramble() -> None:
    login = _login()
    first = login.scramble
    assert login.begin(b"app", b"client_ed25519", b"xx", 1) is Outcome.SWITCHING
    [(payload, seq)] = login.take_output()
    switch = parse_auth_switch_request(payload)
    assert seq == 2 and switch.plugin_name == auth.NATIVE_PASSWORD
    assert switch.plugin_data == login.scramble != first
    answer = scramble_native_password(b"apppw", login.scramble)
    assert login.switched(answer, 3) is Outcome.ACCEPTED
    assert login.next_seq == 4


# -- ClientLogin: proxyd logging in to a server, driven with bytes only ------------------

SERVER_CAPS = (
    CLIENT.PROTOCOL_41
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.TRANSACTIONS
)
SCRAMBLE = bytes(range(1, 21))


def _greeting(plugin: bytes = auth.NATIVE_PASSWORD, mariadb_caps: int = 0) -> bytes:
    return build_handshake_v10(
        HandshakeV10(
            server_version=b"5.5.5-10.11.0-MariaDB",
            connection_id=42,
            auth_plugin_data=SCRAMBLE,
            capability_flags=SERVER_CAPS,
            character_set=8,
            status_flags=2,
            auth_plugin_name=plugin,
            mariadb_capabilities=mariadb_caps,
        )
    )


def _client(password: bytes = b"apppw", mariadb_caps: int = 0) -> ClientLogin:
    return ClientLogin(
        b"app", password, 45, b"test", SERVER_CAPS | CLIENT.MULTI_STATEMENTS, mariadb_caps
    )


def test_client_login_native_password() -> None:
    login = _client()
    response = parse_handshake_response(login.greeting(_greeting()))
    assert response.username == b"app" and response.database == b"test"
    assert response.auth_response == scramble_native_password(b"apppw", SCRAMBLE)
    assert response.character_set == 45
    # Only what both sides offer: the server has no MULTI_STATEMENTS here.
    assert login.capabilities == SERVER_CAPS
    assert login.server is not None and login.server.connection_id == 42
    assert login.receive(build_ok(OkPacket(), SERVER_CAPS)) == [] and login.done


def test_client_login_auth_switch_sends_even_an_empty_answer() -> None:
    login = _client(password=b"")
    login.greeting(_greeting(plugin=auth.CACHING_SHA2_PASSWORD))
    switch = build_auth_switch_request(auth.NATIVE_PASSWORD, b"x" * 20)
    # An empty password answers with an empty payload, which must still be sent.
    assert login.receive(switch) == [b""] and not login.done


def test_client_login_caching_sha2_fast_and_full_paths() -> None:
    login = _client()
    response = parse_handshake_response(login.greeting(_greeting(auth.CACHING_SHA2_PASSWORD)))
    assert response.auth_response == scramble_caching_sha2(b"apppw", SCRAMBLE)
    assert login.receive(b"\x01" + auth.SHA2_FAST_AUTH_OK) == []
    full = _client()
    full.greeting(_greeting(auth.CACHING_SHA2_PASSWORD))
    assert full.receive(b"\x01" + auth.SHA2_PERFORM_FULL_AUTH) == [auth.SHA2_REQUEST_PUBLIC_KEY]


def test_client_login_refusals() -> None:
    login = _client()
    login.greeting(_greeting())
    with pytest.raises(LoginRefused) as info:
        login.receive(build_err(1045, "Access denied for user 'app'", b"28000"))
    assert info.value.err is not None and info.value.err.error_code == 1045
    with pytest.raises(LoginRefused):
        _client().greeting(_greeting(plugin=b"auth_gssapi_client"))
    with pytest.raises(LoginRefused) as refused:
        _client().greeting(build_err(1040, "Too many connections", b"08004"))
    assert refused.value.err is not None and refused.value.err.error_code == 1040


def test_client_login_asks_for_mariadb_capabilities_only_where_offered() -> None:
    login = _client(mariadb_caps=MARIADB_CLIENT_EXTENDED_METADATA)
    response = parse_handshake_response(
        login.greeting(_greeting(mariadb_caps=MARIADB_CLIENT_EXTENDED_METADATA))
    )
    assert response.mariadb_capabilities == MARIADB_CLIENT_EXTENDED_METADATA
    plain = _client(mariadb_caps=MARIADB_CLIENT_EXTENDED_METADATA)
    assert parse_handshake_response(plain.greeting(_greeting())).mariadb_capabilities == 0


def _tls_greeting(plugin: bytes = auth.NATIVE_PASSWORD) -> bytes:
    return build_handshake_v10(
        HandshakeV10(
            server_version=b"8.0.36",
            connection_id=7,
            auth_plugin_data=SCRAMBLE,
            capability_flags=SERVER_CAPS | CLIENT.SSL,
            character_set=255,
            status_flags=2,
            auth_plugin_name=plugin,
        )
    )


def test_client_login_over_tls_sends_the_ssl_request_then_the_response() -> None:
    login = ClientLogin(b"app", b"apppw", 45, None, SERVER_CAPS, tls="preferred")
    first = login.greeting(_tls_greeting())
    assert login.tls and len(first) == 32
    assert int.from_bytes(first[:4], "little") & CLIENT.SSL
    whole = login.response()
    assert whole[:32] == first  # the SSLRequest is the response's fixed part
    assert parse_handshake_response(whole).username == b"app"
    # Without TLS offered: preferred logs in plaintext, required refuses.
    plain = ClientLogin(b"app", b"apppw", 45, None, SERVER_CAPS, tls="preferred")
    assert len(plain.greeting(_greeting())) > 32 and not plain.tls
    with pytest.raises(LoginRefused, match="does not offer TLS"):
        ClientLogin(b"app", b"apppw", 45, None, SERVER_CAPS, tls="required").greeting(_greeting())


def test_client_login_caching_sha2_full_auth_over_tls_sends_the_password() -> None:
    login = ClientLogin(b"app", b"apppw", 45, None, SERVER_CAPS, tls="required")
    login.greeting(_tls_greeting(auth.CACHING_SHA2_PASSWORD))
    assert login.receive(b"\x01" + auth.SHA2_PERFORM_FULL_AUTH) == [b"apppw\x00"]


# -- what proxyd knows of a password: the password, or only the server's native hash ------

# mysql.user's authentication_string for IDENTIFIED BY 'apppw' is "*" + SHA1(SHA1('apppw')).
HASHED = {b"app": auth.Credentials.of_hash(hashlib.sha1(hashlib.sha1(b"apppw").digest()).digest())}
_RSA_KEY = auth.generate_rsa_key()


def _hashed_login(secure: bool = False) -> ServerLogin:
    login = ServerLogin(HASHED.get, lambda: _RSA_KEY)
    login.secure = secure
    return login


def test_native_hash_from_the_server_checks_the_answer_and_yields_sha1_of_the_password() -> None:
    login = _hashed_login()
    answer = scramble_native_password(b"apppw", login.scramble)
    assert login.begin(b"app", auth.NATIVE_PASSWORD, answer, 1) is Outcome.ACCEPTED
    assert login.password_sha1 == hashlib.sha1(b"apppw").digest()
    assert login.password is None  # never learned
    wrong = _hashed_login()
    bad = scramble_native_password(b"apppx", wrong.scramble)
    assert wrong.begin(b"app", auth.NATIVE_PASSWORD, bad, 1) is Outcome.DENIED


def test_client_login_with_sha1_of_the_password_answers_as_the_password_would() -> None:
    login = ClientLogin(
        b"app", b"", 45, None, SERVER_CAPS, password_sha1=hashlib.sha1(b"apppw").digest()
    )
    response = parse_handshake_response(login.greeting(_greeting()))
    assert response.auth_response == scramble_native_password(b"apppw", SCRAMBLE)
    # A plugin that needs the password itself is refused with a message saying what to do.
    sha2 = ClientLogin(b"app", b"", 45, None, SERVER_CAPS, password_sha1=b"\x01" * 20)
    with pytest.raises(LoginRefused, match="mysql_native_password hash"):
        sha2.greeting(_greeting(plugin=auth.CACHING_SHA2_PASSWORD))


def test_caching_sha2_full_path_inside_tls_takes_the_password_in_clear() -> None:
    login = _hashed_login(secure=True)
    answer = scramble_caching_sha2(b"apppw", login.scramble)
    assert login.begin(b"app", auth.CACHING_SHA2_PASSWORD, answer, 1) is Outcome.SWITCHING
    assert login.take_output() == [(b"\x01\x04", 2)]  # perform full authentication
    assert login.switched(b"apppw\x00", 3) is Outcome.ACCEPTED
    assert login.next_seq == 4 and login.password == b"apppw"
    wrong = _hashed_login(secure=True)
    wrong.begin(b"app", auth.CACHING_SHA2_PASSWORD, answer, 1)
    assert wrong.switched(b"apppx\x00", 3) is Outcome.DENIED


def test_caching_sha2_full_path_without_tls_uses_proxyds_rsa_key() -> None:
    from pymysql._auth import sha2_rsa_encrypt

    login = _hashed_login()
    answer = scramble_caching_sha2(b"apppw", login.scramble)
    assert login.begin(b"app", auth.CACHING_SHA2_PASSWORD, answer, 1) is Outcome.SWITCHING
    login.take_output()
    # The password in clear over plaintext is never accepted, even when right.
    clear = _hashed_login()
    clear.begin(b"app", auth.CACHING_SHA2_PASSWORD, answer, 1)
    assert clear.switched(b"apppw\x00", 3) is Outcome.DENIED
    # The client asks for the public key (0x02), then sends the password encrypted with it.
    assert login.switched(b"\x02", 3) is Outcome.SWITCHING
    [(payload, seq)] = login.take_output()
    assert seq == 4 and payload.startswith(b"\x01-----BEGIN PUBLIC KEY-----")
    encrypted = sha2_rsa_encrypt(b"apppw", login.scramble, payload[1:])
    assert login.switched(encrypted, 5) is Outcome.ACCEPTED
    assert login.next_seq == 6 and login.password == b"apppw"


def test_clear_password_only_inside_tls() -> None:
    plain = _hashed_login()
    assert plain.begin(b"app", auth.CLEAR_PASSWORD, b"apppw\x00", 1) is Outcome.DENIED
    err = plain.denial("10.0.0.1:5000")
    assert b"only accepted over TLS" in err and int.from_bytes(err[1:3], "little") == 3159
    secure = _hashed_login(secure=True)
    assert secure.begin(b"app", auth.CLEAR_PASSWORD, b"apppw\x00", 1) is Outcome.ACCEPTED
    wrong = _hashed_login(secure=True)
    assert wrong.begin(b"app", auth.CLEAR_PASSWORD, b"nope\x00", 1) is Outcome.DENIED


def test_ed25519_matches_rfc_8032_and_mariadbs_stored_key() -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxyd.protocol import ed25519

    # RFC 8032 7.1, test 1: with a 32-byte "password" the key is the RFC's.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert ed25519.public_key(seed).hex().startswith("d75a980182b10ab7d54bfed3c964073a")
    # What MariaDB stored for CREATE USER ... IDENTIFIED VIA ed25519 USING PASSWORD('secret').
    stored = "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY"
    assert base64.b64encode(ed25519.public_key(b"secret")).decode().rstrip("=") == stored
    scramble = bytes(range(32))
    signature = ed25519.sign(b"secret", scramble)
    Ed25519PublicKey.from_public_bytes(ed25519.public_key(b"secret")).verify(signature, scramble)


def test_client_login_answers_client_ed25519_with_a_signature() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxyd.protocol import ed25519

    login = _client(password=b"secret")
    login.greeting(_greeting())
    scramble = bytes(range(32))
    [signature] = login.receive(build_auth_switch_request(auth.ED25519, scramble))
    Ed25519PublicKey.from_public_bytes(ed25519.public_key(b"secret")).verify(signature, scramble)
