"""Stored procedures through proxyd answer as the server does, and never hang (issue 9).

Each case runs on a connection straight to the test MariaDB and on one through
proxyd, with the same driver: the result sets, the warnings, the error (code,
SQLSTATE, message) and the next statement on the same connection must be the
same. Reads time out after READ_TIMEOUT seconds, so an answer whose end proxyd
misses fails fast (2013) instead of hanging the test.

A procedure that has used a cursor leaves SERVER_STATUS_CURSOR_EXISTS in the
status of every packet after it; proxyd once took that for a cursor opened by
COM_STMT_EXECUTE and stopped reading after the column definitions. Those
procedures are run in the text protocol (PyMySQL, mysql-connector) and in the
binary one, where mysql-connector's prepared cursor cannot be used: it too
reads the flag as its own cursor and sends COM_STMT_FETCH. A small raw client
does the binary protocol here, reading answers by its own rules, and compares
them byte for byte.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest
from pymysql._auth import scramble_native_password
from pymysql.constants import CLIENT, SERVER_STATUS

from tests.faults.rawclient import parse_err, read_packet, salt_of
from tests.integration.drivers import connector
from tests.support.mariadb import MariaDBServer
from tests.support.proxy import ProxydProcess

READ_TIMEOUT = 10

PROCEDURES = [
    "CREATE OR REPLACE TABLE t_cursor (a INT)",
    "CREATE OR REPLACE TABLE t_rows (a INT)",
    "INSERT INTO t_rows VALUES (1), (2), (3)",
    "CREATE OR REPLACE TABLE t_load (a INT, b VARCHAR(10))",
    # The issue's procedure: the handler's SELECT, then ERROR 1329 (02000).
    """CREATE OR REPLACE PROCEDURE p2() BEGIN
        DECLARE x INT; DECLARE cur CURSOR FOR SELECT * FROM t_cursor;
        DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN SELECT 'before RESIGNAL'; RESIGNAL; END;
        OPEN cur; FETCH cur INTO x; CLOSE cur; END""",
    # A cursor read to its end, then two result sets that carry its flags, then the OK.
    """CREATE OR REPLACE PROCEDURE p_cursor_loop() BEGIN
        DECLARE done INT DEFAULT 0; DECLARE x INT;
        DECLARE cur CURSOR FOR SELECT a FROM t_rows ORDER BY a;
        DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1;
        OPEN cur; l: LOOP FETCH cur INTO x; IF done THEN LEAVE l; END IF; END LOOP; CLOSE cur;
        SELECT x, 'after'; SELECT a FROM t_rows ORDER BY a; END""",
    # A result set while the cursor is open.
    """CREATE OR REPLACE PROCEDURE p_open() BEGIN
        DECLARE x INT; DECLARE cur CURSOR FOR SELECT a FROM t_rows ORDER BY a;
        OPEN cur; FETCH cur INTO x; SELECT x, 'cursor open'; CLOSE cur; END""",
    """CREATE OR REPLACE PROCEDURE p_signal() BEGIN
        SELECT 1 AS a;
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'custom failure', MYSQL_ERRNO = 1644; END""",
    # An EXIT handler that catches an error and answers with a result set instead.
    """CREATE OR REPLACE PROCEDURE p_handler() BEGIN
        DECLARE EXIT HANDLER FOR SQLEXCEPTION
        BEGIN GET DIAGNOSTICS CONDITION 1 @p_errno = MYSQL_ERRNO; SELECT 'caught', @p_errno; END;
        SELECT 'first'; SELECT * FROM no_such_table; END""",
    # RESIGNAL with a new SQLSTATE and message from a handler that selected first.
    """CREATE OR REPLACE PROCEDURE p_resignal() BEGIN
        DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN
          SELECT 'handling';
          RESIGNAL SQLSTATE '45001' SET MESSAGE_TEXT = 'resignalled', MYSQL_ERRNO = 1645; END;
        SELECT 'before'; DROP TABLE no_such_table_either; SELECT 'not reached'; END""",
    # Results and recursion: every level selects, the last one is too deep (1456).
    """CREATE OR REPLACE PROCEDURE p_rec(n INT) BEGIN SELECT n; CALL p_rec(n + 1); END""",
    """CREATE OR REPLACE PROCEDURE p_warn() BEGIN
        SELECT 1/0 AS w; SELECT CAST('x' AS INT) AS w2; END""",
    """CREATE OR REPLACE PROCEDURE p_nested() BEGIN CALL p_cursor_loop(); CALL p2(); END""",
    """CREATE OR REPLACE PROCEDURE p_out(IN i INT, OUT o INT, INOUT io VARCHAR(20)) BEGIN
        SELECT i AS in_value; SET o = i * 2; SET io = CONCAT(io, '!'); END""",
    """CREATE OR REPLACE PROCEDURE p_out_cursor(OUT o INT) BEGIN
        DECLARE x INT DEFAULT -1; DECLARE cur CURSOR FOR SELECT a FROM t_cursor;
        DECLARE CONTINUE HANDLER FOR NOT FOUND SET o = 42;
        OPEN cur; FETCH cur INTO x; CLOSE cur; END""",
]

# Statements answered with several results, an error after results, warnings, cursors.
TEXT_CASES = {
    "cursor_handler_resignal": "CALL p2()",
    "cursor_loop_then_results": "CALL p_cursor_loop()",
    "result_with_cursor_open": "CALL p_open()",
    "signal_after_results": "CALL p_signal()",
    "exit_handler": "CALL p_handler()",
    "resignal_new_state": "CALL p_resignal()",
    "recursion_too_deep": "SET STATEMENT max_sp_recursion_depth = 3 FOR CALL p_rec(1)",
    "recursion_not_allowed": "CALL p_rec(1)",
    "warnings": "CALL p_warn()",
    "nested_calls": "CALL p_nested()",
    "anonymous_block_with_cursor": (
        "BEGIN NOT ATOMIC DECLARE x INT; DECLARE cur CURSOR FOR SELECT a FROM t_cursor;"
        " DECLARE CONTINUE HANDLER FOR NOT FOUND SELECT 'not found'; OPEN cur;"
        " FETCH cur INTO x; CLOSE cur; END"
    ),
    "procedure_analyse": "SELECT a FROM t_rows PROCEDURE ANALYSE()",
    "multi_statement_around_a_failing_call": "SELECT 1; CALL p_cursor_loop(); CALL p2(); SELECT 2",
    "multi_statement_ok_and_results": "SET @v = 5; CALL p_open(); SELECT @v",
}


@pytest.fixture(scope="module")
def procedures(mariadb: MariaDBServer) -> MariaDBServer:
    with mariadb.connect(database="test") as conn, conn.cursor() as cur:
        for sql in PROCEDURES:
            cur.execute(sql)
    return mariadb


@pytest.fixture
def proxy(procedures: MariaDBServer, proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd()


Outcome = tuple[list[Any], Any]


def both(
    proxy: ProxydProcess, server: MariaDBServer, run: Callable[[str, int], Outcome]
) -> Outcome:
    """The outcome straight from the server, after checking proxyd's is the same."""
    direct = run(server.host, server.port)
    through = run(proxy.host, proxy.port)
    assert through == direct
    return direct


