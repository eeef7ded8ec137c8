"""A MySQL client that speaks raw packets, for tests that must send what no driver would.

Just enough of the protocol to log in with mysql_native_password and run a text query;
everything else is the test's own bytes. Independent of proxyd's protocol package on
purpose, so a test never checks proxyd against itself.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pymysql._auth import scramble_native_password
from pymysql.constants import CLIENT

from tests.support.proxy import ProxydProcess

CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
)


class Closed(Exception):
    """The peer closed the connection (FIN or RST)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def read_packet(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(sock, 4)
    return header[3], _recv_exact(sock, int.from_bytes(header[:3], "little"))


def packet(payload: bytes, seq: int) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes((seq,)) + payload


def frames(payload: bytes, seq: int = 0) -> bytes:
    """One logical payload of any length, split at 16 MiB - 1 as the protocol requires."""
    out = bytearray()
    for start in range(0, len(payload) + 1, 0xFFFFFF):
        out += packet(payload[start : start + 0xFFFFFF], seq)
        seq += 1
    return bytes(out)


@dataclass(frozen=True)
class Err:
    code: int
    sql_state: str
    message: str


def parse_err(payload: bytes) -> Err | None:
    if payload[:1] != b"\xff":
        return None
    code = int.from_bytes(payload[1:3], "little")
    if payload[3:4] == b"#":
        return Err(code, payload[4:9].decode(), payload[9:].decode(errors="replace"))
    return Err(code, "", payload[3:].decode(errors="replace"))


def salt_of(greeting: bytes) -> bytes:
    """The scramble of a HandshakeV10 (protocol 10, then the fields up to its two parts)."""
    assert greeting[:1] == b"\x0a", greeting[:20]
    pos = greeting.index(b"\0", 1) + 1 + 4  # server version, connection id
    first = greeting[pos : pos + 8]
    pos += 8 + 1 + 2 + 1 + 2 + 2  # filler, capabilities, charset, status, capabilities
    pos += 1 + 10  # auth data length, reserved
    return first + greeting[pos : pos + 12]


def handshake_response(
    salt: bytes, user: bytes = b"app", password: bytes = b"apppw", charset: int = 45
) -> bytes:
    scramble = scramble_native_password(password, salt)
    return (
        struct.pack("<IIB23x", CAPABILITIES, 1 << 24, charset)
        + user
        + b"\0"
        + bytes((len(scramble),))
        + scramble
        + b"mysql_native_password\0"
    )


def connect(proxy: ProxydProcess) -> tuple[socket.socket, bytes]:
    """A raw connection that has read the greeting; returns it and the greeting's salt."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=10)
    _, greeting = read_packet(sock)
    return sock, salt_of(greeting)


def logged_in(proxy: ProxydProcess) -> socket.socket:
    sock, salt = connect(proxy)
    sock.sendall(packet(handshake_response(salt), 1))
    seq, payload = read_packet(sock)
    assert (seq, payload[:1]) == (2, b"\x00"), (seq, payload)
    return sock


def query(sock: socket.socket, sql: bytes) -> list[bytes]:
    """COM_QUERY on a raw logged-in connection; the rows' payloads (EOF-style result)."""
    sock.sendall(packet(b"\x03" + sql, 0))
    _, first = read_packet(sock)
    assert parse_err(first) is None, parse_err(first)
    for _ in range(first[0]):  # column definitions
        read_packet(sock)
    assert read_packet(sock)[1][:1] == b"\xfe"
    rows = []
    while True:
        _, payload = read_packet(sock)
        if payload[:1] == b"\xfe" and len(payload) < 9:
            return rows
        rows.append(payload)
