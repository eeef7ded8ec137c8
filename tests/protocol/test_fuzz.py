"""Every parser, fed random bytes and mutated captures, parses or raises ProtocolError.

Nothing else may escape: an IndexError, struct.error or UnicodeDecodeError from
bytes a peer sent would be a traceback instead of an ERR packet for one client.
Round-trip properties of the builders and the framing live here too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyd.protocol import packets, response
from proxyd.protocol.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COMMAND,
    SERVER_SESSION_STATE_CHANGED,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    EofPacket,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    OkPacket,
    StateChange,
    build_eof,
    build_err,
    build_handshake_response,
    build_handshake_v10,
    build_ok,
    build_session_state,
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
from proxyd.protocol.packets import PacketReader, Reader, encode_packet, lenenc_int, lenenc_str
from proxyd.protocol.response import ResponseTracker
from proxyd.protocol.resultset import decode_text_result
from tests.protocol.captured import CAPTURED, FUZZ, payloads

# --- corpora from the captures --------------------------------------------------------

ANSWERS = [c for c in CAPTURED.commands if c.answer]
SERVER_PAYLOADS = sorted(
    {p for c in ANSWERS for part in c.parts for _, p in payloads(part.server) if len(p) < 4096}
)
GREETINGS = [s.greeting_payload for s in CAPTURED.sessions]
RESPONSES = [s.response_payload for s in CAPTURED.sessions]
OKS = [p for p in SERVER_PAYLOADS if p[:1] == b"\x00" or (p[:1] == b"\xfe" and len(p) > 5)]
ERRS = [p for p in SERVER_PAYLOADS if p[:1] == b"\xff"]
EOFS = [p for p in SERVER_PAYLOADS if p[:1] == b"\xfe" and len(p) <= 5]
SWITCHES = [
    payloads(data)[0][1]
    for s in CAPTURED.sessions
    for direction, data in s.login[2:-1]
    if direction == "server"
]
TRACK_CAPS = CAPTURED.session("raw-track").capabilities
PREPARE_OKS = [payloads(c.answer)[0][1] for c in ANSWERS if c.command == COMMAND.COM_STMT_PREPARE]
TEXT_RESULTS = [
    ([p for _, p in payloads(c.answer)], c.capabilities)
    for c in ANSWERS
    if c.command == COMMAND.COM_QUERY and len(c.answer) < 4096 and len(c.parts) == 1
]
CAPABILITIES = [*sorted({s.capabilities for s in CAPTURED.sessions}), 0, CLIENT.PROTOCOL_41]


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for op, where, value in ops:
        pos = where % (len(out) + 1)
        if op == 0 and pos < len(out):
            out[pos] = value  # overwrite a byte
        elif op == 1:
            out.insert(pos, value)
        elif op == 2 and pos < len(out):
            del out[pos]
        elif op == 3:
            del out[pos:]  # truncate
        elif op == 4 and pos < len(out):
            out[pos] ^= 1 << (value % 8)  # flip a bit
    return bytes(out)


OPS = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 1 << 20), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def fuzzed(corpus: list[bytes]) -> st.SearchStrategy[bytes]:
    """Random bytes, or a captured example with a few bytes changed."""
    assert corpus
    mutated = st.builds(_mutate, st.sampled_from(corpus), OPS)
    return st.one_of(st.binary(max_size=300), mutated)


def survives(fn: Callable[..., Any], *args: Any) -> Any:
    """The call's result, or None for a ProtocolError; any other exception fails the test."""
    try:
        return fn(*args)
    except ProtocolError:
        return None


def _state_blocks() -> list[bytes]:
    blocks = set()
    for p in OKS:
        ok = survives(parse_ok, p, TRACK_CAPS)
        if ok is not None and ok.session_state:
            blocks.add(ok.session_state)
    return sorted(blocks)


STATE_BLOCKS = _state_blocks()


caps_st = st.sampled_from(CAPABILITIES)


# --- connection phase -------------------------------------------------------------------


@FUZZ
@given(fuzzed(GREETINGS))
def test_fuzz_handshake_v10(payload: bytes) -> None:
    greeting = survives(parse_handshake_v10, payload)
    if greeting is not None:
        assert isinstance(greeting, HandshakeV10)


@FUZZ
@given(fuzzed(RESPONSES))
def test_fuzz_handshake_response(payload: bytes) -> None:
    survives(parse_handshake_response, payload)
    is_ssl_request(payload)


@FUZZ
@given(fuzzed(SWITCHES))
def test_fuzz_auth_switch_and_more_data(payload: bytes) -> None:
    survives(parse_auth_switch_request, payload)
    survives(parse_auth_more_data, payload)


