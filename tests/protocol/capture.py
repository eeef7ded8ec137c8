"""Record real MariaDB/driver conversations as test data for tests/protocol.

Run by hand, never by pytest. To regenerate the captures:

    .venv/bin/python -m tests.protocol.capture            # server on 127.0.0.1:3306
    .venv/bin/python -m tests.protocol.capture --port 3307 --out /tmp/x.json

It needs a MariaDB that root can reach with an empty password and a `test`
database. It creates (idempotently) the user `captest`@`%` / `capw`, the
table `test.cap_fields` and the procedure `test.cap_proc`, then runs each
client through a recording TCP relay and writes
`tests/protocol/captures/mariadb.json`.

Clients: PyMySQL, mysqlclient (MySQLdb) and mysql-connector-python (pure
Python), each when importable, plus a small raw client built on
proxyd.protocol that negotiates what no driver does (CLIENT_SESSION_TRACK,
CLIENT_DEPRECATE_EOF) and sends what no driver can (COM_FIELD_LIST,
COM_PROCESS_INFO, cursors with COM_STMT_FETCH...). The raw client decides that
an answer is complete when the server has been quiet for QUIET seconds, not
with ResponseTracker, so the captures do not depend on the code they test.

The file holds one entry per session: the login conversation as direction
runs (server greeting, HandshakeResponse41, auth switch..., OK or ERR), then
one entry per command. A command has one or more parts, each the client's
bytes and the server's answer to them; a second part is the client's
continuation of the same command (LOCAL INFILE contents). All bytes are hex.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from proxyd.protocol import auth
from proxyd.protocol.constants import CLIENT, COM_RESET_CONNECTION, COMMAND
from proxyd.protocol.messages import (
    HandshakeResponse41,
    build_handshake_response,
    parse_auth_switch_request,
    parse_handshake_v10,
    parse_stmt_prepare_ok,
)
from proxyd.protocol.packets import PacketReader, encode_packet

USER = "captest"
PASSWORD = "capw"
DATABASE = "test"
QUIET = 0.25  # seconds of silence that end a raw client's answer
OUT = Path(__file__).parent / "captures" / "mariadb.json"

SETUP_SQL = [
    f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'",
    f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%'",
    f"CREATE TABLE IF NOT EXISTS {DATABASE}.cap_fields"
    " (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL DEFAULT 'n', note TEXT)",
    f"CREATE OR REPLACE PROCEDURE {DATABASE}.cap_proc()"
    " BEGIN SELECT 1 AS a; SELECT 2 AS b, 'two' AS c; END",
]

# Statements every client runs, by label.
COMMON_SQL = [
    ("select_1", "SELECT 1"),
    ("select_multi_row", "SELECT seq, REPEAT('x', seq) FROM seq_1_to_50"),
    ("select_nulls", "SELECT NULL AS a, 1 AS b, NULL AS c, '' AS d"),
    ("select_empty", "SELECT seq FROM seq_1_to_3 WHERE seq > 5"),
    ("select_warning", "SELECT 1/0"),
    (
        "create_temp_table",
        "CREATE TEMPORARY TABLE cap_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))",
    ),
    ("insert", "INSERT INTO cap_t (v) VALUES ('a'), ('b')"),
    ("set_user_var", "SET @x=1"),
    ("set_time_zone", "SET time_zone='+01:00'"),
    ("set_names", "SET NAMES utf8mb4"),
    ("use_test", "USE test"),
    ("begin", "BEGIN"),
    ("insert_in_trans", "INSERT INTO cap_t (v) VALUES ('c')"),
    ("commit", "COMMIT"),
    ("start_read_only", "START TRANSACTION READ ONLY"),
    ("select_in_read_only", "SELECT COUNT(*) FROM cap_t"),
    ("commit_read_only", "COMMIT"),
    ("error", "SELECT * FROM no_such_table"),
    (
        "error_mid_rows",
        "SELECT s1.seq, (SELECT s2.seq FROM seq_1_to_3 s2 WHERE s2.seq + 2 <= s1.seq)"
        " FROM seq_1_to_5 s1",
    ),
    ("multi_statement", "SELECT 1; SELECT 2"),
    ("multi_statement_error", "SELECT 1; SELECT * FROM no_such_table; SELECT 3"),
    ("multi_statement_ok_then_rows", "SET @y=2; SELECT @y"),
    ("call_proc", "CALL cap_proc()"),
]


# --- the recording relay --------------------------------------------------------


class Relay:
    """Forwards one client connection at a time to the server, recording both directions.

    Every chunk is recorded before it is forwarded, so once a client has its
    answer the answer is in the transcript.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transcript: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=self._pump, args=(client, server, "client"), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, "server"), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while True:
            try:
                data = src.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                for sock in (src, dst):
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return
            with self.lock:
                self.transcript.append((direction, data))
            try:
                dst.sendall(data)
            except OSError:
                return

    def mark(self) -> int:
        time.sleep(0.05)  # let commands without an answer (COM_STMT_CLOSE...) arrive
        with self.lock:
            return len(self.transcript)

    def chunks(self, start: int, end: int | None = None) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.transcript[start:end])

    def close(self) -> None:
        self.listener.close()