def _next_statement_works(cur: Any) -> None:
    # The answer was read to its end, no further: the connection goes on.
    cur.execute("SELECT 42")
    assert [tuple(r) for r in cur.fetchall()] == [(42,)]


def pymysql_outcome(sql: str, **kw: Any) -> Callable[[str, int], Outcome]:
    def run(host: str, port: int) -> Outcome:
        conn = pymysql.connect(
            host=host,
            port=port,
            user="app",
            password="apppw",
            database="test",
            autocommit=True,
            client_flag=CLIENT.MULTI_STATEMENTS,
            read_timeout=READ_TIMEOUT,
            write_timeout=READ_TIMEOUT,
            **kw,
        )
        results: list[Any] = []
        error = None
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute(sql)
                    while True:
                        result = cur._result  # warnings and status of this result
                        assert result is not None
                        rows = [tuple(r) for r in cur.fetchall()] if cur.description else None
                        results.append((rows, cur.rowcount, result.warning_count))
                        if not cur.nextset():
                            break
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] in (2013, 2006):
                        raise AssertionError(f"no answer: {exc}") from exc
                    error = exc.args
                except pymysql.err.MySQLError as exc:
                    error = exc.args
                _next_statement_works(cur)
        finally:
            conn.close()
        return results, error

    return run


def _connector_run(
    sql: str, params: tuple[Any, ...] | None
) -> Callable[[str, int], Outcome]:
    """mysql-connector, a text cursor (``params`` None) or a prepared one: every result set
    of ``sql`` with its warning count, or the error; then a next statement must work."""

    def run(host: str, port: int) -> Outcome:
        conn = connector(host, port, read_timeout=READ_TIMEOUT, connection_timeout=READ_TIMEOUT)
        results: list[Any] = []
        error = None
        try:
            cur = conn.cursor(prepared=params is not None)
            try:
                cur.execute(sql, params or ())
                while True:
                    rows = cur.fetchall() if cur.with_rows else None
                    results.append((rows, cur.warning_count))
                    if not cur.nextset():
                        break
            except mysql.connector.errors.OperationalError as exc:
                if exc.errno in (2013, 2055):
                    raise AssertionError(f"no answer: {exc}") from exc
                error = (exc.errno, exc.sqlstate, exc.msg)
            except mysql.connector.Error as exc:
                error = (exc.errno, exc.sqlstate, exc.msg)
            cur.close()
            _next_statement_works(conn.cursor())
        finally:
            conn.close()
        return results, error

    return run


