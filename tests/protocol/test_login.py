"""ServerLogin: the server side of the password check, driven with bytes only."""

from __future__ import annotations

from pymysql._auth import scramble_caching_sha2, scramble_native_password

from proxyd.protocol import auth
from proxyd.protocol.login import Outcome, ServerLogin
from proxyd.protocol.messages import parse_auth_switch_request

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