# --- generic responses --------------------------------------------------------------------


@FUZZ
@given(fuzzed(OKS), caps_st)
def test_fuzz_ok(payload: bytes, caps: int) -> None:
    ok = survives(parse_ok, payload, caps)
    if ok is not None:
        # Whatever parsed builds again (for a client with or without tracking).
        build_ok(ok, caps)
        build_ok(ok, caps & ~CLIENT.SESSION_TRACK)
        if ok.session_state:
            survives(parse_session_state, ok.session_state)
    survives(status_of_terminator, payload, caps)


@FUZZ
@given(fuzzed(ERRS), caps_st)
def test_fuzz_err(payload: bytes, caps: int) -> None:
    survives(parse_err, payload, caps)


@FUZZ
@given(fuzzed(EOFS))
def test_fuzz_eof(payload: bytes) -> None:
    survives(parse_eof, payload)


@FUZZ
@given(fuzzed(STATE_BLOCKS))
def test_fuzz_session_state(block: bytes) -> None:
    survives(parse_session_state, block)


@FUZZ
@given(fuzzed(PREPARE_OKS))
def test_fuzz_stmt_prepare_ok(payload: bytes) -> None:
    survives(parse_stmt_prepare_ok, payload)


@st.composite
def text_results(draw: st.DrawFn) -> tuple[list[bytes], int]:
    if draw(st.booleans()):
        return draw(st.lists(st.binary(max_size=40), max_size=6)), draw(caps_st)
    packets, caps = draw(st.sampled_from(TEXT_RESULTS))
    packets = list(packets)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(packets) - 1))
        action = draw(st.integers(0, 2))
        if action == 0:
            packets[i] = _mutate(packets[i], draw(OPS))
        elif action == 1 and len(packets) > 1:
            del packets[i]
        else:
            packets.insert(i, draw(st.binary(max_size=20)))
    return packets, caps


@FUZZ
@given(text_results())
def test_fuzz_decode_text_result(result: tuple[list[bytes], int]) -> None:
    survives(decode_text_result, *result)


# --- framing ------------------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            _mutate, st.sampled_from([c.answer for c in ANSWERS if len(c.answer) < 4096]), OPS
        ),
    ),
    st.integers(0, 1 << 16),
    st.integers(1, 64),
)
def test_fuzz_packet_reader(data: bytes, max_payload: int, step: int) -> None:
    reader = PacketReader(max_payload=max_payload)
    got = 0
    try:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            while (packet := reader.next_packet()) is not None:
                seq, payload = packet
                assert 0 <= seq < 256 and len(payload) <= max_payload
                got += 4 + len(payload)
    except ProtocolError:
        return
    assert got + reader.buffered == len(data)


# --- ResponseTracker ------------------------------------------------------------------------

COMMANDS = [
    COMMAND.COM_QUERY,
    COMMAND.COM_STMT_EXECUTE,
    COMMAND.COM_PROCESS_INFO,
    COMMAND.COM_STMT_FETCH,
    COMMAND.COM_FIELD_LIST,
    COMMAND.COM_STMT_PREPARE,
    COMMAND.COM_STATISTICS,
    COMMAND.COM_PING,
    COMMAND.COM_INIT_DB,
    COM_RESET_CONNECTION,
    COMMAND.COM_STMT_RESET,
    COMMAND.COM_STMT_CLOSE,
    COMMAND.COM_QUIT,
]
ANSWER_CORPUS = [(c.command, c.parts[0].server, c.capabilities) for c in ANSWERS]


@st.composite
def tracker_inputs(draw: st.DrawFn, command: int) -> tuple[bytes, int]:
    """A captured answer (to this command, mostly) with a few bytes changed, or random packets."""
    if draw(st.booleans()):
        own = [a for a in ANSWER_CORPUS if a[0] == command]
        use_own: bool = draw(st.booleans())
        corpus = own if own and use_own else ANSWER_CORPUS
        _, data, caps = draw(st.sampled_from(corpus))
        return _mutate(data, draw(OPS)), caps
    frames = draw(
        st.lists(st.builds(encode_packet, st.binary(max_size=24), st.integers(0, 255)), max_size=6)
    )
    return b"".join(frames) + draw(st.binary(max_size=8)), draw(caps_st)