def connector_outcome(sql: str) -> Callable[[str, int], Outcome]:
    return _connector_run(sql, None)


# --- text protocol ------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_text_protocol_pymysql(case: str, procedures: MariaDBServer, proxy: ProxydProcess) -> None:
    both(proxy, procedures, pymysql_outcome(TEXT_CASES[case]))


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_text_protocol_connector(
    case: str, procedures: MariaDBServer, proxy: ProxydProcess
) -> None:
    both(proxy, procedures, connector_outcome(TEXT_CASES[case]))


def test_the_issues_procedure(procedures: MariaDBServer, proxy: ProxydProcess) -> None:
    results, error = both(proxy, procedures, connector_outcome("CALL p2()"))
    assert results == [([("before RESIGNAL",)], 0)]
    assert error == (1329, "02000", "No data - zero rows fetched, selected, or processed")


def test_recursion_error_after_results(procedures: MariaDBServer, proxy: ProxydProcess) -> None:
    results, error = both(proxy, procedures, connector_outcome(TEXT_CASES["recursion_too_deep"]))
    assert [rows for rows, _ in results] == [[(1,)], [(2,)], [(3,)], [(4,)]]
    assert error[:2] == (1456, "HY000")


def test_local_infile_between_results(
    procedures: MariaDBServer, proxy: ProxydProcess, tmp_path: Path
) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("1\tone\n2\ttwo\n")
    sql = (
        f"SELECT 1; LOAD DATA LOCAL INFILE '{data}' INTO TABLE t_load;"
        " CALL p_open(); SELECT COUNT(*) FROM t_load"
    )
    outcome = pymysql_outcome(sql, local_infile=True)

    def run(host: str, port: int) -> Outcome:
        procedures.execute("TRUNCATE TABLE test.t_load")
        return outcome(host, port)

    results, error = both(proxy, procedures, run)
    assert error is None
    assert results[-1][0] == [(2,)]


# --- binary protocol: mysql-connector's prepared cursor ----------------------------------------


def prepared_outcome(sql: str, params: tuple[Any, ...]) -> Callable[[str, int], Outcome]:
    return _connector_run(sql, params)


# The prepared cursor reads one result set and the answer's end, no more (a second result
# set breaks it, on the server as through proxyd): procedures with more are the raw
# client's, below.
PREPARED_CASES = {
    "signal_after_results": ("CALL p_signal()", ()),
    "recursion_not_allowed": ("CALL p_rec(?)", (1,)),
}


@pytest.mark.parametrize("case", sorted(PREPARED_CASES))
def test_binary_protocol_connector(
    case: str, procedures: MariaDBServer, proxy: ProxydProcess
) -> None:
    both(proxy, procedures, prepared_outcome(*PREPARED_CASES[case]))


def test_prepared_call_with_out_params_connector(
    procedures: MariaDBServer, proxy: ProxydProcess
) -> None:
    results, error = both(proxy, procedures, prepared_outcome("CALL p_out(?, ?, ?)", (21, 0, "x")))
    assert error is None and results[0] == ([(21,)], 0)


# --- binary protocol: a raw client, byte for byte -------------------------------------------------

RAW_CAPABILITIES = (
    CLIENT.LONG_PASSWORD
    | CLIENT.PROTOCOL_41
    | CLIENT.TRANSACTIONS
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.CONNECT_WITH_DB
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
)
MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS


