"""A small MySQL client for the bench's own workloads: login, text queries, quit.

The bench needs two things no stock driver gives cheaply: ten thousand logged-in
connections from one process (``AsyncConnection``, on the event loop), and per-query
timings with as little client work per query as a Python loop allows (``Connection``, a
blocking socket). Both speak through proxyd's sans-IO protocol code: ``ClientLogin`` for
the connection phase, ``PacketReader`` for framing. The answer to a COM_QUERY is followed
by its packet heads only (OK, ERR, or a result set up to its last EOF); rows are never
decoded, so the client's own cost is the same whatever sits in the middle.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from proxyd.protocol.constants import CLIENT, CLIENT_MYSQL, COMMAND, SERVER_STATUS
from proxyd.protocol.login import ClientLogin
from proxyd.protocol.messages import build_command, parse_err, status_of_terminator
from proxyd.protocol.packets import PacketReader, Reader, encode_packet

# No CLIENT_DEPRECATE_EOF: a result set ends in an EOF packet, easy to tell from a row.
CAPABILITIES = (
    CLIENT_MYSQL  # also says "no MariaDB extended capabilities"
    | CLIENT.PROTOCOL_41
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.TRANSACTIONS
)
UTF8MB4_GENERAL_CI = 45
_QUIT = encode_packet(build_command(COMMAND.COM_QUIT), 0)
PING = encode_packet(build_command(COMMAND.COM_PING), 0)


class QueryFailed(Exception):
    """The server (or the proxy) answered with an ERR packet."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


def com_query(sql: str) -> bytes:
    """A framed COM_QUERY, to build once and send many times."""
    return encode_packet(build_command(COMMAND.COM_QUERY, sql.encode()), 0)


def new_login(user: str, password: str, database: str | None) -> ClientLogin:
    return ClientLogin(
        user.encode(),
        password.encode(),
        UTF8MB4_GENERAL_CI,
        database.encode() if database else None,
        CAPABILITIES,
    )


class Answer:
    """Where the answer to one COM_QUERY stands; ``feed`` each payload until it says done.

    head (OK, ERR or a column count) -> column definitions -> EOF -> rows -> EOF, again from
    head when the last EOF or OK says more results follow.
    """

    __slots__ = ("_capabilities", "_columns", "_phase")

    _HEAD, _COLUMNS, _ROWS = range(3)

    def __init__(self, capabilities: int) -> None:
        self._capabilities = capabilities
        self._phase = self._HEAD
        self._columns = 0

    def feed(self, payload: bytes) -> bool:
        """True once the answer is complete; raises QueryFailed for an ERR."""
        head = payload[0] if payload else -1
        if head == 0xFF and self._phase != self._COLUMNS:
            err = parse_err(payload, self._capabilities)
            raise QueryFailed(err.error_code, err.message.decode(errors="replace"))
        if self._phase == self._HEAD:
            if head == 0x00:
                return self._last(payload)
            if head == 0xFB:
                raise QueryFailed(0, "the server asked for a LOCAL INFILE")
            self._columns = Reader(payload).lenenc_int()
            self._phase = self._COLUMNS
            return False
        if self._phase == self._COLUMNS:
            if self._columns:
                self._columns -= 1
            else:  # the EOF after the column definitions
                self._phase = self._ROWS
            return False
        if head == 0xFE and len(payload) < 9:  # a row starting 0xFE is at least 9 bytes
            return self._last(payload)
        return False

    def _last(self, payload: bytes) -> bool:
        status = status_of_terminator(payload, self._capabilities)
        if status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS:
            self._phase = self._HEAD
            return False
        return True


class Connection:
    """One blocking connection: open(), query() or send_query(), close()."""

    def __init__(self, sock: socket.socket, capabilities: int, reader: PacketReader) -> None:
        self._sock = sock
        self._reader = reader
        self.capabilities = capabilities

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str | None = None,
        timeout: float = 10.0,
    ) -> Connection:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = PacketReader()
            login = new_login(user, password, database)
            seq, payload = _next_packet(sock, reader)
            sock.sendall(encode_packet(login.greeting(payload), seq + 1))
            while not login.done:
                seq, payload = _next_packet(sock, reader)
                for answer in login.receive(payload):
                    sock.sendall(encode_packet(answer, seq + 1))
        except BaseException:
            sock.close()
            raise
        return cls(sock, login.capabilities, reader)

    def query(self, sql: str) -> None:
        self.send_query(com_query(sql))

    def send_query(self, packet: bytes) -> None:
        """Send a framed COM_QUERY (``com_query()``) and read its answer to the end."""
        self._sock.sendall(packet)
        answer = Answer(self.capabilities)
        while not answer.feed(_next_packet(self._sock, self._reader)[1]):
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(_QUIT)
        self._sock.close()


def _next_packet(sock: socket.socket, reader: PacketReader) -> tuple[int, bytes]:
    while True:
        packet = reader.next_packet()
        if packet is not None:
            return packet
        data = sock.recv(65536)
        if not data:
            raise ConnectionResetError("the peer closed the connection")
        reader.feed(data)


class AsyncConnection:
    """One connection on the running event loop: ``await open()``, ``await query()``, close()."""

    def __init__(
        self,
        stream: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        capabilities: int,
        reader: PacketReader,
    ) -> None:
        self._stream = stream
        self._writer = writer
        self._reader = reader
        self.capabilities = capabilities

    @classmethod
    async def open(
        cls, host: str, port: int, user: str, password: str, database: str | None = None
    ) -> AsyncConnection:
        stream, writer = await asyncio.open_connection(host, port)
        try:
            reader = PacketReader()
            login = new_login(user, password, database)
            seq, payload = await _next_packet_async(stream, reader)
            writer.write(encode_packet(login.greeting(payload), seq + 1))
            while not login.done:
                seq, payload = await _next_packet_async(stream, reader)
                for answer in login.receive(payload):
                    writer.write(encode_packet(answer, seq + 1))
        except BaseException:
            writer.close()
            raise
        return cls(stream, writer, login.capabilities, reader)

    async def query(self, packet: bytes) -> None:
        """Send a framed COM_QUERY (``com_query()``) or PING, and read its answer to the end."""
        self._writer.write(packet)
        answer = Answer(self.capabilities)
        while not answer.feed((await _next_packet_async(self._stream, self._reader))[1]):
            pass

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(_QUIT)
            self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def _next_packet_async(
    stream: asyncio.StreamReader, reader: PacketReader
) -> tuple[int, bytes]:
    while True:
        packet = reader.next_packet()
        if packet is not None:
            return packet
        data = await stream.read(65536)
        if not data:
            raise ConnectionResetError("the peer closed the connection")
        reader.feed(data)
