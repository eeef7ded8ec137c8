"""Decoding small text result sets that proxyd reads for itself (never a client's rows)."""

from __future__ import annotations

from proxyd.protocol.constants import CLIENT
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    ErrPacket,
    OkPacket,
    is_err,
    parse_err,
    parse_ok,
)
from proxyd.protocol.packets import Reader, encode_packet, lenenc_int, lenenc_str

Row = tuple[bytes | None, ...]


def column_names(packets: list[bytes]) -> list[bytes]:
    """The column names of a result set's answer (empty for an OK or ERR)."""
    if not packets or packets[0][:1] in (b"\x00", b"\xff"):
        return []
    ncols = Reader(packets[0]).lenenc_int()
    names = []
    for payload in packets[1 : 1 + ncols]:
        r = Reader(payload)
        for _ in range(4):  # catalog, schema, table, org_table
            r.lenenc_str()
        names.append(r.lenenc_str())
    return names


def decode_text_result(packets: list[bytes], capabilities: int) -> OkPacket | ErrPacket | list[Row]:
    """Decode the packets of one complete answer to a COM_QUERY."""
    if not packets:
        raise ProtocolError("empty response")
    first = packets[0]
    if is_err(first):
        return parse_err(first, capabilities)
    if first[:1] == b"\x00":
        return parse_ok(first, capabilities)
    ncols = Reader(first).lenenc_int()
    pos = 1 + ncols
    if not capabilities & CLIENT.DEPRECATE_EOF:
        pos += 1
    rows: list[Row] = []
    for payload in packets[pos:]:
        if payload[:1] == b"\xfe" and len(payload) < 0xFFFFFF:
            break
        if is_err(payload):
            return parse_err(payload, capabilities)
        r = Reader(payload)
        row: list[bytes | None] = []
        for _ in range(ncols):
            if r.data[r.pos : r.pos + 1] == b"\xfb":
                r.pos += 1
                row.append(None)
            else:
                row.append(r.lenenc_str())
        rows.append(tuple(row))
    return rows


def column_definition(name: bytes, type_code: int = 0xFD, charset: int = 33) -> bytes:
    """A ColumnDefinition41 payload for result sets proxyd builds itself (admin console)."""
    return b"".join(
        (
            lenenc_str(b"def"),
            lenenc_str(b""),  # schema
            lenenc_str(b""),  # table
            lenenc_str(b""),  # org_table
            lenenc_str(name),
            lenenc_str(name),
            b"\x0c",
            charset.to_bytes(2, "little"),
            (1024).to_bytes(4, "little"),
            bytes((type_code,)),
            b"\x00\x00",  # flags
            b"\x00",  # decimals
            b"\x00\x00",
        )
    )


def encode_text_result(
    columns: list[str],
    rows: list[tuple[object, ...]],
    capabilities: int,
    status_flags: int = 0x0002,
    column_types: list[int] | None = None,
) -> bytes:
    """A whole text result set, framed, starting at sequence id 1.

    ``column_types`` (MYSQL_TYPE_* codes, default VAR_STRING) tell drivers which columns
    hold numbers; the values are sent as text either way.
    """
    from proxyd.protocol.messages import OkPacket, build_eof, build_ok

    out = []
    seq = 1
    out.append(encode_packet(lenenc_int(len(columns)), seq))
    for index, name in enumerate(columns):
        seq += 1
        type_code = column_types[index] if column_types else 0xFD
        # Numbers carry the binary collation, as a server sends them.
        charset = 33 if type_code == 0xFD else 63
        out.append(encode_packet(column_definition(name.encode(), type_code, charset), seq))
    deprecate = capabilities & CLIENT.DEPRECATE_EOF
    if not deprecate:
        seq += 1
        out.append(encode_packet(build_eof(status_flags), seq))
    for row in rows:
        seq += 1
        cells = []
        for value in row:
            if value is None:
                cells.append(b"\xfb")
            else:
                text = value if isinstance(value, bytes) else str(value).encode()
                cells.append(lenenc_str(text))
        out.append(encode_packet(b"".join(cells), seq))
    seq += 1
    if deprecate:
        out.append(
            encode_packet(
                build_ok(OkPacket(status_flags=status_flags, header=0xFE), capabilities), seq
            )
        )
    else:
        out.append(encode_packet(build_eof(status_flags), seq))
    return b"".join(out)
