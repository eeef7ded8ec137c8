"""Messages parsed from and built into the bytes MariaDB and real drivers exchanged."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from proxyd.protocol.constants import (
    CLIENT,
    CLIENT_MYSQL,
    COMMAND,
    MARIADB_CLIENT_EXTENDED_METADATA,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
    SESSION_TRACK_TRANSACTION_STATE,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    EofPacket,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    StateChange,
    StmtPrepareOk,
    build_auth_more_data,
    build_auth_switch_request,
    build_command,
    build_eof,
    build_err,
    build_handshake_response,
    build_handshake_v10,
    build_ok,
    build_session_state,
    is_eof,
    is_err,
    is_ok,
    is_ssl_request,
    parse_auth_more_data,
    parse_auth_switch_request,
    parse_eof,
    parse_err,
    parse_handshake_response,
    parse_handshake_v10,
    parse_ok,
    parse_session_state,
    parse_stmt_prepare_ok,
    status_of_terminator,
)
from tests.protocol.captured import CAPTURED, Session, payloads

SESSIONS = list(CAPTURED.sessions)
NO_TRACK = CAPTURED.session("pymysql").capabilities
TRACK = CAPTURED.session("raw-track").capabilities
DEOF_TRACK = CAPTURED.session("raw-track-deprecate-eof").capabilities
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT


def first_payload(session: str, step: str, command: int | None = None) -> bytes:
    return payloads(CAPTURED.session(session).one(step, command).answer)[0][1]


def all_payloads(session: str, step: str) -> list[bytes]:
    return [p for _, p in payloads(CAPTURED.session(session).one(step).answer)]


# --- the connection phase --------------------------------------------------------------


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_captured_greeting(session: Session) -> None:
    greeting = parse_handshake_v10(session.greeting_payload)
    # MariaDB 10.x prefixes its version for clients that compare against 5.5.
    assert greeting.server_version.startswith(b"5.5.5-10.11.")
    assert greeting.server_version.decode() == "5.5.5-" + CAPTURED.server_version
    assert len(greeting.auth_plugin_data) == 20
    assert b"\x00" not in greeting.auth_plugin_data
    assert greeting.auth_plugin_name == b"mysql_native_password"
    caps = greeting.capability_flags
    for flag in (
        CLIENT.PROTOCOL_41,
        CLIENT.SECURE_CONNECTION,
        CLIENT.PLUGIN_AUTH,
        CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA,
        CLIENT.CONNECT_ATTRS,
        CLIENT.SESSION_TRACK,
        CLIENT.DEPRECATE_EOF,
        CLIENT.MULTI_RESULTS,
        CLIENT.MULTI_STATEMENTS,
        CLIENT.LOCAL_FILES,
    ):
        assert caps & flag, hex(flag)
    assert not caps & CLIENT.LONG_PASSWORD  # no CLIENT_MYSQL: MariaDB's flags follow
    assert greeting.mariadb_capabilities & 1  # MARIADB_CLIENT_PROGRESS
    assert greeting.status_flags == AUTOCOMMIT
    assert greeting.character_set == 45  # utf8mb4_general_ci
    # Built back byte for byte.
    assert build_handshake_v10(greeting) == session.greeting_payload


def test_greetings_differ_in_connection_id_and_scramble_only() -> None:
    greetings = [s.greeting for s in SESSIONS]
    assert len({g.connection_id for g in greetings}) == len(greetings)
    assert len({g.auth_plugin_data for g in greetings}) == len(greetings)
    assert len({(g.server_version, g.capability_flags) for g in greetings}) == 1


def test_built_greeting_parses_back() -> None:
    greeting = HandshakeV10(
        server_version=b"8.0.36-proxyd",
        connection_id=0xDEADBEEF,
        auth_plugin_data=bytes(range(1, 21)),
        capability_flags=CLIENT.PROTOCOL_41
        | CLIENT.SECURE_CONNECTION
        | CLIENT.PLUGIN_AUTH
        | CLIENT.SESSION_TRACK
        | CLIENT.DEPRECATE_EOF,
        character_set=255,
        status_flags=AUTOCOMMIT,
        auth_plugin_name=b"caching_sha2_password",
    )
    assert parse_handshake_v10(build_handshake_v10(greeting)) == greeting


def test_refusal_instead_of_a_greeting() -> None:
    with pytest.raises(ProtocolError, match="1040"):
        parse_handshake_v10(build_err(1040, "Too many connections", b"08004"))
    with pytest.raises(ProtocolError, match="protocol version 9"):
        parse_handshake_v10(b"\x09" + bytes(40))


def test_old_style_greeting_without_the_long_part() -> None:
    payload = b"\x0a5.0\x00" + struct.pack("<I", 7) + b"12345678\x00" + struct.pack("<H", 0x0200)
    greeting = parse_handshake_v10(payload)
    assert greeting.auth_plugin_data == b"12345678"
    assert greeting.auth_plugin_name == b"mysql_native_password"


CLIENT_NAMES = {
    "pymysql": b"pymysql",
    "pymysql-bad-password": b"pymysql",
    "mysqlclient": b"libmariadb",
    "mysql-connector": b"mysql-connector-python",
    "mysql-connector-auth-switch": b"mysql-connector-python",
    "raw": b"proxyd-capture",
    "raw-track": b"proxyd-capture",
    "raw-deprecate-eof": b"proxyd-capture",
    "raw-track-deprecate-eof": b"proxyd-capture",
}


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_captured_handshake_response(session: Session) -> None:
    response = parse_handshake_response(session.response_payload)
    assert response.username == CAPTURED.user
    assert response.database == b"test"
    assert response.capability_flags & CLIENT.CONNECT_WITH_DB
    assert response.character_set == 45
    expected_plugin = (
        b"caching_sha2_password" if "auth-switch" in session.name else b"mysql_native_password"
    )
    assert response.auth_plugin_name == expected_plugin
    assert len(response.auth_response) == (32 if "auth-switch" in session.name else 20)
    assert response.connect_attrs[b"_client_name"] == CLIENT_NAMES[session.name]
    assert not is_ssl_request(session.response_payload)
    # libmariadb puts MariaDB's extended flags in the reserved bytes: read and rebuilt too.
    assert response.mariadb_capabilities == session.mariadb_capabilities
    assert build_handshake_response(response) == session.response_payload


def test_driver_capabilities() -> None:
    caps = {s.name: s.response.capability_flags for s in SESSIONS}
    assert not caps["pymysql"] & (CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF)
    assert caps["pymysql"] & CLIENT.MULTI_STATEMENTS and caps["pymysql"] & CLIENT.LOCAL_FILES
    assert caps["mysqlclient"] & CLIENT.SESSION_TRACK  # libmariadb asks for it
    assert not caps["mysqlclient"] & CLIENT.DEPRECATE_EOF
    assert not caps["mysql-connector"] & (CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF)
    assert caps["raw-track-deprecate-eof"] & CLIENT.SESSION_TRACK
    assert caps["raw-track-deprecate-eof"] & CLIENT.DEPRECATE_EOF


def test_handshake_response_variants() -> None:
    base = HandshakeResponse41(
        capability_flags=CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION,
        max_packet_size=1 << 24,
        character_set=33,
        username=b"app",
        auth_response=b"\x01" * 20,
    )
    assert parse_handshake_response(build_handshake_response(base)) == base
    full = HandshakeResponse41(
        capability_flags=base.capability_flags
        | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CLIENT.CONNECT_WITH_DB
        | CLIENT.PLUGIN_AUTH
        | CLIENT.CONNECT_ATTRS,
        max_packet_size=1 << 30,
        character_set=45,
        username=b"app",
        auth_response=b"\x02" * 300,  # more than 250: a 3-byte length
        database=b"db",
        auth_plugin_name=b"mysql_native_password",
        connect_attrs={b"a": b"1", b"": b"", b"k" * 300: b"v" * 70000},
    )
    assert parse_handshake_response(build_handshake_response(full)) == full
    # Pre-4.1 clients are refused; an old-style NUL-terminated auth response is read.
    with pytest.raises(ProtocolError):
        parse_handshake_response(struct.pack("<IIB", 0, 0, 8) + bytes(23) + b"u\x00")
    old = struct.pack("<IIB", CLIENT.PROTOCOL_41, 0, 8) + bytes(23) + b"u\x00pw\x00"
    assert parse_handshake_response(old).auth_response == b"pw"


def test_ssl_request() -> None:
    request = struct.pack("<IIB", CLIENT.PROTOCOL_41 | CLIENT.SSL, 1 << 24, 45) + bytes(23)
    assert is_ssl_request(request)
    assert not is_ssl_request(request + b"u\x00")
    assert not is_ssl_request(struct.pack("<IIB", CLIENT.PROTOCOL_41, 0, 45) + bytes(23))


def test_captured_auth_switch() -> None:
    session = CAPTURED.session("mysql-connector-auth-switch")
    directions = [d for d, _ in session.login]
    assert directions == ["server", "client", "server", "client", "server"]
    payload = payloads(session.login[2][1])[0][1]
    switch = parse_auth_switch_request(payload)
    assert switch.plugin_name == b"mysql_native_password"
    # MariaDB offers the greeting's scramble again.
    assert switch.plugin_data == session.greeting.auth_plugin_data
    assert build_auth_switch_request(switch.plugin_name, switch.plugin_data) == payload
    assert is_ok(session.login_result)
    with pytest.raises(ProtocolError):
        parse_auth_switch_request(b"\x00mysql_native_password\x00")


def test_auth_more_data() -> None:
    assert parse_auth_more_data(build_auth_more_data(b"\x03")) == b"\x03"
    with pytest.raises(ProtocolError):
        parse_auth_more_data(b"")
    with pytest.raises(ProtocolError):
        parse_auth_more_data(b"\x02\x03")


def test_login_results() -> None:
    ok = parse_ok(CAPTURED.session("pymysql").login_result, NO_TRACK)
    assert ok == OkPacket(status_flags=AUTOCOMMIT)
    err = parse_err(CAPTURED.session("pymysql-bad-password").login_result)
    assert err.error_code == 1045
    assert err.sql_state == b"28000"
    assert err.message.startswith(b"Access denied for user 'captest'@")


# --- OK, ERR, EOF ------------------------------------------------------------------


def test_captured_ok_without_session_track() -> None:
    payload = first_payload("pymysql", "insert")
    assert is_ok(payload) and not is_err(payload) and not is_eof(payload)
    ok = parse_ok(payload, NO_TRACK)
    assert ok == OkPacket(
        affected_rows=2,
        last_insert_id=1,
        status_flags=AUTOCOMMIT,
        info=b"Records: 2  Duplicates: 0  Warnings: 0",
    )
    assert build_ok(ok, NO_TRACK) == payload


def test_captured_ok_with_session_track() -> None:
    for step in ("set_user_var", "set_time_zone", "use_test", "begin", "set_names", "insert"):
        payload = first_payload("raw-track", step)
        ok = parse_ok(payload, TRACK)
        assert build_ok(ok, TRACK) == payload, step
        if step == "insert":
            assert ok.info.startswith(b"Records: 2") and not ok.session_state
        else:
            assert ok.status_flags & SERVER_SESSION_STATE_CHANGED
            assert ok.session_state
        # The same OK for a client without SESSION_TRACK: no flag, no state, same info.
        stripped = parse_ok(build_ok(ok, NO_TRACK), NO_TRACK)
        assert stripped.status_flags == ok.status_flags & ~SERVER_SESSION_STATE_CHANGED
        assert stripped.info == ok.info and stripped.session_state == b""


def test_captured_ok_that_ends_rows_under_deprecate_eof() -> None:
    packets = all_payloads("raw-track-deprecate-eof", "select_warning")
    last = packets[-1]
    # An OK with the EOF header, as short as an EOF: only the capabilities tell them apart.
    assert last[0] == 0xFE and len(last) == 7 and is_eof(last)
    ok = parse_ok(last, DEOF_TRACK)
    assert ok.header == 0xFE and ok.warnings == 1
    assert build_ok(ok, DEOF_TRACK) == last
    assert status_of_terminator(last, DEOF_TRACK) == ok.status_flags


def test_captured_eof() -> None:
    packets = all_payloads("pymysql", "select_warning")
    eof = packets[-1]
    assert is_eof(eof) and not is_ok(eof)
    assert parse_eof(eof) == EofPacket(warnings=1, status_flags=AUTOCOMMIT)
    assert build_eof(AUTOCOMMIT, 1) == eof
    assert status_of_terminator(eof, NO_TRACK) == AUTOCOMMIT
    assert parse_eof(b"\xfe") == EofPacket(0, 0)  # pre-4.1
    with pytest.raises(ProtocolError):
        parse_eof(b"\x00\x00\x00\x02\x00")


def test_eof_flags_session_state_even_for_a_client_without_tracking() -> None:
    # The raw client switched trackers on without CLIENT_SESSION_TRACK: MariaDB still
    # raises SERVER_SESSION_STATE_CHANGED in EOF packets, which such clients ignore.
    eof = parse_eof(all_payloads("raw", "select_warning")[-1])
    assert eof.status_flags == AUTOCOMMIT | SERVER_SESSION_STATE_CHANGED


def test_eof_says_more_results_follow() -> None:
    packets = all_payloads("pymysql", "multi_statement")
    eofs = [parse_eof(p) for p in packets if is_eof(p)]
    # Each result: EOF after the columns, EOF after the rows; the first result's last
    # EOF announces the second result.
    assert len(eofs) == 4
    assert eofs[1].status_flags & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
    assert not eofs[3].status_flags & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS


def test_captured_err() -> None:
    payload = first_payload("pymysql", "error")
    assert is_err(payload) and not is_ok(payload)
    err = parse_err(payload)
    assert err == ErrPacket(1146, b"42S02", b"Table 'test.no_such_table' doesn't exist")
    assert build_err(err.error_code, err.message, err.sql_state) == payload
    assert build_err(1146, err.message.decode(), b"42S02") == payload
    # Without PROTOCOL_41 there is no SQL state marker; the rest is the message.
    old = parse_err(b"\xff\x15\x04Access denied", 0)
    assert old == ErrPacket(1045, b"HY000", b"Access denied")
    with pytest.raises(ProtocolError):
        parse_err(b"\x00\x15\x04")
    with pytest.raises(ProtocolError):
        parse_err(b"\xff\x15")


def test_build_err_pads_the_sql_state() -> None:
    assert parse_err(build_err(1, "x", b"42")).sql_state == b"42000"
    assert parse_err(build_err(1, "ü")).message == "ü".encode()


def test_captured_error_in_the_middle_of_rows() -> None:
    packets = all_payloads("pymysql", "error_mid_rows")
    err = parse_err(packets[-1])
    assert (err.error_code, err.sql_state) == (1242, b"21000")
    assert err.message == b"Subquery returns more than 1 row"


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00", b"\x00\x00\x00\x02\x00\x00", b"\x01\x00\x00\x02\x00\x00\x00"],
    ids=["empty", "header-only", "short", "not-ok"],
)
def test_malformed_ok(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_ok(payload, TRACK)


def test_ok_info_without_session_track_from_an_older_peer() -> None:
    # A peer following the docs' string<EOF> literally: kept as it is.
    payload = b"\x00\x01\x00\x02\x00\x00\x00Rows matched: 1"
    assert parse_ok(payload, NO_TRACK).info == b"Rows matched: 1"


# --- session state ------------------------------------------------------------------


def state_of(step: str, command: int | None = None) -> list[StateChange]:
    block = parse_ok(first_payload("raw-track", step, command), TRACK).session_state
    changes = parse_session_state(block)
    assert build_session_state(changes) == block
    return changes


def test_session_state_user_variable() -> None:
    assert state_of("set_user_var") == [StateChange(SESSION_TRACK_STATE_CHANGE, b"1")]


def test_session_state_system_variable() -> None:
    assert state_of("set_time_zone") == [
        StateChange(SESSION_TRACK_SYSTEM_VARIABLES, b"time_zone", b"+01:00"),
        StateChange(SESSION_TRACK_STATE_CHANGE, b"1"),
    ]


def test_session_state_schema() -> None:
    assert state_of("use_test") == [
        StateChange(SESSION_TRACK_SCHEMA, b"test"),
        StateChange(SESSION_TRACK_STATE_CHANGE, b"1"),
    ]
    assert state_of("init_db", COMMAND.COM_INIT_DB)[0] == StateChange(SESSION_TRACK_SCHEMA, b"test")


def test_session_state_transaction() -> None:
    assert state_of("begin") == [
        StateChange(SESSION_TRACK_TRANSACTION_STATE, b"T_______"),
        StateChange(SESSION_TRACK_TRANSACTION_CHARACTERISTICS, b"START TRANSACTION;"),
    ]
    assert state_of("commit") == [
        StateChange(SESSION_TRACK_TRANSACTION_STATE, b"________"),
        StateChange(SESSION_TRACK_TRANSACTION_CHARACTERISTICS, b""),
    ]


def test_session_state_of_switching_trackers_on() -> None:
    changes = state_of("trackers_on")
    assert (
        StateChange(SESSION_TRACK_SYSTEM_VARIABLES, b"session_track_system_variables", b"*")
        in changes
    )
    assert {c.type for c in changes} == {0, 2, 4, 5}


def test_session_state_edge_cases() -> None:
    # A system variable entry without a value, an unknown type kept raw, GTIDs.
    block = b"\x00\x02\x01x" + b"\x09\x03abc" + b"\x03\x05\x00\x030-1"
    assert parse_session_state(block) == [
        StateChange(0, b"x", b""),
        StateChange(9, b"abc"),
        StateChange(3, b"\x00\x030-1"),
    ]
    assert parse_session_state(b"") == []
    for bad in (b"\x00", b"\x00\x05\x01", b"\x01\x02\x05a"):
        with pytest.raises(ProtocolError):
            parse_session_state(bad)


# --- commands ------------------------------------------------------------------------


def test_captured_commands_are_built_the_same() -> None:
    for command in CAPTURED.session("raw").commands:
        seq, payload = payloads(command.parts[0].client)[0]
        assert seq == 0
        assert build_command(payload[0], payload[1:]) == payload
        assert payload[0] == command.command


def test_captured_stmt_prepare_ok() -> None:
    prep = parse_stmt_prepare_ok(first_payload("raw", "prepare_select"))
    assert prep.num_params == 2 and prep.num_columns == 2 and prep.warnings == 0
    assert prep.statement_id >= 1
    insert = parse_stmt_prepare_ok(first_payload("mysql-connector", "prepared_insert", 0x16))
    assert (insert.num_columns, insert.num_params, insert.warnings) == (0, 1, 0)
    # The short form some servers send, without the filler and warnings.
    assert parse_stmt_prepare_ok(b"\x00\x07\x00\x00\x00\x01\x00\x02\x00") == StmtPrepareOk(
        7, 1, 2, 0
    )
    with pytest.raises(ProtocolError):
        parse_stmt_prepare_ok(first_payload("raw", "prepare_error"))
    with pytest.raises(ProtocolError):
        parse_stmt_prepare_ok(b"\x00\x01\x00")


def test_mariadb_extended_capabilities_in_the_handshake_response() -> None:
    """A client leaving CLIENT_MYSQL out puts MariaDB's capabilities in the last four
    reserved bytes; with CLIENT_MYSQL set those bytes mean nothing."""
    mariadb = HandshakeResponse41(
        capability_flags=CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION,
        max_packet_size=1 << 24,
        character_set=45,
        username=b"app",
        auth_response=b"\x01" * 20,
        mariadb_capabilities=MARIADB_CLIENT_EXTENDED_METADATA,
    )
    payload = build_handshake_response(mariadb)
    assert payload[28:32] == struct.pack("<I", MARIADB_CLIENT_EXTENDED_METADATA)
    assert parse_handshake_response(payload) == mariadb
    mysql = dataclasses.replace(mariadb, capability_flags=mariadb.capability_flags | CLIENT_MYSQL)
    payload = build_handshake_response(mysql)
    assert payload[28:32] == bytes(4)
    garbled = payload[:28] + b"\xff" * 4 + payload[32:]
    assert parse_handshake_response(garbled).mariadb_capabilities == 0
