"""proxyd's greeting announces the server's own default collation, and a client that takes
it gets the character set variables the server would have given it.

The server here runs with character_set_server=latin1: a proxy that announced its own
default (utf8mb4) would have such clients read other column metadata and other bytes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pymysql

from tests.faults.rawclient import handshake_response, packet, query, read_packet, salt_of
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess, split_address

LATIN1_SWEDISH_CI = 8
CHARSET_SQL = (
    b"SELECT @@character_set_client, @@character_set_connection, @@character_set_results,"
    b" @@collation_connection, HEX(CONVERT(_utf8mb4 0xC3A9 USING latin1))"
)


def _greeting_charset(greeting: bytes) -> int:
    pos = greeting.index(b"\0", 1) + 1 + 4 + 8 + 1 + 2  # version, id, scramble, filler, caps
    return greeting[pos]


def _session(address: tuple[str, int]) -> tuple[int, list[bytes]]:
    """Log in with the greeting's own collation, as libmariadb-based clients may; return
    that collation and what the session's character set variables read."""
    sock = socket.create_connection(address, timeout=10)
    try:
        _, greeting = read_packet(sock)
        charset = _greeting_charset(greeting)
        sock.sendall(packet(handshake_response(salt_of(greeting), charset=charset), 1))
        seq, ok = read_packet(sock)
        assert (seq, ok[:1]) == (2, b"\x00"), ok
        return charset, query(sock, CHARSET_SQL)
    finally:
        sock.close()


def test_greeting_and_session_charset_are_the_servers(
    mariadb_factory: Callable[..., MariaDBServer], proxyd: Callable[..., ProxydProcess]
) -> None:
    server = mariadb_factory(character_set_server="latin1", collation_server="latin1_swedish_ci")
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 1}}, backend=server)
    direct = _session(split_address(server.address))
    assert direct[0] == LATIN1_SWEDISH_CI
    for _ in range(3):  # on whichever server connection each one lands
        assert _session((proxy.host, proxy.port)) == direct


def test_set_names_gives_what_the_server_gives_for_every_character_set(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    # proxyd answers SET NAMES itself (the character set moves with the session): without
    # COLLATE, the collation must be the server's default for that set, not a client
    # library's; the sets the server refuses for a client, it refuses the same way.
    proxy = proxyd({"pool": {"max_size": 2}})
    names = [row[0] for row in mariadb.execute("SHOW CHARACTER SET")]
    assert len(names) > 30, names
    through, direct = proxy.connect(), mariadb.connect()
    try:
        for name in names:
            seen = []
            for conn in (through, direct):
                with conn.cursor() as cur:
                    try:
                        cur.execute(f"SET NAMES {name}")
                    except pymysql.err.MySQLError as exc:
                        seen.append(("error", exc.args))
                        continue
                    cur.execute("SELECT @@character_set_client, @@collation_connection")
                    seen.append(("set", cur.fetchone()))
            assert seen[0] == seen[1], name
    finally:
        through.close()
        direct.close()
