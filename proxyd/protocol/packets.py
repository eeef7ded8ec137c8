"""Packet framing and the protocol's basic data types.

Every MySQL packet is a 3-byte little-endian payload length, a 1-byte
sequence id, and the payload. A payload of exactly 0xFFFFFF bytes means the
logical payload continues in the next packet (with the next sequence id);
a logical payload that is an exact multiple of 0xFFFFFF ends with an empty
packet. See https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_basic_packets.html
"""

from __future__ import annotations

import struct

from proxyd.protocol.constants import MAX_PACKET_PAYLOAD
from proxyd.protocol.errors import PacketTooLarge, ProtocolError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def packet_header(length: int, seq: int) -> bytes:
    return (length | ((seq & 0xFF) << 24)).to_bytes(4, "little")


def encode_packet(payload: bytes, seq: int) -> bytes:
    """Frame one logical payload, splitting it at 16 MiB."""
    if len(payload) < MAX_PACKET_PAYLOAD:
        return packet_header(len(payload), seq) + payload
    out = bytearray()
    view = memoryview(payload)
    while True:
        chunk = view[:MAX_PACKET_PAYLOAD]
        out += packet_header(len(chunk), seq)
        out += chunk
        seq += 1
        view = view[MAX_PACKET_PAYLOAD:]
        if len(chunk) < MAX_PACKET_PAYLOAD:
            return bytes(out)


class PacketReader:
    """Reassembles logical payloads from a byte stream.

    ``feed`` bytes in, then call ``next_packet`` until it returns None.
    ``max_payload`` bounds what one peer may make us buffer.
    """

    __slots__ = ("_buf", "_parts", "first_seq", "max_payload")

    def __init__(self, max_payload: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []
        self.max_payload = max_payload
        # Sequence id of the first packet of the payload last returned: a command
        # split over several packets starts at 0 and next_packet reports its last.
        self.first_seq = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_packet(self) -> tuple[int, bytes] | None:
        """Return (sequence id of the last fragment, payload) or None if incomplete."""
        while True:
            buf = self._buf
            if len(buf) < 4:
                return None
            length = buf[0] | (buf[1] << 8) | (buf[2] << 16)
            seq = buf[3]
            if sum(map(len, self._parts)) + length > self.max_payload:
                raise PacketTooLarge(f"packet of more than {self.max_payload} bytes")
            if len(buf) < 4 + length:
                return None
            payload = bytes(buf[4 : 4 + length])
            del buf[: 4 + length]
            if not self._parts:
                self.first_seq = seq
            if length == MAX_PACKET_PAYLOAD:
                self._parts.append(payload)
                continue
            if self._parts:
                self._parts.append(payload)
                payload = b"".join(self._parts)
                self._parts.clear()
            return seq, payload

    def take_remaining(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


# --- basic data types ------------------------------------------------------


def lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + _U16.pack(value)
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + _U64.pack(value)


def lenenc_str(value: bytes) -> bytes:
    return lenenc_int(len(value)) + value


class Reader:
    """Cursor over one payload; every read checks bounds and raises ProtocolError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ProtocolError(f"truncated packet: wanted {n} bytes at offset {self.pos}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int(_U16.unpack(self._take(2))[0])

    def u24(self) -> int:
        return int.from_bytes(self._take(3), "little")

    def u32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self._take(8))[0])

    def take(self, n: int) -> bytes:
        return self._take(n)

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def nul_str(self) -> bytes:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise ProtocolError(f"unterminated string at offset {self.pos}")
        out = self.data[self.pos : end]
        self.pos = end + 1
        return out

    def nul_str_or_rest(self) -> bytes:
        """A NUL-terminated string whose terminator some peers omit at the end."""
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            return self.rest()
        out = self.data[self.pos : end]
        self.pos = end + 1
        return out

    def lenenc_int(self) -> int:
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.u16()
        if first == 0xFD:
            return self.u24()
        if first == 0xFE:
            return self.u64()
        raise ProtocolError(f"invalid length-encoded integer prefix 0x{first:02x}")

    def lenenc_str(self) -> bytes:
        return self._take(self.lenenc_int())
