"""What proxyd answers itself, byte for byte against what the server answers.

proxyd answers some commands without a server connection (COM_PING, COM_SET_OPTION,
COM_RESET_CONNECTION, SET NAMES, prepared-statement bookkeeping, KILL of an unknown id).
Each such answer is compared here with the server's answer to the same packet, over raw
sockets (tests/faults/rawclient.py, which does not use proxyd's protocol code).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from tests.faults.rawclient import handshake_response, packet, read_packet, salt_of
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess, split_address

COMMANDS = {
    "COM_PING": b"\x0e",
    "COM_SET_OPTION multi-statements on": b"\x1b\x00\x00",
    "COM_SET_OPTION multi-statements off": b"\x1b\x01\x00",
    "SET NAMES latin1": b"\x03SET NAMES latin1",
    "SET NAMES utf8mb4 COLLATE utf8mb4_bin": b"\x03SET NAMES utf8mb4 COLLATE utf8mb4_bin",
    "SET NAMES ucs2": b"\x03SET NAMES ucs2",
    "COM_RESET_CONNECTION": b"\x1f",
    "COM_STMT_RESET of an unknown statement": b"\x1a\x63\x00\x00\x00",
    "COM_STMT_EXECUTE of an unknown statement": b"\x17\x63\x00\x00\x00\x00\x01\x00\x00\x00",
    "COM_STMT_FETCH of an unknown statement": b"\x1c\x63\x00\x00\x00\x01\x00\x00\x00",
    "KILL of an unknown id": b"\x03KILL 4000000",
    "KILL QUERY of an unknown id": b"\x03KILL QUERY 4000000",
    "COM_PROCESS_KILL of an unknown id": b"\x0c\x00\x09\x3d\x00",
}


def _logged_in(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    _, greeting = read_packet(sock)
    sock.sendall(packet(handshake_response(salt_of(greeting)), 1))
    seq, ok = read_packet(sock)
    assert (seq, ok[:1]) == (2, b"\x00"), ok
    return sock


def _answer(address: tuple[str, int], command: bytes) -> tuple[int, bytes]:
    sock = _logged_in(address)
    try:
        sock.sendall(packet(command, 0))
        return read_packet(sock)
    finally:
        sock.close()


@pytest.mark.parametrize("name", COMMANDS)
def test_proxyds_own_answer_is_the_servers(
    name: str, mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    proxy = proxyd({"pool": {"max_size": 2}})
    command = COMMANDS[name]
    assert _answer((proxy.host, proxy.port), command) == _answer(
        split_address(mariadb.address), command
    )