def runs(chunks: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Consecutive chunks of one direction joined."""
    out: list[tuple[str, bytes]] = []
    for direction, data in chunks:
        if out and out[-1][0] == direction:
            out[-1] = (direction, out[-1][1] + data)
        else:
            out.append((direction, data))
    return out


def split_packets(data: bytes) -> list[tuple[int, bytes]]:
    """(sequence id, whole framed packet) of each physical packet in a client run."""
    out = []
    pos = 0
    while pos + 4 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "little")
        out.append((data[pos + 3], data[pos : pos + 4 + length]))
        pos += 4 + length
    if pos != len(data):
        raise RuntimeError("client run does not end on a packet boundary")
    return out


class Session:
    """One client connection's recording: login runs, then commands by step label."""

    def __init__(self, name: str, client: str, notes: str = "") -> None:
        self.name = name
        self.client = client
        self.notes = notes
        self.login: list[tuple[str, bytes]] = []
        self.commands: list[dict[str, Any]] = []

    def add(self, step: str, chunks: list[tuple[str, bytes]], in_login: bool = False) -> None:
        pending = runs(chunks)
        if in_login:
            # The login ends with the server's first OK or ERR after the client's
            # HandshakeResponse41; auth switches (0xFE) and AuthMoreData (0x01) come before.
            while pending:
                direction, data = pending.pop(0)
                self.login.append((direction, data))
                ends = data[4:5] in (b"\x00", b"\xff")
                if direction == "server" and len(self.login) > 1 and ends:
                    break
        current: dict[str, Any] | None = None
        for direction, data in pending:
            if direction == "client":
                for seq, packet in split_packets(data):
                    if seq == 0:
                        current = {
                            "step": step,
                            "command": packet[4],
                            "parts": [{"client": packet, "server": b""}],
                        }
                        self.commands.append(current)
                    elif current is None:
                        raise RuntimeError(f"{self.name}/{step}: continuation without a command")
                    elif current["parts"][-1]["server"]:
                        current["parts"].append({"client": packet, "server": b""})
                    else:
                        current["parts"][-1]["client"] += packet
            else:
                if current is None:
                    raise RuntimeError(f"{self.name}/{step}: server spoke first")
                current["parts"][-1]["server"] += data

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "client": self.client,
            "notes": self.notes,
            "login": [{"from": d, "hex": b.hex()} for d, b in self.login],
            "commands": [
                {
                    "step": c["step"],
                    "command": c["command"],
                    "parts": [
                        {"client": p["client"].hex(), "server": p["server"].hex()}
                        for p in c["parts"]
                    ],
                }
                for c in self.commands
            ],
        }