class BinaryClient:
    """Prepares and executes statements with packets of its own, one answer at a time.

    It knows where an answer ends from what it asked (never a cursor), not from the
    status flags proxyd once misread, and reads nothing past that end.
    """

    def __init__(self, host: str, port: int, deprecate_eof: bool) -> None:
        self.deprecate_eof = deprecate_eof
        self.sock = socket.create_connection((host, port), timeout=READ_TIMEOUT)
        _, greeting = read_packet(self.sock)
        caps = RAW_CAPABILITIES | (CLIENT.DEPRECATE_EOF if deprecate_eof else 0)
        scramble = scramble_native_password(b"apppw", salt_of(greeting))
        hello = (
            struct.pack("<IIB23x", caps, 1 << 24, 45)
            + b"app\0"
            + bytes((len(scramble),))
            + scramble
            + b"test\0mysql_native_password\0"
        )
        self.sock.sendall(len(hello).to_bytes(3, "little") + b"\x01" + hello)
        _, answer = read_packet(self.sock)
        assert answer[:1] == b"\x00", answer

    def send(self, payload: bytes) -> None:
        self.sock.sendall(len(payload).to_bytes(3, "little") + b"\x00" + payload)

    def packet(self, into: list[bytes]) -> bytes:
        seq, payload = read_packet(self.sock)
        into.append(len(payload).to_bytes(3, "little") + bytes((seq,)) + payload)
        return payload

    def prepare(self, sql: bytes) -> int:
        self.send(b"\x16" + sql)
        got: list[bytes] = []
        ok = self.packet(got)
        assert parse_err(ok) is None, parse_err(ok)
        statement_id, columns, params = struct.unpack("<IHH", ok[1:9])
        eof = 0 if self.deprecate_eof else 1
        for _ in range((params + eof if params else 0) + (columns + eof if columns else 0)):
            self.packet(got)
        return int(statement_id)

    def execute(self, statement_id: int, params: tuple[int, ...] = ()) -> list[bytes]:
        """The answer's packets, as sent; BIGINT parameters."""
        payload = b"\x17" + struct.pack("<IBI", statement_id, 0, 1)
        if params:
            payload += bytes((len(params) + 7) // 8) + b"\x01" + b"\x08\x00" * len(params)
            payload += b"".join(struct.pack("<q", p) for p in params)
        self.send(payload)
        got: list[bytes] = []
        while True:
            first = self.packet(got)
            if first[:1] in (b"\x00", b"\xff"):
                if first[:1] == b"\xff" or not self._status_of_ok(first) & MORE_RESULTS:
                    return got
                continue
            for _ in range(first[0]):  # column definitions (fewer than 251 here)
                self.packet(got)
            if not self.deprecate_eof:
                self.packet(got)
            while True:
                row = self.packet(got)
                if row[:1] == b"\xff":
                    return got
                if row[:1] == b"\xfe" and len(row) < 0xFFFFFF:
                    status = self._status_of_ok(row) if self.deprecate_eof else row[3] | row[4] << 8
                    break
            if not status & MORE_RESULTS:
                return got

    @staticmethod
    def _status_of_ok(payload: bytes) -> int:
        pos = 1
        for _ in range(2):  # affected rows, last insert id: length-encoded
            first = payload[pos]
            pos += {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(first, 1)
        return int(payload[pos] | payload[pos + 1] << 8)

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.3)
        try:
            return not self.sock.recv(1)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(READ_TIMEOUT)

    def close(self) -> None:
        self.send(b"\x01")
        self.sock.close()


BINARY_CASES = {
    "cursor_handler_resignal": (b"CALL p2()", ()),
    "cursor_loop_then_results": (b"CALL p_cursor_loop()", ()),
    "result_with_cursor_open": (b"CALL p_open()", ()),
    "out_params_after_a_cursor": (b"CALL p_out_cursor(?)", (0,)),
    "out_params": (b"CALL p_out(?, ?, ?)", (7, 0, 0)),
    "nested_calls": (b"CALL p_nested()", ()),
    "signal_after_results": (b"CALL p_signal()", ()),
    "exit_handler": (b"CALL p_handler()", ()),
    "resignal_new_state": (b"CALL p_resignal()", ()),
    "warnings": (b"CALL p_warn()", ()),
    "recursion_too_deep": (b"SET STATEMENT max_sp_recursion_depth = 3 FOR CALL p_rec(?)", (1,)),
}


@pytest.fixture(params=[False, True], ids=["eof", "deprecate_eof"])
def binary_client(
    request: pytest.FixtureRequest, procedures: MariaDBServer, proxy: ProxydProcess
) -> Iterator[Callable[[str, int], BinaryClient]]:
    clients: list[BinaryClient] = []

    def open_client(host: str, port: int) -> BinaryClient:
        client = BinaryClient(host, port, deprecate_eof=request.param)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.mark.parametrize("case", sorted(BINARY_CASES))
def test_binary_protocol_byte_for_byte(
    case: str,
    procedures: MariaDBServer,
    proxy: ProxydProcess,
    binary_client: Callable[[str, int], BinaryClient],
) -> None:
    sql, params = BINARY_CASES[case]
    answers = []
    for host, port in ((procedures.host, procedures.port), (proxy.host, proxy.port)):
        client = binary_client(host, port)
        statement_id = client.prepare(sql)
        answer = client.execute(statement_id, params)
        assert client.nothing_more(), "bytes after the answer"
        # Twice: a statement executed again on the same connection, answered in full.
        assert client.execute(statement_id, params) == answer
        answers.append(answer)
    direct, through = answers
    assert through == direct
    if case.startswith("out_params"):
        # The OUT parameters come as their own result set, flagged SERVER_PS_OUT_PARAMS.
        assert any(
            p[4:5] == b"\xfe" and len(p) < 20 and int.from_bytes(p[7:9], "little") & 0x1000
            for p in direct
        )
