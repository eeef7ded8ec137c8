"""ResponseTracker over every answer a real MariaDB gave, in every chunking, plus synthetic edges.

Each captured answer is fed whole, one byte at a time, and split in two at
every position (for long answers: around every packet boundary, where the
tracker holds partial headers and steering packets). In every case the
tracker must say done exactly at the end, leave nothing over, pass on
exactly the input and learn the same things from it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxyd.protocol.constants import (
    CLIENT,
    COM_RESET_CONNECTION,
    COMMAND,
    MAX_PACKET_PAYLOAD,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS,
    SERVER_STATUS_IN_TRANS_READONLY,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
    SESSION_TRACK_TRANSACTION_STATE,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    HandshakeResponse41,
    OkPacket,
    build_eof,
    build_handshake_response,
    build_ok,
    parse_eof,
    parse_ok,
    parse_session_state,
)
from proxyd.protocol.packets import encode_packet, lenenc_int, lenenc_str
from proxyd.protocol.response import ResponseTracker, expects_response
from tests.protocol.captured import CAPTURED, Command, Session, payloads, physical_packets

# A MariaDB progress report (ERR 0xFFFF in the middle of an answer) is sent only to a
# client that asked for MARIADB_CLIENT_PROGRESS; libmariadb (mysqlclient) does, talking
# to the server directly. proxyd never asks (test_proxyd_never_asks_for_progress_reports),
# so no tracker sees one; those answers are left out.
ANSWERED = [c for c in CAPTURED.commands if c.answer and not c.has_progress_report]
UNANSWERED = [c for c in CAPTURED.commands if not c.answer]
# Answers on a connection with CLIENT_SESSION_TRACK, replayed for a client without it.
TRACKED = [c for c in ANSWERED if c.capabilities & CLIENT.SESSION_TRACK]
INFILE = [c for c in ANSWERED if len(c.parts) == 2]
TRACKING = [s for s in CAPTURED.sessions if s.trackers_on]
# Splitting at every position costs O(n^2); longer answers are split near packet starts.
FULL_SPLIT_LIMIT = 2048


def ids(commands: list[Command]) -> list[str]:
    return [c.id for c in commands]


def joined(out: list[bytes | memoryview]) -> bytes:
    return b"".join(out)


def feed_all(
    command: Command,
    chunkings: list[list[bytes]] | None = None,
    client_capabilities: int | None = None,
) -> tuple[ResponseTracker, bytes]:
    """Feed every part of a captured answer, each in the given chunks; return all passed on."""
    tracker = ResponseTracker(command.command, command.capabilities, client_capabilities)
    out = bytearray()
    for i, part in enumerate(command.parts):
        if i:
            assert tracker.awaiting_infile, command.id
            tracker.infile_sent()
        for chunk in chunkings[i] if chunkings else [part.server]:
            assert not tracker.done and not tracker.awaiting_infile, command.id
            assert tracker.feed(chunk) == b"", command.id
        out += joined(tracker.take_output())
    assert tracker.done, command.id
    return tracker, bytes(out)


def split_points(data: bytes) -> list[int]:
    if len(data) <= FULL_SPLIT_LIMIT:
        return list(range(1, len(data)))
    starts = []
    pos = 0
    while pos + 4 <= len(data):
        starts.append(pos)
        pos += 4 + int.from_bytes(data[pos : pos + 3], "little")
    # Around a packet start: before it, inside and right after its header, its first byte.
    points = set(range(1, 16)) | set(range(len(data) - 16, len(data)))
    for start in starts[:: max(1, len(starts) // 64)] + starts[-3:]:
        points.update((start - 1, start, start + 2, start + 4, start + 5))
    return sorted(p for p in points if 0 < p < len(data))


def chunkings(command: Command) -> Iterator[tuple[str, list[list[bytes]]]]:
    """Every way of chunking the answer this file tries, by name."""
    whole = [[p.server] for p in command.parts]
    one_by_one = [[p.server[i : i + 1] for i in range(len(p.server))] for p in command.parts]
    yield "bytes", one_by_one
    for index, part in enumerate(command.parts):
        data = part.server
        for at in split_points(data):
            halves = list(whole)
            halves[index] = [data[:at], data[at:]]
            yield f"part {index} split at {at}", halves


def learned(tracker: ResponseTracker) -> tuple[object, ...]:
    return (
        tracker.status_flags,
        tracker.err,
        tracker.ok,
        tracker.prepare_ok,
        tracker.state_changes,
        tracker.last_seq,
    )


# --- every captured answer ------------------------------------------------------------


@pytest.mark.parametrize("command", ANSWERED, ids=ids(ANSWERED))
def test_captured_answer_in_every_chunking(command: Command) -> None:
    reference, out = feed_all(command)
    assert out == command.answer
    check_semantics(command, reference)
    for name, chunks in chunkings(command):
        tracker, out = feed_all(command, chunks)
        assert out == command.answer, (command.id, name)
        assert learned(tracker) == learned(reference), (command.id, name)


@pytest.mark.parametrize("command", ANSWERED, ids=ids(ANSWERED))
def test_bytes_after_the_answer_are_left_over(command: Command) -> None:
    extra = encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1) + b"\x07"
    *first, last = (p.server for p in command.parts)
    data = last + extra
    points = split_points(data)
    for at in [len(data), *points[:: max(1, len(points) // 30)]]:
        tracker = ResponseTracker(command.command, command.capabilities)
        for part in first:
            assert tracker.feed(part) == b""
            tracker.infile_sent()
        tracker.take_output()
        rest = tracker.feed(data[:at]) + tracker.feed(data[at:])
        assert rest == extra, (command.id, at)
        assert tracker.done
        assert joined(tracker.take_output()) == last
    # Once done, everything fed is left over.
    assert tracker.feed(extra) == extra
    assert tracker.take_output() == []


@pytest.mark.parametrize("command", UNANSWERED, ids=ids(UNANSWERED))
def test_commands_without_answer_are_done_at_once(command: Command) -> None:
    assert command.command in (COMMAND.COM_QUIT, COMMAND.COM_STMT_CLOSE)
    assert not expects_response(command.command)
    tracker = ResponseTracker(command.command, command.capabilities)
    assert tracker.done
    assert tracker.feed(b"\x01\x00\x00\x00\x00") == b"\x01\x00\x00\x00\x00"


def test_every_kind_of_answer_was_captured() -> None:
    kinds = {(c.session.name, c.command) for c in ANSWERED}
    for session in ("raw", "raw-track-deprecate-eof"):
        for command in (
            COMMAND.COM_QUERY,
            COMMAND.COM_INIT_DB,
            COMMAND.COM_FIELD_LIST,
            COMMAND.COM_STATISTICS,
            COMMAND.COM_PROCESS_INFO,
            COMMAND.COM_PING,
            COMMAND.COM_STMT_PREPARE,
            COMMAND.COM_STMT_EXECUTE,
            COMMAND.COM_STMT_FETCH,
            COMMAND.COM_STMT_RESET,
            COM_RESET_CONNECTION,
        ):
            assert (session, command) in kinds
    assert {c.session.name for c in INFILE} >= {"pymysql", "mysql-connector", "raw"}


def test_proxyd_never_asks_for_progress_reports() -> None:
    # MariaDB's extended capabilities (MARIADB_CLIENT_PROGRESS among them) live in the
    # last 4 bytes of the handshake response's filler; proxyd's are always zero.
    hello = HandshakeResponse41(
        capability_flags=0xFFFFFFFF & ~CLIENT.SSL,
        max_packet_size=1 << 24,
        character_set=45,
        username=b"u",
        auth_response=b"x" * 20,
    )
    assert build_handshake_response(hello)[9:32] == bytes(23)
    session = CAPTURED.session("mysqlclient")
    assert session.mariadb_capabilities & 1  # MARIADB_CLIENT_PROGRESS
    assert [c.step for c in session.commands if c.has_progress_report] == ["load_data_local"]


# --- a client without CLIENT_SESSION_TRACK behind a server connection with it ---------


@pytest.mark.parametrize("command", TRACKED, ids=ids(TRACKED))
def test_session_state_is_stripped_for_a_client_without_tracking(command: Command) -> None:
    client_caps = command.capabilities & ~CLIENT.SESSION_TRACK
    reference, _ = feed_all(command)
    for name, chunks in [("whole", None), *list(chunkings(command))[:1]]:
        tracker, out = feed_all(command, chunks, client_caps)
        assert learned(tracker) == learned(reference), name
        check_rewritten(command, out, client_caps, reference)


def check_rewritten(
    command: Command, out: bytes, client_caps: int, reference: ResponseTracker
) -> None:
    """``out`` is the answer with its session-state OKs and EOFs rebuilt for ``client_caps``."""
    before = physical_packets(command.answer)
    after = physical_packets(out)
    assert len(before) == len(after)
    rewritten = 0
    for old, new in zip(before, after, strict=True):
        if old == new:
            continue
        assert old[3] == new[3]  # same sequence id
        if old[4:5] == b"\xfe" and len(old) == 9:
            # An EOF keeps all but the flag (a SELECT in a transaction whose state changed).
            eof = parse_eof(old[4:])
            assert eof.status_flags & SERVER_SESSION_STATE_CHANGED
            flags = eof.status_flags & ~SERVER_SESSION_STATE_CHANGED
            assert new[4:] == build_eof(flags, eof.warnings)
            continue
        rewritten += 1
        was = parse_ok(old[4:], command.capabilities)
        now = parse_ok(new[4:], client_caps)
        assert was.status_flags & SERVER_SESSION_STATE_CHANGED
        assert now == OkPacket(
            was.affected_rows,
            was.last_insert_id,
            was.status_flags & ~SERVER_SESSION_STATE_CHANGED,
            was.warnings,
            was.info,
            b"",
            was.header,
        )
        # Nothing after what a client without SESSION_TRACK reads.
        assert build_ok(now, client_caps) == new[4:]
    assert rewritten >= len(reference.state_changes)
    # The answer's last OK no longer claims session state.
    last = after[-1][4:]
    ends_with_ok = last[:1] == b"\x00" or (last[:1] == b"\xfe" and len(last) > 5)
    not_ok_shaped = (COMMAND.COM_STMT_PREPARE, COMMAND.COM_STATISTICS)
    if reference.err is None and ends_with_ok and command.command not in not_ok_shaped:
        assert not parse_ok(last, client_caps).status_flags & SERVER_SESSION_STATE_CHANGED


def test_rewritten_insert_ok_reads_like_the_servers_own() -> None:
    # The server's OK to PyMySQL (no SESSION_TRACK) and the one proxyd rebuilds from
    # a tracking connection's OK carry the info the same way: length-encoded.
    direct = payloads(CAPTURED.session("pymysql").one("insert").answer)[0][1]
    tracked = CAPTURED.session("raw-track").one("insert")
    no_track = tracked.capabilities & ~CLIENT.SESSION_TRACK
    ok = parse_ok(payloads(tracked.answer)[0][1], tracked.capabilities)
    assert build_ok(ok, no_track) == direct
    assert parse_ok(direct, no_track).info == b"Records: 2  Duplicates: 0  Warnings: 0"


# --- what the tracker learns from each kind of answer ----------------------------------

IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS
MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS

EXPECTED_ERRORS = {
    "error": (1146, b"42S02"),
    "error_mid_rows": (1242, b"21000"),
    "multi_statement_error": (1146, b"42S02"),
    "prepared_error": (1146, b"42S02"),
    "prepare_error": (1146, b"42S02"),
    "init_db_error": (1044, b"42000"),  # captest may not see other databases
    "field_list_error": (1146, b"42S02"),
    "execute_unknown_stmt": (1243, b"HY000"),
}
PREPARED = {  # (params, columns)
    "prepared_select": (2, 2),
    "prepare_select": (2, 2),
    "prepared_insert": (1, 0),
    "prepare_set": (1, 0),
    "prepare_cursor": (0, 1),
}


def check_semantics(command: Command, tracker: ResponseTracker) -> None:
    step = command.step
    # mysql-connector pings before each statement, within the same step.
    if step in EXPECTED_ERRORS and command.command != COMMAND.COM_PING:
        assert tracker.err is not None, command.id
        assert (tracker.err.error_code, tracker.err.sql_state) == EXPECTED_ERRORS[step]
        return
    assert tracker.err is None, (command.id, tracker.err)
    assert not tracker.status_flags & MORE_RESULTS
    if command.command == COMMAND.COM_STMT_PREPARE:
        prep = tracker.prepare_ok
        assert prep is not None
        assert (prep.num_params, prep.num_columns) == PREPARED[step]
        return
    assert tracker.prepare_ok is None
    ok = tracker.ok
    if not command.capabilities & CLIENT.SESSION_TRACK:
        assert tracker.state_changes == []
    if command.command != COMMAND.COM_QUERY:
        if step == "execute_cursor":
            # Rows come with COM_STMT_FETCH, not now.
            assert tracker.status_flags & SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
        elif step == "fetch_rest":
            assert tracker.status_flags & SERVER_STATUS.SERVER_STATUS_LAST_ROW_SENT
        return
    if step == "insert":
        assert ok is not None and (ok.affected_rows, ok.last_insert_id) == (2, 1)
        assert ok.info == b"Records: 2  Duplicates: 0  Warnings: 0"
    elif step == "load_data_local":
        assert ok is not None and ok.affected_rows == 2
        assert ok.info == b"Records: 2  Deleted: 0  Skipped: 0  Warnings: 0"
    elif step in ("begin", "insert_in_trans", "select_in_read_only"):
        assert tracker.status_flags & IN_TRANS
    elif step == "start_read_only":
        assert tracker.status_flags & IN_TRANS
        assert tracker.status_flags & SERVER_STATUS_IN_TRANS_READONLY
    elif step in ("commit", "commit_read_only", "select_1"):
        assert not tracker.status_flags & (IN_TRANS | SERVER_STATUS_IN_TRANS_READONLY)
    elif step == "call_proc":
        # Two result sets, then the OK that ends the CALL.
        assert ok is not None and ok.header == 0x00


def changes_of(command: Command) -> set[tuple[int, bytes, bytes]]:
    tracker, _ = feed_all(command)
    return {(c.type, c.name, c.value) for per_ok in tracker.state_changes for c in per_ok}


@pytest.mark.parametrize("session", TRACKING, ids=[s.name for s in TRACKING])
def test_session_state_of_each_statement(session: Session) -> None:
    changed = (SESSION_TRACK_STATE_CHANGE, b"1", b"")
    assert changes_of(session.one("set_user_var")) == {changed}
    assert changes_of(session.one("set_time_zone")) == {
        (SESSION_TRACK_SYSTEM_VARIABLES, b"time_zone", b"+01:00"),
        changed,
    }
    names = changes_of(session.one("set_names"))
    assert (SESSION_TRACK_SYSTEM_VARIABLES, b"character_set_client", b"utf8mb4") in names
    assert changes_of(session.one("use_test")) == {(SESSION_TRACK_SCHEMA, b"test", b""), changed}
    assert changes_of(session.one("begin")) >= {
        (SESSION_TRACK_TRANSACTION_STATE, b"T_______", b""),
        (SESSION_TRACK_TRANSACTION_CHARACTERISTICS, b"START TRANSACTION;", b""),
    }
    assert (
        SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
        b"START TRANSACTION READ ONLY;",
        b"",
    ) in changes_of(session.one("start_read_only"))
    assert changes_of(session.one("commit")) >= {
        (SESSION_TRACK_TRANSACTION_STATE, b"________", b""),
        (SESSION_TRACK_TRANSACTION_CHARACTERISTICS, b"", b""),
    }
    assert (SESSION_TRACK_SCHEMA, b"test", b"") in changes_of(
        session.one("init_db", COMMAND.COM_INIT_DB)
    )
    # One list per OK: of "SET @y=2; SELECT @y" only the SET's OK carries state.
    tracker, _ = feed_all(session.one("multi_statement_ok_then_rows"))
    assert [[(c.type, c.name) for c in per_ok] for per_ok in tracker.state_changes] == [
        [(SESSION_TRACK_STATE_CHANGE, b"1")]
    ]


def test_mysqlclient_gets_the_default_trackers_only() -> None:
    session = CAPTURED.session("mysqlclient")
    assert session.capabilities & CLIENT.SESSION_TRACK
    assert changes_of(session.one("set_time_zone")) == {
        (SESSION_TRACK_SYSTEM_VARIABLES, b"time_zone", b"+01:00")
    }
    assert changes_of(session.one("set_user_var")) == set()
    # Its login OK already names the schema.
    ok = parse_ok(session.login_result, session.capabilities)
    assert ok.status_flags & SERVER_SESSION_STATE_CHANGED
    assert [(c.type, c.name) for c in parse_session_state(ok.session_state)] == [
        (SESSION_TRACK_SCHEMA, b"test")
    ]


# --- LOCAL INFILE ------------------------------------------------------------------------


@pytest.mark.parametrize("command", INFILE, ids=ids(INFILE))
def test_local_infile_pauses_until_the_file_is_sent(command: Command) -> None:
    request, answer = command.parts
    assert payloads(request.server)[0][1][:1] == b"\xfb"
    tracker = ResponseTracker(command.command, command.capabilities)
    # The client's file contents are not the server's; anything after the request is not ours.
    extra = b"\x0c\x00\x00\x02file-content"
    assert tracker.feed(request.server + extra) == extra
    assert tracker.awaiting_infile and not tracker.done
    assert not tracker.in_result_rows
    assert joined(tracker.take_output()) == request.server
    assert tracker.feed(b"more") == b"more"
    tracker.infile_sent()
    assert not tracker.awaiting_infile
    with pytest.raises(ProtocolError):
        tracker.infile_sent()
    assert tracker.feed(answer.server) == b""
    assert tracker.done and tracker.ok is not None and tracker.ok.affected_rows == 2


def test_infile_sent_without_a_request_is_an_error() -> None:
    tracker = ResponseTracker(COMMAND.COM_QUERY, CLIENT.PROTOCOL_41)
    with pytest.raises(ProtocolError):
        tracker.infile_sent()


# --- synthetic edges: 16 MiB packets, which the captures do not have --------------------

PROTO = CLIENT.PROTOCOL_41 | CLIENT.SESSION_TRACK
DEOF = PROTO | CLIENT.DEPRECATE_EOF
CAPS = pytest.mark.parametrize("caps", [PROTO, DEOF], ids=["eof", "deprecate_eof"])


def result_set(rows: list[bytes], caps: int, status: int = 2) -> tuple[bytes, list[int]]:
    """One text column and the given row payloads, framed from sequence id 1.

    Also returns where each row starts in the stream.
    """
    column = lenenc_str(b"def") + b"\x00\x00\x00\x01c\x01c\x0c" + bytes(12)
    packets = [b"\x01", column]
    if not caps & CLIENT.DEPRECATE_EOF:
        packets.append(build_eof(status))
    out = bytearray()
    seq = 1
    for payload in packets:
        out += encode_packet(payload, seq)
        seq += 1
    starts = []
    for row in rows:
        starts.append(len(out))
        framed = encode_packet(row, seq)
        seq += len(physical_packets(framed))
        out += framed
    if caps & CLIENT.DEPRECATE_EOF:
        out += encode_packet(build_ok(OkPacket(status_flags=status, header=0xFE), caps), seq)
    else:
        out += encode_packet(build_eof(status), seq)
    return bytes(out), starts


def check_stream(command: int, caps: int, data: bytes, cuts: list[int]) -> None:
    view = memoryview(data)
    for at in [0, *cuts]:
        tracker = ResponseTracker(command, caps)
        out: list[bytes | memoryview] = []
        for chunk in (view[:at], view[at:]) if at else (view,):
            assert not tracker.done
            # A memoryview, as a slice of a long read would be: no copy of 32 MiB per cut.
            assert tracker.feed(chunk) == b"", at  # type: ignore[arg-type]
            out += tracker.take_output()
        assert tracker.done, at
        assert joined(out) == data, at


def near(*positions: int) -> list[int]:
    """Cut points around packet starts: inside the header, after it, after its first byte."""
    return sorted({p + d for p in positions for d in (-1, 0, 2, 4, 5)})


def text_value(length: int, fill: bytes = b"r") -> bytes:
    return lenenc_int(length) + fill * length


@CAPS
def test_row_of_exactly_16_mib_ends_with_an_empty_packet(caps: int) -> None:
    row = text_value(MAX_PACKET_PAYLOAD - 4)
    assert len(row) == MAX_PACKET_PAYLOAD
    data, (start,) = result_set([row], caps)
    empty = start + 4 + MAX_PACKET_PAYLOAD
    assert data[empty : empty + 3] == b"\x00\x00\x00"
    check_stream(COMMAND.COM_QUERY, caps, data, near(start, empty))


@CAPS
def test_rows_longer_than_16_mib_start_with_0xfe(caps: int) -> None:
    # A value of 2^24 bytes or more has an 8-byte length: its row starts with 0xFE, the
    # EOF/OK header, in a packet of 16 MiB, never a terminator.
    one = text_value(1 << 24)
    two = text_value(2 * MAX_PACKET_PAYLOAD)
    assert one[0] == two[0] == 0xFE
    data, (first, second, _) = result_set([one, two, b"\x01a"], caps)
    cont = MAX_PACKET_PAYLOAD + 4
    check_stream(
        COMMAND.COM_QUERY,
        caps,
        data,
        near(first, first + cont, second, second + cont, second + 2 * cont, len(data) - 9),
    )


@CAPS
def test_continuation_that_looks_like_a_terminator(caps: int) -> None:
    # A long row whose second physical packet is byte for byte an EOF, then an ERR.
    for tail in (b"\xfe\x00\x00\x02\x00", b"\xff\x15\x04#28000denied"):
        row = text_value(MAX_PACKET_PAYLOAD - 5) + lenenc_str(tail)[:1] + tail
        assert row[MAX_PACKET_PAYLOAD:] == tail
        data, (start, _) = result_set([row, b"\x01b"], caps)
        check_stream(COMMAND.COM_QUERY, caps, data, near(start + 4 + MAX_PACKET_PAYLOAD))


def test_column_definition_of_16_mib() -> None:
    column = lenenc_str(b"def") + b"c" * (MAX_PACKET_PAYLOAD - 4) + b"\xfe\x00\x00\x02\x00"
    data = (
        encode_packet(b"\x02", 1)
        + encode_packet(column, 2)
        + encode_packet(lenenc_str(b"def") + bytes(20), 4)
        + encode_packet(build_eof(2), 5)
        + encode_packet(b"\x01a\x01b", 6)
        + encode_packet(build_eof(2), 7)
    )
    check_stream(COMMAND.COM_QUERY, PROTO, data, near(5, 5 + 4 + MAX_PACKET_PAYLOAD))


def test_statement_with_a_column_definition_of_16_mib() -> None:
    # The last packet of a PREPARE answer (DEPRECATE_EOF: a column definition) is
    # skipped by count; the answer ends only after its continuation.
    prepare_ok = b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    column = lenenc_str(b"def") + b"c" * (MAX_PACKET_PAYLOAD - 4) + b"tail"
    data = encode_packet(prepare_ok, 1) + encode_packet(column, 2)
    check_stream(COMMAND.COM_STMT_PREPARE, DEOF, data, near(16, 20 + MAX_PACKET_PAYLOAD))
    tracker = ResponseTracker(COMMAND.COM_STMT_PREPARE, DEOF)
    assert tracker.feed(data[: 20 + MAX_PACKET_PAYLOAD]) == b""
    assert not tracker.done  # the continuation is still to come


def test_result_set_with_65536_columns() -> None:
    count = 0x10000
    data = encode_packet(lenenc_int(count), 1) + encode_packet(b"\x03def", 2) * count
    data += encode_packet(build_eof(2), 3) + encode_packet(build_eof(2), 4)
    assert data[4] == 0xFD
    check_stream(COMMAND.COM_QUERY, PROTO, data, [5, 6, 8])


def test_prepare_answer_without_params_or_columns() -> None:
    data = encode_packet(b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 1)
    tracker = ResponseTracker(COMMAND.COM_STMT_PREPARE, PROTO)
    assert tracker.feed(data + b"more") == b"more"
    assert tracker.done
    assert tracker.prepare_ok is not None and tracker.prepare_ok.statement_id == 1


@pytest.mark.parametrize(
    "command",
    [COMMAND.COM_PING, COMMAND.COM_INIT_DB, COM_RESET_CONNECTION, COMMAND.COM_STMT_RESET],
)
def test_simple_commands_reject_a_result_set(command: int) -> None:
    tracker = ResponseTracker(command, PROTO)
    with pytest.raises(ProtocolError):
        tracker.feed(encode_packet(b"\x01", 1))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xfe\x00\x00", b"\x00", b"\xfc\x00"],
    ids=["empty", "short-eof", "short-ok", "short-count"],
)
def test_bad_first_packets(payload: bytes) -> None:
    tracker = ResponseTracker(COMMAND.COM_QUERY, PROTO)
    with pytest.raises(ProtocolError):
        tracker.feed(encode_packet(payload, 1))