class Recorder:
    """Runs steps of one client through a Relay and files their bytes in a Session."""

    def __init__(self, relay: Relay, session: Session) -> None:
        self.relay = relay
        self.session = session
        self.start = relay.mark()

    @contextmanager
    def step(self, label: str, in_login: bool = False) -> Iterator[None]:
        start = self.relay.mark()
        try:
            yield
        except Exception as exc:  # a driver's error answer is part of the capture
            print(f"  {self.session.name}/{label}: {type(exc).__name__}: {exc}", file=sys.stderr)
        end = self.relay.mark()
        self.session.add(label, self.relay.chunks(start, end), in_login)


# --- drivers --------------------------------------------------------------------


def _csv_file() -> str:
    fd, path = tempfile.mkstemp(prefix="proxyd-capture-", suffix=".csv")
    os.write(fd, b"from-file-1\nfrom-file-2\n")
    os.close(fd)
    return path


def load_data_sql(path: str) -> str:
    return f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE cap_t FIELDS TERMINATED BY ',' (v)"


def run_dbapi(
    rec: Recorder, connect: Callable[[], Any], csv_path: str, extra: Callable[[Any], None]
) -> None:
    conn = None
    with rec.step("connect", in_login=True):
        conn = connect()
    if conn is None:
        return
    for label, sql in [*COMMON_SQL, ("load_data_local", load_data_sql(csv_path))]:
        with rec.step(label):
            cur = conn.cursor()
            cur.execute(sql)
            while True:
                if cur.description:
                    cur.fetchall()
                if not cur.nextset():
                    break
            cur.close()
    with rec.step("ping"):
        conn.ping()
    extra(conn)
    with rec.step("quit"):
        conn.close()


def capture_pymysql(host: str, port: int, csv_path: str) -> list[Session]:
    return [
        _pymysql_session(host, port, csv_path, "pymysql", PASSWORD),
        _pymysql_session(host, port, csv_path, "pymysql-bad-password", "wrong"),
    ]


def _pymysql_session(host: str, port: int, csv_path: str, name: str, password: str) -> Session:
    import pymysql

    relay = Relay(host, port)
    session = Session(name, f"PyMySQL {package_version('PyMySQL')}")
    rec = Recorder(relay, session)

    def connect() -> Any:
        return pymysql.connect(
            host="127.0.0.1",
            port=relay.port,
            user=USER,
            password=password,
            database=DATABASE,
            autocommit=True,
            local_infile=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
        )

    def extra(conn: Any) -> None:
        with rec.step("init_db"):
            conn.select_db(DATABASE)

    if password == PASSWORD:
        run_dbapi(rec, connect, csv_path, extra)
    else:
        with rec.step("connect", in_login=True):
            connect()
    relay.close()
    return session


def capture_mysqlclient(host: str, port: int, csv_path: str) -> list[Session]:
    try:
        import MySQLdb
        from MySQLdb.constants import CLIENT as MYCLIENT
    except ImportError:
        print("mysqlclient not installed: skipped", file=sys.stderr)
        return []
    relay = Relay(host, port)
    session = Session(
        "mysqlclient",
        f"mysqlclient {package_version('mysqlclient')}",
        "libmariadb negotiates CLIENT_SESSION_TRACK without switching trackers on",
    )
    rec = Recorder(relay, session)

    def connect() -> Any:
        return MySQLdb.connect(
            host="127.0.0.1",
            port=relay.port,
            user=USER,
            password=PASSWORD,
            database=DATABASE,
            autocommit=True,
            local_infile=1,
            client_flag=MYCLIENT.MULTI_STATEMENTS,
        )

    def extra(conn: Any) -> None:
        with rec.step("statistics"):
            conn.stat()
        with rec.step("init_db"):
            conn.select_db(DATABASE)

    run_dbapi(rec, connect, csv_path, extra)
    relay.close()
    return [session]