@pytest.mark.parametrize("command", COMMANDS, ids=[f"0x{c:02x}" for c in COMMANDS])
@settings(parent=FUZZ, max_examples=max(1, FUZZ.max_examples // 3))
@given(data=st.data(), cuts=st.lists(st.integers(0, 1 << 16), max_size=4), strip=st.booleans())
def test_fuzz_response_tracker(
    command: int, data: st.DataObject, cuts: list[int], strip: bool
) -> None:
    answer, caps = data.draw(tracker_inputs(command))
    client_caps = caps & ~CLIENT.SESSION_TRACK if strip else caps
    tracker = ResponseTracker(command, caps, client_caps)
    bounds = sorted({0, len(answer), *(c % (len(answer) + 1) for c in cuts)})
    out = bytearray()
    rest = b""
    try:
        for a, b in itertools.pairwise(bounds):
            rest += tracker.feed(answer[a:b])
            out += b"".join(tracker.take_output())
    except ProtocolError:
        return
    assert answer.endswith(rest)
    if strip:
        return
    if tracker.done or tracker.awaiting_infile:
        assert bytes(out) + rest == answer
    else:
        assert rest == b""
        assert answer.startswith(bytes(out))


# --- round trips ----------------------------------------------------------------------------


@FUZZ
@given(st.integers(0, (1 << 64) - 1))
def test_lenenc_int_round_trip(value: int) -> None:
    encoded = lenenc_int(value)
    expected = 1 if value < 251 else 3 if value < 1 << 16 else 4 if value < 1 << 24 else 9
    assert len(encoded) == expected
    r = Reader(encoded)
    assert r.lenenc_int() == value and r.remaining() == 0


@FUZZ
@given(st.binary(max_size=70000))
def test_lenenc_str_round_trip(value: bytes) -> None:
    r = Reader(lenenc_str(value) + b"tail")
    assert r.lenenc_str() == value
    assert r.rest() == b"tail"


@FUZZ
@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    st.integers(0, 255),
    st.lists(st.integers(1, 50), max_size=8),
)
def test_framing_round_trip_across_continuations(
    bodies: list[bytes], seq: int, steps: list[int]
) -> None:
    # The 16 MiB rule with a 7-byte limit: every split, exact multiple and empty
    # trailing packet shows up in a few dozen bytes.
    with mock.patch.object(packets, "MAX_PACKET_PAYLOAD", 7):
        stream = b"".join(encode_packet(body, seq) for body in bodies)
        reader = PacketReader()
        got = []
        pos = 0
        for step in [*steps, len(stream)]:
            reader.feed(stream[pos : pos + step])
            pos += step
            while (packet := reader.next_packet()) is not None:
                got.append(packet[1])
        assert got == bodies
        assert reader.buffered == 0


def text_row(first: int, size: int, limit: int) -> bytes:
    """A row payload the tracker must treat as a row: a short one never opens with 0xFE/0xFF."""
    if size < limit and first >= 0xFB:
        first = 0x01
    return bytes((first,)) + b"r" * (size - 1)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 255), st.integers(1, 40)), max_size=6),
    st.integers(1, 3),
    st.booleans(),
    st.lists(st.integers(0, 1 << 12), max_size=3),
)
def test_tracker_follows_rows_across_continuations(
    rows: list[tuple[int, int]], columns: int, deprecate_eof: bool, cuts: list[int]
) -> None:
    # Result sets whose rows cross the (shrunk) 16 MiB limit at every offset: the tracker
    # ends exactly after the terminator and passes everything on.
    limit = 16
    caps = CLIENT.PROTOCOL_41 | (CLIENT.DEPRECATE_EOF if deprecate_eof else 0)
    with (
        mock.patch.object(packets, "MAX_PACKET_PAYLOAD", limit),
        mock.patch.object(response, "MAX_PACKET_PAYLOAD", limit),
    ):
        parts = [lenenc_int(columns)] + [b"\x03def" + b"c" * 20] * columns
        if not deprecate_eof:
            parts.append(build_eof(2))
        stream = bytearray()
        seq = 1
        for part in parts:
            stream += encode_packet(part, seq)
            seq += 1
        for first, size in rows:
            stream += encode_packet(text_row(first, size, limit), seq)
            seq += size // limit + 1  # one packet per full chunk, and the last (maybe empty)
        terminator = (
            build_ok(OkPacket(status_flags=2, header=0xFE), caps) if deprecate_eof else build_eof(2)
        )
        stream += encode_packet(terminator, seq)
        data = bytes(stream) + b"extra"
        tracker = ResponseTracker(COMMAND.COM_QUERY, caps)
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        rest = b"".join(tracker.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
        assert tracker.done
        assert rest == b"extra"
        assert b"".join(tracker.take_output()) == data[: -len(b"extra")]


names = st.binary(max_size=30).filter(lambda b: b"\x00" not in b)


@FUZZ
@given(
    version=names,
    connection_id=st.integers(0, (1 << 32) - 1),
    scramble=st.binary(min_size=20, max_size=32),
    extra_caps=st.integers(0, (1 << 32) - 1),
    charset=st.integers(0, 255),
    status=st.integers(0, 0xFFFF),
    plugin=names,
    mariadb=st.integers(0, (1 << 32) - 1),
)
def test_handshake_v10_round_trip(
    version: bytes,
    connection_id: int,
    scramble: bytes,
    extra_caps: int,
    charset: int,
    status: int,
    plugin: bytes,
    mariadb: int,
) -> None:
    greeting = HandshakeV10(
        server_version=version,
        connection_id=connection_id,
        auth_plugin_data=scramble,
        capability_flags=extra_caps
        | CLIENT.PROTOCOL_41
        | CLIENT.SECURE_CONNECTION
        | CLIENT.PLUGIN_AUTH,
        character_set=charset,
        status_flags=status,
        auth_plugin_name=plugin,
        mariadb_capabilities=mariadb,
    )
    assert parse_handshake_v10(build_handshake_v10(greeting)) == greeting


@st.composite
def handshake_responses(draw: st.DrawFn) -> HandshakeResponse41:
    caps = draw(st.integers(0, (1 << 32) - 1)) | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION
    lenenc = caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    with_db = caps & CLIENT.CONNECT_WITH_DB
    return HandshakeResponse41(
        capability_flags=caps,
        max_packet_size=draw(st.integers(0, (1 << 32) - 1)),
        character_set=draw(st.integers(0, 255)),
        username=draw(names),
        auth_response=draw(st.binary(max_size=300 if lenenc else 255)),
        database=draw(names.filter(bool)) if with_db and draw(st.booleans()) else None,
        auth_plugin_name=draw(names) if caps & CLIENT.PLUGIN_AUTH else None,
        connect_attrs=(
            draw(st.dictionaries(st.binary(max_size=20), st.binary(max_size=300), max_size=4))
            if caps & CLIENT.CONNECT_ATTRS
            else {}
        ),
    )


@FUZZ
@given(handshake_responses())
def test_handshake_response_round_trip(hello: HandshakeResponse41) -> None:
    assert parse_handshake_response(build_handshake_response(hello)) == hello


@st.composite
def ok_packets(draw: st.DrawFn) -> tuple[OkPacket, int]:
    caps = CLIENT.PROTOCOL_41 | draw(st.sampled_from([0, CLIENT.SESSION_TRACK]))
    status = draw(st.integers(0, 0xFFFF))
    tracked = caps & CLIENT.SESSION_TRACK and status & SERVER_SESSION_STATE_CHANGED
    if not caps & CLIENT.SESSION_TRACK:
        status &= ~SERVER_SESSION_STATE_CHANGED
    ok = OkPacket(
        affected_rows=draw(st.integers(0, (1 << 64) - 1)),
        last_insert_id=draw(st.integers(0, (1 << 64) - 1)),
        status_flags=status,
        warnings=draw(st.integers(0, 0xFFFF)),
        info=draw(st.binary(max_size=300)),
        session_state=draw(st.binary(max_size=300)) if tracked else b"",
        header=draw(st.sampled_from([0x00, 0xFE])),
    )
    return ok, caps


@FUZZ
@given(ok_packets())
def test_ok_round_trip(case: tuple[OkPacket, int]) -> None:
    ok, caps = case
    assert parse_ok(build_ok(ok, caps), caps) == ok


@FUZZ
@given(
    st.integers(0, 0xFFFF),
    st.binary(min_size=5, max_size=5),
    st.binary(max_size=300),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
)
def test_err_and_eof_round_trip(
    code: int, state: bytes, message: bytes, status: int, warnings: int
) -> None:
    assert parse_err(build_err(code, message, state)) == ErrPacket(code, state, message)
    assert parse_eof(build_eof(status, warnings)) == EofPacket(warnings, status)


state_changes = st.one_of(
    st.builds(StateChange, st.just(0), st.binary(max_size=40), st.binary(max_size=300)),
    st.builds(StateChange, st.integers(1, 255), st.binary(max_size=300)),
)


@FUZZ
@given(st.lists(state_changes, max_size=6))
def test_session_state_round_trip(changes: list[StateChange]) -> None:
    assert parse_session_state(build_session_state(changes)) == changes
