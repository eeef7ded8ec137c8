"""The session commands besides COM_QUERY, through transaction pooling.

COM_STATISTICS, COM_SET_OPTION, COM_FIELD_LIST, COM_PROCESS_INFO, and a binary
cursor (COM_STMT_EXECUTE with a cursor, then COM_STMT_FETCH) that pins its client
until it is closed. Drivers expose few of these, so some are sent as raw packets.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import MySQLdb
import pymysql
import pytest

from tests.faults.rawclient import logged_in, packet, parse_err, read_packet
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess

SERVER_STATUS_CURSOR_EXISTS = 0x0040
SERVER_STATUS_LAST_ROW_SENT = 0x0080
MULTI_STATEMENTS_ON, MULTI_STATEMENTS_OFF = 0, 1


def _busy_other_client(proxy: ProxydProcess) -> None:
    other = proxy.connect()
    with other.cursor() as cur:
        cur.execute("SET time_zone = '+07:00'")
        cur.execute("SELECT 1")
    other.close()


def test_statistics_and_multi_statement_option_follow_the_client(
    proxyd: Callable[..., ProxydProcess],
) -> None:
    proxy = proxyd({"pool": {"max_size": 2, "min_idle": 0}})
    conn = MySQLdb.connect(
        host=proxy.host, port=proxy.port, user="app", password="apppw", database="test"
    )
    assert "Uptime" in conn.stat()  # COM_STATISTICS
    cur = conn.cursor()
    cur.execute("SELECT 1; SELECT 2")  # mysqlclient asks for multi-statements
    assert cur.fetchall() == ((1,),)
    assert cur.nextset() and cur.fetchall() == ((2,),)
    while cur.nextset():
        pass
    conn.set_server_option(MULTI_STATEMENTS_OFF)  # COM_SET_OPTION
    _busy_other_client(proxy)
    with pytest.raises(MySQLdb.ProgrammingError) as info:
        cur.execute("SELECT 1; SELECT 2")
    assert info.value.args[0] == 1064
    conn.set_server_option(MULTI_STATEMENTS_ON)
    _busy_other_client(proxy)
    cur.execute("SELECT 3; SELECT 4")
    assert cur.fetchall() == ((3,),)
    while cur.nextset():
        pass
    conn.close()


def _use_test(sock: object) -> None:
    sock.sendall(packet(b"\x02test", 0))  # type: ignore[attr-defined]  # COM_INIT_DB
    _, ok = read_packet(sock)  # type: ignore[arg-type]
    assert ok[:1] == b"\x00", parse_err(ok)


def _read_until_eof(sock: object) -> list[bytes]:
    out = []
    while True:
        _, payload = read_packet(sock)  # type: ignore[arg-type]
        assert parse_err(payload) is None, parse_err(payload)
        if payload[:1] == b"\xfe" and len(payload) < 9:
            return out
        out.append(payload)


def test_field_list_and_process_info(
    mariadb: MariaDBServer, proxyd: Callable[..., ProxydProcess]
) -> None:
    mariadb.execute("CREATE TABLE IF NOT EXISTS test.fields (id INT, name VARCHAR(10))")
    proxy = proxyd()
    sock = logged_in(proxy)
    _use_test(sock)
    sock.sendall(packet(b"\x04fields\x00", 0))  # COM_FIELD_LIST
    columns = _read_until_eof(sock)
    # Two column definitions of table `fields`: id, then name.
    assert len(columns) == 2 and all(b"\x06fields" in c for c in columns), columns
    assert b"\x04name" in columns[1]
    sock.sendall(packet(b"\x0a", 0))  # COM_PROCESS_INFO: a result set
    _, first = read_packet(sock)
    assert parse_err(first) is None
    for _ in range(first[0]):
        read_packet(sock)
    assert read_packet(sock)[1][:1] == b"\xfe"
    assert _read_until_eof(sock), "the processlist shows at least our own thread"
    sock.close()


def test_binary_cursor_pins_until_closed(proxyd: Callable[..., ProxydProcess]) -> None:
    proxy = proxyd({"pool": {"max_size": 1, "min_idle": 0, "acquire_timeout": "1s"}})
    sock = logged_in(proxy)
    _use_test(sock)
    sock.sendall(packet(b"\x16SELECT seq FROM seq_1_to_10", 0))  # COM_STMT_PREPARE
    _, ok = read_packet(sock)
    stmt_id, ncols, nparams = struct.unpack("<IHH", ok[1:9])
    assert (ncols, nparams) == (1, 0)
    _read_until_eof(sock)  # column definitions
    # COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: metadata now, rows on COM_STMT_FETCH.
    sock.sendall(packet(b"\x17" + struct.pack("<IBI", stmt_id, 1, 1), 0))
    _, count = read_packet(sock)
    assert count[0] == 1
    read_packet(sock)  # the column definition
    _, eof = read_packet(sock)
    assert struct.unpack("<H", eof[3:5])[0] & SERVER_STATUS_CURSOR_EXISTS
    # The cursor lives on this client's backend: the only one, so others wait.
    other = proxy.connect()
    with pytest.raises(pymysql.err.OperationalError) as info, other.cursor() as cur:
        cur.execute("SELECT 1")
    assert "acquire_timeout" in info.value.args[1]
    values = []
    for _ in range(3):
        sock.sendall(packet(b"\x1c" + struct.pack("<II", stmt_id, 4), 0))  # COM_STMT_FETCH
        rows = []
        while True:
            _, payload = read_packet(sock)
            if payload[:1] == b"\xfe" and len(payload) < 9:
                status = struct.unpack("<H", payload[3:5])[0]
                break
            rows.append(payload)
        values += [struct.unpack("<Q", r[2:10])[0] for r in rows]
    assert values == list(range(1, 11))
    assert status & SERVER_STATUS_LAST_ROW_SENT
    sock.sendall(packet(b"\x19" + struct.pack("<I", stmt_id), 0))  # COM_STMT_CLOSE
    with other.cursor() as cur:
        cur.execute("SELECT 'free again'")
        assert cur.fetchone() == ("free again",)
    other.close()
    sock.close()