def capture_connector(host: str, port: int, csv_path: str) -> list[Session]:
    try:
        import mysql.connector
        from mysql.connector.constants import ClientFlag
    except ImportError:
        print("mysql-connector-python not installed: skipped", file=sys.stderr)
        return []
    client = f"mysql-connector-python {package_version('mysql-connector-python')} (pure Python)"
    sessions = []
    # Asked to start with caching_sha2_password, which MariaDB lacks, it gets an
    # AuthSwitchRequest to mysql_native_password: a real auth switch to parse.
    relay = Relay(host, port)
    session = Session("mysql-connector-auth-switch", client, "auth_plugin=caching_sha2_password")
    rec = Recorder(relay, session)
    with rec.step("connect", in_login=True):
        conn = mysql.connector.connect(
            host="127.0.0.1",
            port=relay.port,
            user=USER,
            password=PASSWORD,
            database=DATABASE,
            use_pure=True,
            auth_plugin="caching_sha2_password",
        )
    with rec.step("quit"):
        conn.close()
    relay.close()
    sessions.append(session)

    relay = Relay(host, port)
    session = Session("mysql-connector", client, "pings before every cursor")
    rec = Recorder(relay, session)

    def connect() -> Any:
        return mysql.connector.connect(
            host="127.0.0.1",
            port=relay.port,
            user=USER,
            password=PASSWORD,
            database=DATABASE,
            autocommit=True,
            use_pure=True,
            allow_local_infile=True,
            client_flags=[ClientFlag.MULTI_STATEMENTS],
        )

    def extra(conn: Any) -> None:
        for label, sql, params in (
            ("prepared_select", "SELECT ? + 1, seq FROM seq_1_to_3 WHERE seq > ?", (10, 1)),
            ("prepared_insert", "INSERT INTO cap_t (v) VALUES (?)", ("p",)),
            ("prepared_error", "SELECT * FROM no_such_table WHERE a = ?", (1,)),
        ):
            with rec.step(label):
                cur = conn.cursor(prepared=True)
                try:
                    cur.execute(sql, params)
                    if cur.description:
                        cur.fetchall()
                finally:
                    cur.close()
        with rec.step("statistics"):
            conn.cmd_statistics()
        with rec.step("reset_connection"):
            conn.cmd_reset_connection()
        with rec.step("init_db"):
            conn.cmd_init_db(DATABASE)

    run_dbapi(rec, connect, csv_path, extra)
    relay.close()
    sessions.append(session)
    return sessions


# --- the raw client ---------------------------------------------------------------

RAW_BASE = (
    CLIENT.LONG_PASSWORD
    | CLIENT.LONG_FLAG
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.MULTI_STATEMENTS
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
    | CLIENT.PLUGIN_AUTH
    | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT.CONNECT_ATTRS
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.LOCAL_FILES
)

TRACKERS_ON = (
    "SET session_track_state_change=ON, session_track_system_variables='*',"
    " session_track_transaction_info='CHARACTERISTICS'"
)


