"""ResponseTracker: knows exactly where the server's answer to one command ends.

Theory of operation
-------------------
A proxy that forwards a command must know when the answer is complete, so
that the backend can go back to the pool and the next command can be sent.
The tracker is fed the backend's bytes as they arrive, in chunks of any size,
and walks them packet header by packet header. Rows are never decoded: for a
row only the first payload byte is looked at (0xFE or 0xFF there, in a packet
shorter than 16 MiB, is a terminator or an error, never a row), and the rest
is skipped by count. Only the few packets that steer the state machine (the
first packet of a response, OK/EOF/ERR terminators, a COM_STMT_PREPARE OK)
are parsed, and those are small.

What goes to the client is collected in ``out`` as whole slices of the input
chunks, so the common case costs one list append per chunk. Two exceptions:
a steering packet split across chunks is held back until it is complete, and
an OK packet carrying session-tracking data (or an EOF flagging it) is rewritten
for a client that did not negotiate CLIENT_SESSION_TRACK (proxyd always
negotiates it with servers, to learn about session state).

Status flags steer the walk in two places only: SERVER_MORE_RESULTS_EXISTS on
a terminator says another result follows, and SERVER_STATUS_CURSOR_EXISTS on
the EOF after a COM_STMT_EXECUTE's column definitions says a cursor was opened
and no rows follow. The latter is believed only where a cursor can be: MariaDB
leaves a stored procedure's own cursor flags in the status of the packets
after it, on result sets whose rows do follow (see _opens_cursor).

Answers by command (page_protocol_command_phase.html):
- COM_QUERY, COM_STMT_EXECUTE, COM_PROCESS_INFO: OK | ERR | LOCAL INFILE request |
  result set, repeated while SERVER_MORE_RESULTS_EXISTS is set;
- COM_STMT_PREPARE: ERR | PREPARE_OK + param defs [+EOF] + column defs [+EOF];
- COM_STMT_FETCH, COM_FIELD_LIST: rows or column defs up to EOF/OK, or ERR;
- COM_STATISTICS: one string packet;
- COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT: nothing;
- everything else: one OK, EOF or ERR.
"""

from __future__ import annotations

import zlib

from proxyd.protocol.constants import (
    CLIENT,
    COMMAND,
    MAX_PACKET_PAYLOAD,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    ErrPacket,
    OkPacket,
    StateChange,
    StmtPrepareOk,
    build_eof,
    build_ok,
    parse_err,
    parse_ok,
    parse_session_state,
    parse_stmt_prepare_ok,
)
from proxyd.protocol.packets import Reader, packet_header

# Tracker states.
FIRST = 0  # first packet of a (possibly further) result
COLUMNS = 1  # column definitions, skipped by count
COLUMNS_EOF = 2  # the EOF after column definitions (no CLIENT_DEPRECATE_EOF)
ROWS = 3  # rows up to a terminator
SIMPLE = 4  # exactly one OK / EOF / ERR
ONE = 5  # exactly one packet of any kind
PREPARE = 6  # first packet of a COM_STMT_PREPARE answer
SKIP = 7  # a known number of packets to pass through
INFILE = 8  # paused: the client is sending a LOCAL INFILE's contents
DONE = 9

_INITIAL_STATE = {
    COMMAND.COM_QUERY: FIRST,
    COMMAND.COM_STMT_EXECUTE: FIRST,
    COMMAND.COM_PROCESS_INFO: FIRST,
    COMMAND.COM_STMT_FETCH: ROWS,
    COMMAND.COM_FIELD_LIST: ROWS,
    COMMAND.COM_STMT_PREPARE: PREPARE,
    COMMAND.COM_STATISTICS: ONE,
    COMMAND.COM_STMT_CLOSE: DONE,
    COMMAND.COM_STMT_SEND_LONG_DATA: DONE,
    COMMAND.COM_QUIT: DONE,
}


# How much of a packet that cannot be placed is kept to be logged.
UNPLACED_SHOWN = 256


def expects_response(command: int) -> bool:
    return _INITIAL_STATE.get(command, SIMPLE) != DONE


