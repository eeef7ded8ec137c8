"""Text result sets: decoding captured answers, and the ones proxyd builds itself."""

from __future__ import annotations

import pytest

from proxyd.protocol.constants import CLIENT, COMMAND, SERVER_STATUS
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import ErrPacket, OkPacket
from proxyd.protocol.packets import Reader
from proxyd.protocol.response import ResponseTracker
from proxyd.protocol.resultset import (
    column_definition,
    column_names,
    decode_text_result,
    encode_text_result,
)
from tests.protocol.captured import CAPTURED, Session, payloads

# Every session that ran the common statements with the text protocol.
SESSIONS = [s for s in CAPTURED.sessions if s.step("select_multi_row")]


def decode(session: Session, step: str) -> object:
    (command,) = [c for c in session.step(step) if c.command == COMMAND.COM_QUERY]
    packets = [p for _, p in payloads(command.answer)]
    return decode_text_result(packets, session.capabilities)


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_captured_result_sets(session: Session) -> None:
    assert decode(session, "select_1") == [(b"1",)]
    assert decode(session, "select_multi_row") == [
        (str(i).encode(), b"x" * i) for i in range(1, 51)
    ]
    assert decode(session, "select_nulls") == [(None, b"1", None, b"")]
    assert decode(session, "select_empty") == []
    assert decode(session, "select_warning") == [(None,)]
    # Of several results, the first.
    assert decode(session, "multi_statement") == [(b"1",)]
    assert decode(session, "call_proc") == [(b"1",)]


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_captured_ok_and_err(session: Session) -> None:
    ok = decode(session, "insert")
    assert isinstance(ok, OkPacket) and (ok.affected_rows, ok.last_insert_id) == (2, 1)
    err = decode(session, "error")
    assert isinstance(err, ErrPacket) and err.error_code == 1146
    # Rows, then an error: the error wins.
    err = decode(session, "error_mid_rows")
    assert isinstance(err, ErrPacket) and err.error_code == 1242
    # A statement that fails after another succeeded: the first result is what is read.
    assert decode(session, "multi_statement_error") == [(b"1",)]


@pytest.mark.parametrize("name", ["raw-track", "raw-track-deprecate-eof"])
def test_captured_long_values_and_many_columns(name: str) -> None:
    session = CAPTURED.session(name)
    # 300 and 70000 bytes: 2- and 3-byte length prefixes.
    assert decode(session, "select_long_values") == [(b"y" * 300, b"z" * 70000)]
    assert decode(session, "select_300_columns") == [tuple(str(i).encode() for i in range(1, 301))]


def test_empty_answer_is_an_error() -> None:
    with pytest.raises(ProtocolError):
        decode_text_result([], CLIENT.PROTOCOL_41)


@pytest.mark.parametrize("deprecate_eof", [False, True], ids=["eof", "deprecate_eof"])
def test_encoded_result_decodes_and_tracks(deprecate_eof: bool) -> None:
    caps = CLIENT.PROTOCOL_41 | (CLIENT.DEPRECATE_EOF if deprecate_eof else 0)
    rows: list[tuple[object, ...]] = [
        (1, "a", None),
        (b"bytes", "ü", ""),
        (2.5, "x" * 300, "y" * 70000),
    ]
    data = encode_text_result(["id", "name", "note"], rows, caps)
    packets = payloads(data)
    assert [seq for seq, _ in packets] == list(range(1, len(packets) + 1))
    assert decode_text_result([p for _, p in packets], caps) == [
        (b"1", b"a", None),
        (b"bytes", "ü".encode(), b""),
        (b"2.5", b"x" * 300, b"y" * 70000),
    ]
    tracker = ResponseTracker(COMMAND.COM_QUERY, caps)
    assert tracker.feed(data) == b""
    assert tracker.done
    assert tracker.status_flags == SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT


def test_encoded_result_without_rows() -> None:
    caps = CLIENT.PROTOCOL_41
    data = encode_text_result(["a"], [], caps, status_flags=0x0003)
    assert decode_text_result([p for _, p in payloads(data)], caps) == []
    tracker = ResponseTracker(COMMAND.COM_QUERY, caps)
    tracker.feed(data)
    assert tracker.done and tracker.status_flags == 0x0003


def test_column_definition_layout() -> None:
    r = Reader(column_definition(b"name", 0x08, 63))
    assert [r.lenenc_str() for _ in range(6)] == [b"def", b"", b"", b"", b"name", b"name"]
    assert r.lenenc_int() == 0x0C  # length of the fixed fields
    assert r.u16() == 63  # character set
    assert r.u32() == 1024  # column length
    assert r.u8() == 0x08  # type
    assert r.u16() == 0  # flags
    assert r.u8() == 0  # decimals
    assert r.take(2) == b"\x00\x00"
    assert r.remaining() == 0


def test_encoded_result_matches_what_mariadb_sends_in_shape() -> None:
    # Same packet count and terminators as the server's own answer to SELECT 1.
    for name in ("raw", "raw-deprecate-eof"):
        session = CAPTURED.session(name)
        server = [p for _, p in payloads(session.one("select_1").answer)]
        ours = [p for _, p in payloads(encode_text_result(["1"], [(1,)], session.capabilities))]
        assert len(ours) == len(server)
        assert ours[0] == server[0] and ours[-2] == server[-2]
        assert ours[-1][0] == server[-1][0] == 0xFE


@pytest.mark.parametrize("session", SESSIONS, ids=[s.name for s in SESSIONS])
def test_column_names_of_captured_answers(session: Session) -> None:
    def names(step: str) -> list[bytes]:
        (command,) = [c for c in session.step(step) if c.command == COMMAND.COM_QUERY]
        return column_names([p for _, p in payloads(command.answer)])

    assert names("select_1") == [b"1"]


def test_column_names_of_encoded_answers() -> None:
    caps = CLIENT.PROTOCOL_41 | CLIENT.DEPRECATE_EOF
    data = encode_text_result(["Slave_IO_Running", "Seconds_Behind_Master"], [("Yes", 0)], caps)
    assert column_names([p for _, p in payloads(data)]) == [
        b"Slave_IO_Running",
        b"Seconds_Behind_Master",
    ]
    assert column_names([b"\x00\x00\x00\x02\x00\x00\x00"]) == []  # an OK
