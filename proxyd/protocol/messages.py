"""The protocol's messages as small frozen values, with pure parse/build functions.

Parsers take one logical payload (framing already removed) plus the
negotiated capability flags where the layout depends on them, and raise
ProtocolError on anything malformed. Builders return payload bytes; framing
with a sequence id is the caller's job (packets.encode_packet).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from proxyd.protocol.constants import (
    CLIENT,
    CLIENT_MYSQL,
    SERVER_SESSION_STATE_CHANGED,
    SESSION_TRACK_GTIDS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.packets import Reader, lenenc_int, lenenc_str

_HANDSHAKE_V10 = 10


# --- connection phase ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    """Initial handshake a server sends (page_protocol_connection_phase_packets)."""

    server_version: bytes
    connection_id: int
    auth_plugin_data: bytes  # the scramble, normally 20 bytes
    capability_flags: int
    character_set: int
    status_flags: int
    auth_plugin_name: bytes = b"mysql_native_password"
    # MariaDB puts its extended capabilities in the reserved bytes.
    mariadb_capabilities: int = 0


def parse_handshake_v10(payload: bytes) -> HandshakeV10:
    r = Reader(payload)
    version = r.u8()
    if version != _HANDSHAKE_V10:
        if version == 0xFF:
            err = parse_err(payload, CLIENT.PROTOCOL_41)
            raise ProtocolError(f"server refused connection: {err.error_code} {err.message!r}")
        raise ProtocolError(f"unsupported handshake protocol version {version}")
    server_version = r.nul_str()
    connection_id = r.u32()
    data1 = r.take(8)
    r.u8()  # filler
    caps = r.u16()
    charset = status = 0
    data_len = 0
    mariadb_caps = 0
    data2 = b""
    plugin = b"mysql_native_password"
    if r.remaining():
        charset = r.u8()
        status = r.u16()
        caps |= r.u16() << 16
        data_len = r.u8()
        r.take(6)
        mariadb_caps = r.u32()
        if caps & CLIENT.SECURE_CONNECTION:
            n = max(13, data_len - 8)
            data2 = r.take(min(n, r.remaining()))
            if data2.endswith(b"\x00"):
                data2 = data2[:-1]
        if caps & CLIENT.PLUGIN_AUTH:
            plugin = r.nul_str_or_rest()
    return HandshakeV10(
        server_version=server_version,
        connection_id=connection_id,
        auth_plugin_data=data1 + data2,
        capability_flags=caps,
        character_set=charset,
        status_flags=status,
        auth_plugin_name=plugin,
        mariadb_capabilities=mariadb_caps,
    )


def build_handshake_v10(h: HandshakeV10) -> bytes:
    data = h.auth_plugin_data
    caps = h.capability_flags
    return b"".join(
        (
            bytes((_HANDSHAKE_V10,)),
            h.server_version,
            b"\x00",
            struct.pack("<I", h.connection_id),
            data[:8],
            b"\x00",
            struct.pack("<HBHH", caps & 0xFFFF, h.character_set, h.status_flags, caps >> 16),
            bytes((len(data) + 1 if caps & CLIENT.PLUGIN_AUTH else 0,)),
            b"\x00" * 6,
            struct.pack("<I", h.mariadb_capabilities),
            data[8:] + b"\x00" if caps & CLIENT.SECURE_CONNECTION else b"",
            h.auth_plugin_name + b"\x00" if caps & CLIENT.PLUGIN_AUTH else b"",
        )
    )


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    capability_flags: int
    max_packet_size: int
    character_set: int
    username: bytes
    auth_response: bytes
    database: bytes | None = None
    auth_plugin_name: bytes | None = None
    connect_attrs: dict[bytes, bytes] = field(default_factory=dict)
    # MariaDB's extended capabilities, sent by a client that leaves CLIENT_MYSQL out.
    mariadb_capabilities: int = 0


SSL_REQUEST_LENGTH = 32


def is_ssl_request(payload: bytes) -> bool:
    """A client that wants TLS first sends just the fixed 32-byte part with CLIENT_SSL."""
    if len(payload) != SSL_REQUEST_LENGTH:
        return False
    return bool(int.from_bytes(payload[:4], "little") & CLIENT.SSL)


def parse_handshake_response(payload: bytes) -> HandshakeResponse41:
    r = Reader(payload)
    caps = r.u32()
    if not caps & CLIENT.PROTOCOL_41:
        raise ProtocolError("client does not speak protocol 4.1")
    max_packet = r.u32()
    charset = r.u8()
    reserved = r.take(23)
    mariadb_caps = 0 if caps & CLIENT_MYSQL else int.from_bytes(reserved[19:], "little")
    username = r.nul_str()
    if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = r.lenenc_str()
    elif caps & CLIENT.SECURE_CONNECTION:
        auth = r.take(r.u8())
    else:
        auth = r.nul_str()
    database = None
    plugin = None
    attrs: dict[bytes, bytes] = {}
    if caps & CLIENT.CONNECT_WITH_DB and r.remaining():
        database = r.nul_str_or_rest()
    if caps & CLIENT.PLUGIN_AUTH and r.remaining():
        plugin = r.nul_str_or_rest()
    if caps & CLIENT.CONNECT_ATTRS and r.remaining():
        block = Reader(r.lenenc_str())
        while block.remaining():
            key = block.lenenc_str()
            attrs[key] = block.lenenc_str()
    return HandshakeResponse41(
        capability_flags=caps,
        max_packet_size=max_packet,
        character_set=charset,
        username=username,
        auth_response=auth,
        database=database or None,
        auth_plugin_name=plugin,
        connect_attrs=attrs,
        mariadb_capabilities=mariadb_caps,
    )


def build_handshake_response(h: HandshakeResponse41) -> bytes:
    caps = h.capability_flags
    parts = [
        struct.pack("<IIB", caps, h.max_packet_size, h.character_set),
        b"\x00" * 19,
        struct.pack("<I", 0 if caps & CLIENT_MYSQL else h.mariadb_capabilities),
        h.username + b"\x00",
    ]
    if caps & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        parts.append(lenenc_str(h.auth_response))
    else:
        parts.append(bytes((len(h.auth_response),)) + h.auth_response)
    if caps & CLIENT.CONNECT_WITH_DB:
        parts.append((h.database or b"") + b"\x00")
    if caps & CLIENT.PLUGIN_AUTH:
        parts.append((h.auth_plugin_name or b"") + b"\x00")
    if caps & CLIENT.CONNECT_ATTRS:
        block = b"".join(lenenc_str(k) + lenenc_str(v) for k, v in h.connect_attrs.items())
        parts.append(lenenc_str(block))
    return b"".join(parts)


def _headed(payload: bytes, header: int, otherwise: str) -> Reader:
    """A Reader past the header byte that says which packet this is; ProtocolError if
    the packet is another."""
    r = Reader(payload)
    if r.u8() != header:
        raise ProtocolError(otherwise)
    return r


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    plugin_name: bytes
    plugin_data: bytes


def parse_auth_switch_request(payload: bytes) -> AuthSwitchRequest:
    r = _headed(payload, 0xFE, "not an AuthSwitchRequest")
    plugin = r.nul_str_or_rest()
    data: bytes = r.rest()
    if data.endswith(b"\x00"):
        data = data[:-1]
    return AuthSwitchRequest(plugin, data)


def build_auth_switch_request(plugin_name: bytes, plugin_data: bytes) -> bytes:
    return b"\xfe" + plugin_name + b"\x00" + plugin_data + b"\x00"


def build_auth_more_data(data: bytes) -> bytes:
    return b"\x01" + data


def parse_auth_more_data(payload: bytes) -> bytes:
    if not payload or payload[0] != 0x01:
        raise ProtocolError("not an AuthMoreData packet")
    return payload[1:]


# --- generic responses ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OkPacket:
    affected_rows: int = 0
    last_insert_id: int = 0
    status_flags: int = 0
    warnings: int = 0
    info: bytes = b""
    session_state: bytes = b""  # raw session-state-change block, if any
    header: int = 0x00  # 0xFE when it ends a result set under CLIENT_DEPRECATE_EOF


@dataclass(frozen=True, slots=True)
class ErrPacket:
    error_code: int
    sql_state: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class EofPacket:
    warnings: int
    status_flags: int


def is_ok(payload: bytes | memoryview) -> bool:
    return len(payload) >= 7 and payload[0] == 0x00


def is_err(payload: bytes | memoryview) -> bool:
    return len(payload) >= 3 and payload[0] == 0xFF


def is_eof(payload: bytes | memoryview) -> bool:
    return len(payload) < 9 and len(payload) > 0 and payload[0] == 0xFE


def parse_ok(payload: bytes, capabilities: int) -> OkPacket:
    r = Reader(payload)
    header = r.u8()
    if header not in (0x00, 0xFE):
        raise ProtocolError(f"not an OK packet (header 0x{header:02x})")
    affected = r.lenenc_int()
    insert_id = r.lenenc_int()
    status = warnings = 0
    if capabilities & CLIENT.PROTOCOL_41:
        status = r.u16()
        warnings = r.u16()
    info = b""
    state = b""
    if capabilities & CLIENT.SESSION_TRACK:
        if r.remaining():
            info = r.lenenc_str()
        if status & SERVER_SESSION_STATE_CHANGED and r.remaining():
            state = r.lenenc_str()
    elif r.remaining():
        info = _info_without_session_track(r.rest())
    return OkPacket(affected, insert_id, status, warnings, info, state, header)


def _info_without_session_track(data: bytes) -> bytes:
    # The docs say string<EOF> here, but MySQL and MariaDB send a length-encoded
    # string with or without CLIENT_SESSION_TRACK (net_send_ok stores it with
    # net_store_data; https://mariadb.com/kb/en/ok_packet/), and clients read it so.
    r = Reader(data)
    try:
        info = r.lenenc_str()
    except ProtocolError:
        return data
    return data if r.remaining() else info


def build_ok(ok: OkPacket, capabilities: int) -> bytes:
    status = ok.status_flags
    if not capabilities & CLIENT.SESSION_TRACK:
        status &= ~SERVER_SESSION_STATE_CHANGED
    parts = [
        bytes((ok.header,)),
        lenenc_int(ok.affected_rows),
        lenenc_int(ok.last_insert_id),
        struct.pack("<HH", status, ok.warnings),
    ]
    if capabilities & CLIENT.SESSION_TRACK:
        if ok.info or status & SERVER_SESSION_STATE_CHANGED:
            parts.append(lenenc_str(ok.info))
        if status & SERVER_SESSION_STATE_CHANGED:
            parts.append(lenenc_str(ok.session_state))
    elif ok.info:
        parts.append(lenenc_str(ok.info))
    return b"".join(parts)


def parse_err(payload: bytes, capabilities: int = CLIENT.PROTOCOL_41) -> ErrPacket:
    r = _headed(payload, 0xFF, "not an ERR packet")
    code = r.u16()
    state = b"HY000"
    if capabilities & CLIENT.PROTOCOL_41 and r.remaining() and r.data[r.pos] == ord("#"):
        r.u8()
        state = r.take(5)
    return ErrPacket(code, state, r.rest())


def build_err(code: int, message: str | bytes, sql_state: bytes = b"HY000") -> bytes:
    msg = message.encode("utf-8", "replace") if isinstance(message, str) else message
    return b"\xff" + struct.pack("<H", code) + b"#" + sql_state[:5].ljust(5, b"0") + msg


def parse_eof(payload: bytes) -> EofPacket:
    r = _headed(payload, 0xFE, "not an EOF packet")
    if r.remaining() >= 4:
        return EofPacket(r.u16(), r.u16())
    return EofPacket(0, 0)


def build_eof(status_flags: int, warnings: int = 0) -> bytes:
    return b"\xfe" + struct.pack("<HH", warnings, status_flags)


def status_of_terminator(payload: bytes, capabilities: int) -> int:
    """Server status flags of an OK or EOF packet."""
    if is_eof(payload) and not capabilities & CLIENT.DEPRECATE_EOF:
        return parse_eof(payload).status_flags
    return parse_ok(payload, capabilities).status_flags


# --- session state tracking (page_protocol_basic_ok_packet: session state info) ---


@dataclass(frozen=True, slots=True)
class StateChange:
    type: int
    name: bytes = b""  # variable name (type 0) or the whole value for other types
    value: bytes = b""


# Entries whose data is not one length-encoded string: a state change is a bare "1"
# (MariaDB: Session_state_change_tracker::store), GTIDs an encoding-spec byte and then
# a length-encoded string.
_RAW_STATE_ENTRIES = (SESSION_TRACK_STATE_CHANGE, SESSION_TRACK_GTIDS)


def parse_session_state(block: bytes) -> list[StateChange]:
    """Decode the session-state-change block of an OK packet."""
    out: list[StateChange] = []
    r = Reader(block)
    while r.remaining():
        kind = r.u8()
        entry = Reader(r.lenenc_str())
        if kind == SESSION_TRACK_SYSTEM_VARIABLES:
            name = entry.lenenc_str()
            value = entry.lenenc_str() if entry.remaining() else b""
            out.append(StateChange(kind, name, value))
        elif kind == SESSION_TRACK_SCHEMA:
            out.append(StateChange(kind, entry.lenenc_str()))
        elif kind in _RAW_STATE_ENTRIES:
            out.append(StateChange(kind, entry.rest()))
        else:
            # Types 4 and 5 carry one length-encoded string; unknown types are kept raw.
            data = entry.rest()
            try:
                value = Reader(data).lenenc_str() if data else b""
            except ProtocolError:
                value = data
            out.append(StateChange(kind, value))
    return out


def build_session_state(changes: list[StateChange]) -> bytes:
    parts = []
    for c in changes:
        if c.type == SESSION_TRACK_SYSTEM_VARIABLES:
            body = lenenc_str(c.name) + lenenc_str(c.value)
        elif c.type in _RAW_STATE_ENTRIES:
            body = c.name
        else:
            body = lenenc_str(c.name)
        parts.append(bytes((c.type,)) + lenenc_str(body))
    return b"".join(parts)


# --- commands -------------------------------------------------------------------


def build_command(command: int, argument: bytes = b"") -> bytes:
    return bytes((command,)) + argument


@dataclass(frozen=True, slots=True)
class StmtPrepareOk:
    statement_id: int
    num_columns: int
    num_params: int
    warnings: int


def parse_stmt_prepare_ok(payload: bytes) -> StmtPrepareOk:
    r = _headed(payload, 0x00, "not a COM_STMT_PREPARE OK")
    stmt_id = r.u32()
    cols = r.u16()
    params = r.u16()
    warnings = 0
    if r.remaining() >= 3:
        r.u8()
        warnings = r.u16()
    return StmtPrepareOk(stmt_id, cols, params, warnings)
