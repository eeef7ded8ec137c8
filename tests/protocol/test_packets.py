"""Framing, 16 MiB continuation, length-encoded integers and the bounds-checked Reader."""

from __future__ import annotations

import itertools

import pytest

from proxyd.protocol.constants import MAX_PACKET_PAYLOAD
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.packets import (
    PacketReader,
    Reader,
    encode_packet,
    lenenc_int,
    lenenc_str,
    packet_header,
)
from tests.protocol.captured import CAPTURED, payloads, physical_packets

MAX = MAX_PACKET_PAYLOAD


def test_header_is_length_then_sequence_id() -> None:
    assert packet_header(0x030201, 7) == b"\x01\x02\x03\x07"
    assert packet_header(5, 256 + 3) == b"\x05\x00\x00\x03"  # sequence ids wrap at 256
    assert encode_packet(b"\x0e", 0) == b"\x01\x00\x00\x00\x0e"
    assert encode_packet(b"", 2) == b"\x00\x00\x00\x02"


@pytest.mark.parametrize(
    ("size", "lengths"),
    [
        (MAX - 1, [MAX - 1]),
        (MAX, [MAX, 0]),  # exactly 16 MiB: an empty packet says it ends
        (MAX + 10, [MAX, 10]),
        (2 * MAX, [MAX, MAX, 0]),
        (2 * MAX + 1, [MAX, MAX, 1]),
    ],
    ids=["max-1", "max", "max+10", "2max", "2max+1"],
)
def test_long_payloads_are_split_and_reassembled(size: int, lengths: list[int]) -> None:
    payload = bytes(range(256)) * (size // 256) + b"\xab" * (size % 256)
    framed = encode_packet(payload, 250)
    packets = physical_packets(framed)
    assert [len(p) - 4 for p in packets] == lengths
    # Sequence ids go on from the first one, wrapping at 256.
    assert [p[3] for p in packets] == [(250 + i) % 256 for i in range(len(lengths))]
    reader = PacketReader()
    reader.feed(framed + encode_packet(b"next", 0))
    seq, got = reader.next_packet() or (None, b"")
    assert seq == (250 + len(lengths) - 1) % 256  # the last fragment's id
    assert got == payload
    assert reader.next_packet() == (0, b"next")
    assert reader.next_packet() is None
    assert reader.buffered == 0


def test_reader_waits_for_whole_packets_fed_in_pieces() -> None:
    payload = b"x" * (MAX + 10)
    framed = encode_packet(payload, 0) + encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 2)
    reader = PacketReader()
    got = []
    # Cut inside the first header, at the first boundary, inside the second header, ...
    cuts = [0, 2, 4 + MAX, 4 + MAX + 2, 4 + MAX + 4, len(framed) - 3, len(framed)]
    for a, b in itertools.pairwise(cuts):
        reader.feed(framed[a:b])
        while (packet := reader.next_packet()) is not None:
            got.append(packet)
    assert got == [(1, payload), (2, b"\x00\x00\x00\x02\x00\x00\x00")]


def test_reader_refuses_more_than_max_payload() -> None:
    reader = PacketReader(max_payload=100)
    reader.feed(packet_header(101, 0))
    with pytest.raises(ProtocolError):
        reader.next_packet()
    # Also when the pieces of one continued payload add up to too much.
    reader = PacketReader(max_payload=MAX + 5)
    reader.feed(encode_packet(b"y" * (MAX + 10), 0)[: 4 + MAX + 4])
    with pytest.raises(ProtocolError):
        reader.next_packet()


def test_take_remaining() -> None:
    reader = PacketReader()
    reader.feed(encode_packet(b"ab", 0) + b"\x05\x00")
    assert reader.next_packet() == (0, b"ab")
    assert reader.next_packet() is None
    assert reader.take_remaining() == b"\x05\x00"
    assert reader.buffered == 0


def test_every_captured_stream_frames_cleanly() -> None:
    # Re-framing each captured payload with its sequence id gives the bytes back.
    total = 0
    for session in CAPTURED.sessions:
        streams = [data for _, data in session.login]
        streams += [d for c in session.commands for p in c.parts for d in (p.client, p.server)]
        for data in streams:
            rebuilt = b"".join(encode_packet(payload, seq) for seq, payload in payloads(data))
            assert rebuilt == data
            total += 1
    assert total > 500


# --- length-encoded integers -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfc\xfb\x00"),
        (0xFFFF, b"\xfc\xff\xff"),
        (0x10000, b"\xfd\x00\x00\x01"),
        (0xFFFFFF, b"\xfd\xff\xff\xff"),
        (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
        (2**64 - 1, b"\xfe" + b"\xff" * 8),
    ],
)
def test_lenenc_int_at_each_boundary(value: int, encoded: bytes) -> None:
    assert lenenc_int(value) == encoded
    r = Reader(encoded + b"rest")
    assert r.lenenc_int() == value
    assert r.rest() == b"rest"


@pytest.mark.parametrize("prefix", [b"\xfb", b"\xff"], ids=["null", "err"])
def test_lenenc_int_refuses_null_and_err_prefixes(prefix: bytes) -> None:
    with pytest.raises(ProtocolError):
        Reader(prefix + b"\x00" * 8).lenenc_int()


@pytest.mark.parametrize("data", [b"", b"\xfc\x01", b"\xfd\x01\x02", b"\xfe" + b"\x00" * 7])
def test_truncated_lenenc_int(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Reader(data).lenenc_int()


@pytest.mark.parametrize("length", [0, 1, 250, 251, 0xFFFF, 0x10000])
def test_lenenc_str(length: int) -> None:
    value = b"v" * length
    r = Reader(lenenc_str(value) + b"!")
    assert r.lenenc_str() == value
    assert r.rest() == b"!"
    with pytest.raises(ProtocolError):
        Reader(lenenc_str(value)[:-1] if length else b"\x01").lenenc_str()


# --- Reader -------------------------------------------------------------------------


def test_reader_fixed_width_integers_are_little_endian() -> None:
    r = Reader(b"\x01\x02\x01\x03\x02\x01\x04\x03\x02\x01" + bytes(range(1, 9)))
    assert r.u8() == 1
    assert r.u16() == 0x0102
    assert r.u24() == 0x010203
    assert r.u32() == 0x01020304
    assert r.u64() == 0x0807060504030201
    assert r.remaining() == 0


@pytest.mark.parametrize("read", ["u8", "u16", "u24", "u32", "u64"])
def test_reader_refuses_to_read_past_the_end(read: str) -> None:
    r = Reader(b"")
    with pytest.raises(ProtocolError):
        getattr(r, read)()
    with pytest.raises(ProtocolError):
        Reader(b"abc").take(4)
    with pytest.raises(ProtocolError):
        Reader(b"abc").take(-1)


def test_reader_strings() -> None:
    r = Reader(b"abc\x00def\x00gh")
    assert r.nul_str() == b"abc"
    assert r.nul_str_or_rest() == b"def"
    assert r.nul_str_or_rest() == b"gh"  # terminator omitted at the end
    assert r.nul_str_or_rest() == b""
    with pytest.raises(ProtocolError):
        Reader(b"no terminator").nul_str()
    assert Reader(memoryview(b"\x02hi"), 0).lenenc_str() == b"hi"
