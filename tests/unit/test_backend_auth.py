"""proxyd logging in to a MySQL 8 style server with caching_sha2_password.

MariaDB has no caching_sha2_password, so this plays the server's side of the
documented exchange on a real socket: the fast path (scramble), and the full
path where proxyd asks for the server's RSA public key and sends the password
encrypted with it.
https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
"""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from proxyd.config import Address
from proxyd.protocol import auth
from proxyd.protocol.constants import CLIENT
from proxyd.protocol.messages import (
    HandshakeV10,
    OkPacket,
    build_handshake_v10,
    build_ok,
    parse_handshake_response,
)
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.resultset import encode_text_result
from proxyd.server.account import ServerAccount
from proxyd.server.connection import open_backend

PASSWORD = b"s3cret-for-sha2"
SERVER_CAPS = (
    CLIENT.LONG_PASSWORD
    | CLIENT.PROTOCOL_41
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.TRANSACTIONS
    | CLIENT.MULTI_RESULTS
    | CLIENT.SESSION_TRACK
    | CLIENT.CONNECT_WITH_DB
)


class FakeMySQL8:
    """Just enough of a MySQL 8 server for a login and proxyd's session setup."""

    def __init__(self, full_auth: bool) -> None:
        self.full_auth = full_auth
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.scramble = auth.new_scramble()
        self.received_password: bytes | None = None
        self.fast_path_ok: bool | None = None
        self.queries: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packets = PacketReader()

        async def read() -> tuple[int, bytes]:
            while True:
                packet = packets.next_packet()
                if packet is not None:
                    return packet
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("client went away")
                packets.feed(data)

        greeting = HandshakeV10(
            server_version=b"8.0.36",
            connection_id=77,
            auth_plugin_data=self.scramble,
            capability_flags=SERVER_CAPS,
            character_set=255,
            status_flags=2,
            auth_plugin_name=auth.CACHING_SHA2_PASSWORD,
        )
        writer.write(encode_packet(build_handshake_v10(greeting), 0))
        seq, payload = await read()
        response = parse_handshake_response(payload)
        self.fast_path_ok = auth.check_caching_sha2(response.auth_response, self.scramble, PASSWORD)
        if self.full_auth:
            writer.write(encode_packet(b"\x01" + auth.SHA2_PERFORM_FULL_AUTH, seq + 1))
            seq, payload = await read()
            assert payload == auth.SHA2_REQUEST_PUBLIC_KEY
            pem = self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            writer.write(encode_packet(b"\x01" + pem, seq + 1))
            seq, payload = await read()
            plain = self.key.decrypt(
                payload,
                padding.OAEP(
                    mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
                ),
            )
            salted = bytes(c ^ self.scramble[i % len(self.scramble)] for i, c in enumerate(plain))
            self.received_password = salted.rstrip(b"\x00")
        else:
            writer.write(encode_packet(b"\x01" + auth.SHA2_FAST_AUTH_OK, seq + 1))
            seq += 1
        caps = response.capability_flags
        writer.write(encode_packet(build_ok(OkPacket(status_flags=2), caps), seq + 1))
        while True:
            try:
                _, payload = await read()
            except ConnectionError:
                return
            if payload[:1] == b"\x01":  # COM_QUIT
                writer.close()
                return
            self.queries.append(payload[1:])
            if payload[1:].startswith(b"SELECT @@wait_timeout"):
                writer.write(
                    encode_text_result(
                        ["@@wait_timeout", "@@max_allowed_packet"], [(600, 67108864)], caps
                    )
                )
            else:
                writer.write(encode_packet(build_ok(OkPacket(status_flags=2), caps), 1))


@pytest.mark.parametrize("full_auth", [False, True], ids=["fast_path", "full_auth_rsa"])
def test_caching_sha2_password_login(full_auth: bool) -> None:
    server = FakeMySQL8(full_auth)

    async def run() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        lost: list[str] = []
        account = ServerAccount(Address("127.0.0.1", port), b"app", PASSWORD, 0, 45, b"test")
        conn = await open_backend(account, lambda c, reason: lost.append(reason), 5.0)
        assert conn.server_version == b"8.0.36"
        assert conn.wait_timeout == 600.0
        conn.close()
        listener.close()
        await listener.wait_closed()

    asyncio.run(run())
    assert server.fast_path_ok is True
    if full_auth:
        assert server.received_password == PASSWORD
    assert any(q.startswith(b"SET SESSION session_track") for q in server.queries)