class RawClient:
    """A blocking client on proxyd.protocol; an answer ends after QUIET seconds of silence."""

    def __init__(self, port: int, capabilities: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = PacketReader()
        seq, greeting_payload = self._packet()
        greeting = parse_handshake_v10(greeting_payload)
        self.capabilities = capabilities & greeting.capability_flags
        hello = HandshakeResponse41(
            capability_flags=self.capabilities,
            max_packet_size=1 << 24,
            character_set=45,  # utf8mb4_general_ci
            username=USER.encode(),
            auth_response=auth.scramble_native(PASSWORD.encode(), greeting.auth_plugin_data),
            database=DATABASE.encode(),
            auth_plugin_name=auth.NATIVE_PASSWORD,
            connect_attrs={b"_client_name": b"proxyd-capture"},
        )
        self.sock.sendall(encode_packet(build_handshake_response(hello), seq + 1))
        while True:
            seq, payload = self._packet()
            if payload[:1] == b"\x00":
                break
            if payload[:1] == b"\xfe":
                switch = parse_auth_switch_request(payload)
                data = auth.scramble_native(PASSWORD.encode(), switch.plugin_data)
                self.sock.sendall(encode_packet(data, seq + 1))
                continue
            raise RuntimeError(f"login failed: {payload!r}")
        self.sock.settimeout(QUIET)

    def _packet(self) -> tuple[int, bytes]:
        while True:
            packet = self.reader.next_packet()
            if packet is not None:
                return packet
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("server closed during login")
            self.reader.feed(data)

    def _drain(self) -> bytes:
        got = bytearray()
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                return bytes(got)
            if not data:
                return bytes(got)
            got += data

    def command(self, command: int, argument: bytes = b"") -> bytes:
        self.sock.sendall(encode_packet(bytes((command,)) + argument, 0))
        return self._drain()

    def send(self, payload: bytes, seq: int) -> bytes:
        self.sock.sendall(encode_packet(payload, seq))
        return self._drain()

    def close(self) -> None:
        self.sock.sendall(encode_packet(bytes((COMMAND.COM_QUIT,)), 0))
        time.sleep(0.05)
        self.sock.close()


def first_payload(answer: bytes) -> bytes:
    length = int.from_bytes(answer[:3], "little")
    return answer[4 : 4 + length]


def execute_payload(stmt_id: int, flags: int = 0, params: tuple[int, ...] = ()) -> bytes:
    """COM_STMT_EXECUTE argument with BIGINT parameters."""
    out = struct.pack("<IBI", stmt_id, flags, 1)
    if params:
        out += bytes((len(params) + 7) // 8)  # NULL bitmap: none NULL
        out += b"\x01"  # new_params_bind_flag
        out += b"\x08\x00" * len(params)  # MYSQL_TYPE_LONGLONG, signed
        out += b"".join(struct.pack("<q", p) for p in params)
    return out


def capture_raw(host: str, port: int, name: str, extra_caps: int, everything: bool) -> Session:
    relay = Relay(host, port)
    notes = []
    if extra_caps & CLIENT.SESSION_TRACK:
        notes.append("CLIENT_SESSION_TRACK")
    if extra_caps & CLIENT.DEPRECATE_EOF:
        notes.append("CLIENT_DEPRECATE_EOF")
    session = Session(
        name,
        "raw client (tests/protocol/capture.py)",
        "negotiates " + (", ".join(notes) or "neither SESSION_TRACK nor DEPRECATE_EOF"),
    )
    rec = Recorder(relay, session)
    with rec.step("connect", in_login=True):
        client = RawClient(relay.port, RAW_BASE | extra_caps)
    query = COMMAND.COM_QUERY
    with rec.step("trackers_on"):
        client.command(query, TRACKERS_ON.encode())
    statements = list(COMMON_SQL)
    if everything:
        cols = ", ".join(str(i) for i in range(1, 301))
        statements += [
            ("select_300_columns", f"SELECT {cols}"),
            ("select_long_values", "SELECT REPEAT('y', 300), REPEAT('z', 70000)"),
        ]
    for label, sql in statements:
        with rec.step(label):
            client.command(query, sql.encode())
    with rec.step("load_data_local"):
        answer = client.command(query, load_data_sql("capture.csv").encode())
        if first_payload(answer)[:1] == b"\xfb":
            seq = answer[3] + 1
            client.sock.sendall(encode_packet(b"raw-1\nraw-2\n", seq))
            client.send(b"", seq + 1)
    for label, command, argument in (
        ("ping", COMMAND.COM_PING, b""),
        ("statistics", COMMAND.COM_STATISTICS, b""),
        ("init_db", COMMAND.COM_INIT_DB, DATABASE.encode()),
        ("init_db_error", COMMAND.COM_INIT_DB, b"no_such_db"),
        ("field_list", COMMAND.COM_FIELD_LIST, b"cap_fields\x00"),
        ("field_list_error", COMMAND.COM_FIELD_LIST, b"no_such_table\x00"),
        ("process_info", COMMAND.COM_PROCESS_INFO, b""),
    ):
        with rec.step(label):
            client.command(command, argument)
    # Prepared statements in the binary protocol.
    with rec.step("prepare_select"):
        answer = client.command(
            COMMAND.COM_STMT_PREPARE, b"SELECT ? + 1, seq FROM seq_1_to_3 WHERE seq > ?"
        )
    select_id = parse_stmt_prepare_ok(first_payload(answer)).statement_id
    with rec.step("execute_select"):
        client.command(COMMAND.COM_STMT_EXECUTE, execute_payload(select_id, 0, (10, 1)))
    with rec.step("prepare_set"):
        answer = client.command(COMMAND.COM_STMT_PREPARE, b"SET @z = ?")
    set_id = parse_stmt_prepare_ok(first_payload(answer)).statement_id
    with rec.step("execute_set"):
        client.command(COMMAND.COM_STMT_EXECUTE, execute_payload(set_id, 0, (7,)))
    with rec.step("prepare_error"):
        client.command(COMMAND.COM_STMT_PREPARE, b"SELECT * FROM no_such_table")
    with rec.step("prepare_cursor"):
        answer = client.command(COMMAND.COM_STMT_PREPARE, b"SELECT seq FROM seq_1_to_5")
    cursor_id = parse_stmt_prepare_ok(first_payload(answer)).statement_id
    with rec.step("execute_cursor"):
        client.command(COMMAND.COM_STMT_EXECUTE, execute_payload(cursor_id, 1))  # READ_ONLY
    with rec.step("fetch_some"):
        client.command(COMMAND.COM_STMT_FETCH, struct.pack("<II", cursor_id, 2))
    with rec.step("fetch_rest"):
        client.command(COMMAND.COM_STMT_FETCH, struct.pack("<II", cursor_id, 10))
    with rec.step("stmt_reset"):
        client.command(COMMAND.COM_STMT_RESET, struct.pack("<I", cursor_id))
    with rec.step("execute_unknown_stmt"):
        client.command(COMMAND.COM_STMT_EXECUTE, execute_payload(9999))
    with rec.step("stmt_close"):
        client.command(COMMAND.COM_STMT_CLOSE, struct.pack("<I", cursor_id))
    with rec.step("reset_connection"):
        client.command(COM_RESET_CONNECTION)
    with rec.step("quit"):
        client.close()
    relay.close()
    return session


# --- main -----------------------------------------------------------------------


def setup(host: str, port: int) -> str:
    import pymysql

    conn = pymysql.connect(host=host, port=port, user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        for sql in SETUP_SQL:
            cur.execute(sql)
        cur.execute("SELECT VERSION()")
        version = str(cur.fetchone()[0])
    conn.close()
    return version


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3306)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    version = setup(args.host, args.port)
    csv_path = _csv_file()
    sessions: list[Session] = []
    try:
        sessions += capture_pymysql(args.host, args.port, csv_path)
        sessions += capture_mysqlclient(args.host, args.port, csv_path)
        sessions += capture_connector(args.host, args.port, csv_path)
        for name, caps, everything in (
            ("raw", 0, False),
            ("raw-track", CLIENT.SESSION_TRACK, True),
            ("raw-deprecate-eof", CLIENT.DEPRECATE_EOF, False),
            ("raw-track-deprecate-eof", CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF, True),
        ):
            sessions.append(capture_raw(args.host, args.port, name, caps, everything))
    finally:
        os.unlink(csv_path)
    data = {
        "generated_by": "tests/protocol/capture.py",
        "server_version": version,
        "user": USER,
        "password": PASSWORD,
        "sessions": [s.as_json() for s in sessions],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    for s in sessions:
        print(f"{s.name}: {len(s.login)} login runs, {len(s.commands)} commands", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