class ResponseTracker:
    __slots__ = (
        "_client_caps",
        "_columns",
        "_continued",
        "_deprecate_eof",
        "_need",
        "_pend",
        "_skip",
        "_strip_tracking",
        "capabilities",
        "command",
        "digest",
        "err",
        "last_seq",
        "ok",
        "out",
        "prepare_ok",
        "result_sets",
        "rows",
        "state",
        "state_changes",
        "statement_id",
        "status_flags",
        "unplaced",
        "warnings",
    )

    def __init__(self, command: int, capabilities: int, client_capabilities: int | None = None):
        self.command = command
        self.capabilities = capabilities
        self._client_caps = capabilities if client_capabilities is None else client_capabilities
        self._deprecate_eof = bool(capabilities & CLIENT.DEPRECATE_EOF)
        self._strip_tracking = bool(
            capabilities & CLIENT.SESSION_TRACK and not self._client_caps & CLIENT.SESSION_TRACK
        )
        self.state = _INITIAL_STATE.get(command, SIMPLE)
        self.status_flags = 0
        self.warnings = 0  # of the last terminator (OK or EOF)
        self.result_sets = 0
        self.rows = 0  # in the last result set (FOUND_ROWS() of a plain SELECT)
        self.ok: OkPacket | None = None
        self.err: ErrPacket | None = None
        self.prepare_ok: StmtPrepareOk | None = None
        # For COM_STMT_PREPARE: the statement id to show the client instead of the server's.
        self.statement_id: int | None = None
        self.state_changes: list[list[StateChange]] = []  # one list per OK packet
        self.last_seq = -1
        self.out: list[bytes | memoryview] = []
        self._pend = bytearray()
        self._need = 4
        self._skip = 0
        self._columns = 0
        self._continued = False
        # The packet (its start) that made feed() raise ProtocolError, for the log.
        self.unplaced: bytes | None = None
        # CRC-32 of every byte relayed to the client for this command, when the session
        # records it (a transaction, for a replay: proxyd/session/record.py); else None.
        self.digest: int | None = None

    @property
    def done(self) -> bool:
        # The last packet of a COM_STMT_PREPARE answer is skipped by count like the
        # others: the answer is over only once its body (and any continuation) is in.
        return self.state == DONE and not self._skip and not self._continued

    @property
    def awaiting_infile(self) -> bool:
        return self.state == INFILE

    @property
    def in_result_rows(self) -> bool:
        """True once part of a result set may have reached the client."""
        return self.state in (COLUMNS, COLUMNS_EOF, ROWS)

    @property
    def unfinished_packet(self) -> int:
        """Bytes still owed of a packet whose start already went to the client."""
        return self._skip

    def infile_sent(self) -> None:
        """The client's LOCAL INFILE data (ending in an empty packet) went to the server."""
        if self.state != INFILE:
            raise ProtocolError("no LOCAL INFILE request is pending")
        self.state = FIRST

    def take_output(self) -> list[bytes | memoryview]:
        """The bytes for the client since the last call (hashed into ``digest`` when the
        session records this answer)."""
        out = self.out
        self.out = []
        if self.digest is not None:
            digest = self.digest
            for chunk in out:
                digest = zlib.crc32(chunk, digest)
            self.digest = digest
        return out

    def feed(self, data: bytes) -> bytes:
        """Consume backend bytes; return what lies beyond the end of this response.

        Raises ProtocolError at a packet that has no place in the answer. Then
        ``out`` ends with the last whole packet before it, ``last_seq`` is that
        packet's sequence id and ``unplaced`` holds the offender's first bytes.
        """
        mv = memoryview(data)
        n = len(mv)
        pos = 0
        emit_from = 0
        out = self.out
        while pos < n and (self.state < INFILE or self._skip or self._continued):
            if self.state == ROWS and not self._skip and not self._continued and not self._pend:
                # Rows are most of the bytes of a big answer: step over them by their
                # headers in one tight loop; the terminator and anything unusual (a row
                # continued past 16 MiB, a header cut by the chunk's end) take the general
                # path below.
                rows = 0
                while pos + 5 <= n:
                    length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                    if length >= MAX_PACKET_PAYLOAD or (length and data[pos + 4] >= 0xFE):
                        break
                    rows += 1
                    self.last_seq = data[pos + 3]
                    pos += 4 + length
                    if pos > n:
                        self._skip = pos - n  # the rest of this row comes in later chunks
                        pos = n
                self.rows += rows
                if pos >= n:
                    break
            if self._skip:
                take = min(self._skip, n - pos)
                self._skip -= take
                pos += take
                continue
            pend = self._pend
            if pend:
                take = min(self._need - len(pend), n - pos)
                pend += mv[pos : pos + take]
                pos += take
                # These bytes leave with the held packet, not as a slice of this chunk.
                emit_from = pos
                if len(pend) < self._need:
                    break
                view: bytes | bytearray | memoryview = pend
            else:
                view = mv[pos:]
            need = self._bytes_needed(view)
            if len(view) < need:
                if not pend:
                    # Hold the start of this packet until it is complete.
                    if pos > emit_from:
                        out.append(mv[emit_from:pos])
                    pend += mv[pos:]
                    pos = emit_from = n
                self._need = need
                continue
            length = view[0] | (view[1] << 8) | (view[2] << 16)
            last_seq = self.last_seq
            try:
                replacement = self._packet(length, view[3], view[4:need])
            except ProtocolError:
                # What came before this packet is a sound prefix of the answer: it goes
                # to the client, and proxyd's ERR can follow it in sequence.
                if not pend and pos > emit_from:
                    out.append(mv[emit_from:pos])
                self.last_seq = last_seq
                self.unplaced = bytes(view[: min(need, UNPLACED_SHOWN)])
                raise
            self._skip = length - (need - 4)
            if pend:
                out.append(replacement if replacement is not None else bytes(pend))
                pend.clear()
                emit_from = pos
                self._need = 4
            else:
                if replacement is not None:
                    if pos > emit_from:
                        out.append(mv[emit_from:pos])
                    out.append(replacement)
                    emit_from = pos + need
                pos += need
        end = pos
        if end > emit_from:
            # Most answers arrive whole in one chunk: pass that chunk on as it came.
            out.append(data if emit_from == 0 and end == n else mv[emit_from:end])
        return bytes(mv[end:]) if end < n else b""

    def _bytes_needed(self, view: bytes | bytearray | memoryview) -> int:
        """How many bytes from the packet's start must be seen to classify it."""
        if len(view) < 4:
            return 4
        length = view[0] | (view[1] << 8) | (view[2] << 16)
        state = self.state
        if self._continued or state in (COLUMNS, SKIP):
            return 4
        if state == ROWS:
            if length == 0:
                return 4
            if len(view) < 5:
                return 5
            if view[4] in (0xFE, 0xFF) and length < MAX_PACKET_PAYLOAD:
                return 4 + length
            return 5
        return 4 + length

    def _packet(self, length: int, seq: int, body: bytes | bytearray | memoryview) -> bytes | None:
        """Advance the state machine by one packet; maybe return a replacement packet."""
        self.last_seq = seq
        if self._continued:
            self._continued = length == MAX_PACKET_PAYLOAD
            return None
        self._continued = length == MAX_PACKET_PAYLOAD
        state = self.state
        if state == ROWS:
            first = body[0] if length else 0
            if first == 0xFF and length < MAX_PACKET_PAYLOAD:
                self._error(body)
            elif first == 0xFE and length < MAX_PACKET_PAYLOAD:
                return self._terminator(bytes(body), seq)
            else:
                self.rows += 1
            return None
        if state == COLUMNS:
            self._columns -= 1
            if self._columns == 0:
                self.state = ROWS if self._deprecate_eof else COLUMNS_EOF
            return None
        if state == SKIP:
            self._columns -= 1
            if self._columns == 0:
                self.state = DONE
            return None
        payload = bytes(body)
        if not payload:
            raise ProtocolError("empty packet where a response was expected")
        first = payload[0]
        if state == FIRST:
            if first == 0x00:
                return self._terminator(payload, seq)
            if first == 0xFF:
                self._error(payload)
            elif first == 0xFB:
                self.state = INFILE
            else:
                count = first if first < 0xFB else Reader(payload).lenenc_int()
                if count == 0:
                    raise ProtocolError("result set with zero columns")
                self._columns = count
                self.state = COLUMNS
                self.rows = 0
                self.result_sets += 1
        elif state == COLUMNS_EOF:
            if first != 0xFE:
                raise ProtocolError("expected EOF after column definitions")
            warnings, status = _eof_fields(payload)
            self.status_flags = status
            self.state = DONE if self._opens_cursor(status) else ROWS
            return self._eof_for_client(warnings, status, seq)
        elif state == SIMPLE:
            if first == 0xFF:
                self._error(payload)
            elif first in (0x00, 0xFE):
                return self._terminator(payload, seq)
            else:
                raise ProtocolError(f"unexpected packet 0x{first:02x} where OK/ERR was expected")
        elif state == ONE:
            self.state = DONE
        elif state == PREPARE:
            if first == 0xFF:
                self._error(payload)
            else:
                prep = parse_stmt_prepare_ok(payload)
                self.prepare_ok = prep
                eof = 0 if self._deprecate_eof else 1
                remaining = (prep.num_params + eof if prep.num_params else 0) + (
                    prep.num_columns + eof if prep.num_columns else 0
                )
                self._columns = remaining
                self.state = SKIP if remaining else DONE
                if self.statement_id is not None:
                    # The client sees proxyd's statement id, not this server's.
                    body = payload[:1] + self.statement_id.to_bytes(4, "little") + payload[5:]
                    return packet_header(len(body), seq) + body
        return None

    def _opens_cursor(self, status: int) -> bool:
        """Whether the EOF after column definitions ends the answer: a cursor was opened.

        Only COM_STMT_EXECUTE opens cursors, and only for a single plain SELECT, so
        never in a multi-result answer. SERVER_STATUS_CURSOR_EXISTS alone proves
        nothing: MariaDB leaves it (and SERVER_STATUS_LAST_ROW_SENT) set in the
        session's status once a stored program has used a cursor of its own, and
        every later packet of the CALL carries it, text protocol included. Rows
        follow those column definitions like any others (issue 9: CALL of a
        procedure whose NOT FOUND handler selects and RESIGNALs, status 0xEA).
        A CALL's result sets always carry SERVER_MORE_RESULTS_EXISTS (its last
        answer is the CALL's own OK or ERR), which tells the two apart.
        """
        return (
            self.command == COMMAND.COM_STMT_EXECUTE
            and bool(status & SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS)
            and not status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
        )

    def _eof_for_client(self, warnings: int, status: int, seq: int) -> bytes | None:
        """The EOF without SERVER_SESSION_STATE_CHANGED, for a client that tracks nothing.

        The server flags a change of session state in the status of every packet
        that has one, EOFs included (SET STATEMENT ... FOR CALL), but only on a
        connection with CLIENT_SESSION_TRACK: the client would never see it.
        """
        if not (self._strip_tracking and status & SERVER_SESSION_STATE_CHANGED):
            return None
        body = build_eof(status & ~SERVER_SESSION_STATE_CHANGED, warnings)
        return packet_header(len(body), seq) + body

    def _error(self, payload: bytes | bytearray | memoryview) -> None:
        self.err = parse_err(bytes(payload), self.capabilities)
        self.state = DONE

    def _terminator(self, payload: bytes, seq: int) -> bytes | None:
        """An OK, or an EOF ending rows; decide whether another result follows."""
        replacement = None
        if len(payload) == 5 and payload[0] == 0xFE:
            warnings, status = _eof_fields(payload)
            self.warnings = warnings
            replacement = self._eof_for_client(warnings, status, seq)
        else:
            ok = parse_ok(payload, self.capabilities)
            self.ok = ok
            status = ok.status_flags
            self.warnings = ok.warnings
            if ok.session_state:
                self.state_changes.append(parse_session_state(ok.session_state))
            if self._strip_tracking and status & SERVER_SESSION_STATE_CHANGED:
                body = build_ok(ok, self._client_caps)
                replacement = packet_header(len(body), seq) + body
        self.status_flags = status
        if status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS:
            self.state = FIRST
        else:
            self.state = DONE
        return replacement


def _eof_fields(payload: bytes) -> tuple[int, int]:
    """An EOF's warnings and status flags (one per answer on the hot path: no object)."""
    if len(payload) < 5:
        return 0, 0
    return payload[1] | payload[2] << 8, payload[3] | payload[4] << 8
