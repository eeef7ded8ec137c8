"""The session core, sans I/O: client bytes and server-connection events in, actions out.

No socket, no event loop, no server: a client logs in through proxyd's own sans-IO client
login, commands are fed as bytes, the "server" answers by feeding bytes to the core's
response tracker, and the test reads what the core sent and asked for. Orders of events
that are races on real sockets (a server connection's close, its callback, the client's
next command) are played here one by one.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymysql.constants import CLIENT, COMMAND, ER, SERVER_STATUS

from proxyd.config import parse_config
from proxyd.protocol.login import ClientLogin, LoginRefused
from proxyd.protocol.messages import OkPacket, build_ok, parse_err
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.session.base import State
from proxyd.session.core import SessionCore
from proxyd.session.guard import LoginGuard
from proxyd.session.login import DEFAULT_SERVER_VERSION
from proxyd.stats import Stats

CONFIG = {
    "listen": "127.0.0.1:6033",
    "backend": {"address": "127.0.0.1:3306"},
    "users": [{"name": "app", "password": "apppw"}],
}
CLIENT_CAPS = (
    CLIENT.LONG_PASSWORD
    | CLIENT.PROTOCOL_41
    | CLIENT.SECURE_CONNECTION
    | CLIENT.PLUGIN_AUTH
    | CLIENT.TRANSACTIONS
    | CLIENT.MULTI_RESULTS
)
SERVER_CAPS = CLIENT_CAPS | CLIENT.SESSION_TRACK
IN_TRANS = SERVER_STATUS.SERVER_STATUS_IN_TRANS | SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
AUTOCOMMIT = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT


class Server:
    mariadb_capabilities = 0
    default_collations: dict[str, int] = {}
    max_allowed_packet = 16 << 20


class Host:
    """The daemon as the core sees it."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.config = parse_config(CONFIG, "test.yaml")
        self.sessions: set[Any] = set()
        self.server = Server()
        self.pools = {"app": object()}
        self.accepting = True
        self.paused = False
        self.holding = False
        self.primary_missing = False
        self.login_guard = LoginGuard(3, 1.0, 30.0)
        self.logins_in_progress = 0
        self.accounts = None
        self.router = None
        self.rsa_key = None

    def user_config(self, name: str) -> Any:
        return self.config.users.get(name)

    def pool_for(self, user: Any) -> Any:
        return self.pools[user.name]

    async def wait_unpaused(self) -> None:
        return None

    def server_version(self) -> bytes:
        return DEFAULT_SERVER_VERSION

    def server_charset(self) -> int:
        return 45


class ServerConnection:
    """A server connection's books, as the core reads and notes them."""

    def __init__(self) -> None:
        self.closed = False
        self.close_reason = ""
        self.thread_id = 7
        self.busy = False
        self.forwarding = False
        self.charset = 45
        self.schema: bytes | None = None
        self.vars: dict[bytes, bytes] = {}
        self.multi_statements = False
        self.last_insert_id = 0
        self.needs_reset = False
        self.holder: object = None
        self.last_session: object = None

    def statement_id(self, sql: bytes) -> int | None:
        return None

    def remember_statement(self, sql: bytes, stmt_id: int) -> None:
        pass

    def forget_statement(self, sql: bytes | None = None) -> None:
        pass

    def close(self, reason: str = "closed") -> None:
        self.closed = True
        self.close_reason = reason


class Core(SessionCore):
    """The core with its actions recorded instead of done."""

    def __init__(self) -> None:
        super().__init__(Host())
        self.out = bytearray()
        self.actions: list[tuple[Any, ...]] = []
        self.server = ServerConnection()

    def send(self, data: bytes) -> None:
        self.out += data

    def _close(self) -> None:
        self.actions.append(("close",))
        self._to(State.CLOSED)

    def _run(self) -> None:
        # As the adapter does when a server connection in this session's state is at hand.
        self.actions.append(("run", self._command))
        if self.backend is None:
            self._hold(self.server)
        self._to(State.IN_COMMAND)
        self._tracker = ResponseTracker(self._command[0], SERVER_CAPS, self.capabilities)

    def _rerun(self, pause: float) -> None:
        self.actions.append(("rerun",))

    def _release_backend(self, reset: bool) -> None:
        self.actions.append(("release", reset))
        self.backend = None

    def _answer_later(self, pause: float, payload: bytes, seq: int) -> None:
        self._finish_local(payload, seq)

    # -- the test's side ---------------------------------------------------------

    def sent(self) -> list[bytes]:
        """Payloads the core sent the client since the last call."""
        reader = PacketReader()
        reader.feed(bytes(self.out))
        self.out.clear()
        payloads = []
        while (packet := reader.next_packet()) is not None:
            payloads.append(packet[1])
        return payloads

    def command(self, payload: bytes) -> None:
        self.receive_data(encode_packet(payload, 0))

    def query(self, sql: str) -> None:
        self.command(bytes([COMMAND.COM_QUERY]) + sql.encode())

    def server_says(self, *payloads: bytes) -> None:
        """The server's answer to the command in flight, streamed whole."""
        tracker = self._tracker
        assert tracker is not None
        tracker.feed(b"".join(encode_packet(p, i + 1) for i, p in enumerate(payloads)))
        self.out += b"".join(tracker.take_output())
        self._answered(tracker)

    def server_lost(self, reason: str = "server_closed") -> None:
        """The server connection closes, and its callback runs."""
        server = self.server
        server.close(reason)
        self.backend_lost(server, reason)  # type: ignore[arg-type]
        self.server = ServerConnection()


def ok(status: int = AUTOCOMMIT) -> bytes:
    return build_ok(OkPacket(status_flags=status), SERVER_CAPS)


def logged_in(password: bytes = b"apppw") -> Core:
    core = Core()
    client = ClientLogin(b"app", password, 45, None, CLIENT_CAPS)
    greeting = core.greeting()
    core.receive_data(encode_packet(client.greeting(greeting[4:]), 1))
    for payload in core.sent():
        for answer in client.receive(payload):
            core.receive_data(encode_packet(answer, 3))
    assert client.done
    return core


def error_code(payload: bytes) -> int:
    assert payload[:1] == b"\xff", payload
    return parse_err(payload).error_code


def test_login_then_ping_is_answered_without_a_server() -> None:
    core = logged_in()
    assert core.state is State.IDLE
    core.command(bytes([COMMAND.COM_PING]))
    assert [p[:1] for p in core.sent()] == [b"\x00"]
    assert core.actions == []


def test_a_wrong_password_gets_1045_and_the_connection_closes() -> None:
    with pytest.raises(LoginRefused, match="1045"):
        logged_in(b"wrong")


def test_a_query_runs_on_a_server_connection_and_goes_back_after_the_answer() -> None:
    core = logged_in()
    core.query("SELECT 1")
    assert core.actions == [("run", b"\x03SELECT 1")]
    core.server_says(ok())
    assert core.sent() == [ok()]
    assert core.actions[-1] == ("release", False)
    assert core.state is State.IDLE


def test_inside_a_transaction_the_server_connection_is_kept() -> None:
    core = logged_in()
    core.query("BEGIN")
    core.server_says(ok(IN_TRANS))
    assert ("release", False) not in core.actions
    assert core.in_transaction
    core.query("COMMIT")
    core.server_says(ok())
    assert core.actions[-1] == ("release", False)


def test_pipelined_commands_wait_for_the_answer_before() -> None:
    core = logged_in()
    core.receive_data(
        encode_packet(b"\x03SELECT 1", 0) + encode_packet(bytes([COMMAND.COM_PING]), 0)
    )
    assert core.actions == [("run", b"\x03SELECT 1")]
    assert core.sent() == []  # the ping's OK must not overtake the query's answer
    core.server_says(ok())
    assert len(core.sent()) == 2


def in_transaction() -> Core:
    core = logged_in()
    core.query("BEGIN")
    core.server_says(ok(IN_TRANS))
    core.sent()
    return core


@pytest.mark.parametrize("order", ["callback first", "command first"])
def test_a_transaction_never_goes_on_on_another_server_connection(order: str) -> None:
    core = in_transaction()
    runs = len(core.actions)
    if order == "callback first":
        core.server_lost()
    else:
        core.server.close("killed")  # closed, its callback not delivered yet
    core.query("INSERT INTO t VALUES (1)")
    (answer,) = core.sent()
    assert error_code(answer) == ER.LOCK_DEADLOCK
    assert len(core.actions) == runs  # the INSERT ran nowhere
    if order == "command first":
        core.backend_lost(core.server, "killed")  # type: ignore[arg-type]
        assert core.sent() == []  # the late callback answers nothing more
    core.query("INSERT INTO t VALUES (2)")
    assert core.actions[-1] == ("run", b"\x03INSERT INTO t VALUES (2)")  # a new start


def test_a_rollback_after_the_loss_is_answered_ok() -> None:
    core = in_transaction()
    core.server_lost()
    core.query("ROLLBACK")
    assert [p[:1] for p in core.sent()] == [b"\x00"]


@pytest.mark.parametrize(
    ("sql", "code", "text"),
    [
        ("INSERT INTO t VALUES (1)", ER.LOCK_DEADLOCK, b"rolled back"),
        ("COMMIT", ER.UNKNOWN_ERROR, b"may or may not have been applied"),
    ],
)
def test_a_statement_lost_in_flight_in_a_transaction(sql: str, code: int, text: bytes) -> None:
    core = in_transaction()
    core.query(sql)
    core.server_lost()
    (answer,) = core.sent()
    assert error_code(answer) == code
    assert text in answer
    assert ("rerun",) not in core.actions
    assert core.state is State.IDLE and not core.in_transaction


def test_a_read_lost_before_any_answer_is_run_again_unseen() -> None:
    core = logged_in()
    core.query("SELECT 1")
    core.server_lost()
    assert core.sent() == []
    assert core.actions[-1] == ("rerun",)


def test_a_write_lost_before_any_answer_is_not_run_again() -> None:
    core = logged_in()
    core.query("UPDATE t SET a = 1")
    core.server_lost()
    (answer,) = core.sent()
    assert b"may or may not have been applied" in answer
    assert ("rerun",) not in core.actions
    core.query("SELECT 1")
    assert core.actions[-1] == ("run", b"\x03SELECT 1")


def test_user_variables_lost_while_idle_are_named_to_the_next_command() -> None:
    core = logged_in()
    core.query("SET @a = 1")
    core.server_says(ok())
    core.sent()
    assert core.pinned
    core.server_lost()
    core.query("SELECT @a")
    (answer,) = core.sent()
    assert error_code(answer) == ER.UNKNOWN_ERROR
    assert b"user variable @a " in answer and b"not run" in answer
    assert core.daemon.stats.counters["session_state_lost"] == 1


def test_locks_and_temporary_tables_lost_are_named() -> None:
    core = logged_in()
    for sql in (
        "SELECT GET_LOCK('job_7', 0)",
        "SELECT GET_LOCK(CONCAT('a', 'b'), 0)",
        "CREATE TEMPORARY TABLE scratch (a INT)",
        "SET @x := 1, @y = 2",
    ):
        core.query(sql)
        core.server_says(ok())
    core.sent()
    core.server_lost()
    core.query("SELECT * FROM scratch")
    (answer,) = core.sent()
    text = parse_err(answer).message
    assert b"locks 'job_7', 1 more GET_LOCK lock(s)" in text, text
    assert b"temporary table scratch" in text, text
    assert b"user variables @x, @y" in text, text
    assert b"not run" in text, text
    core.query("SELECT * FROM scratch")
    assert core.actions[-1] == ("run", b"\x03SELECT * FROM scratch")  # told once


def test_a_command_with_a_wrong_sequence_id_closes_the_client() -> None:
    core = logged_in()
    core.receive_data(encode_packet(b"\x03SELECT 1", 5))
    (answer,) = core.sent()
    assert error_code(answer) == ER.NET_PACKETS_OUT_OF_ORDER
    assert core.actions == [("close",)]


def test_a_refused_command_is_answered_and_the_session_goes_on() -> None:
    core = logged_in()
    core.command(bytes([COMMAND.COM_BINLOG_DUMP]) + b"\x00" * 10)
    (answer,) = core.sent()
    assert error_code(answer) == ER.UNKNOWN_COM_ERROR
    core.query("SELECT 1")
    assert core.actions == [("run", b"\x03SELECT 1")]


def test_set_names_takes_the_servers_default_collation_not_a_library_table() -> None:
    core = logged_in()
    # As MySQL 8 or MariaDB 11 would report it: utf8mb4's default is not utf8mb4_general_ci.
    core.daemon.server.default_collations = {"utf8mb4": 224}  # utf8mb4_unicode_ci
    core.query("SET NAMES utf8mb4")
    assert [p[:1] for p in core.sent()] == [b"\x00"]  # answered here, moves with the session
    assert core.cs.charset == 224
    core.query("SET NAMES latin1")  # not learned: the library's table
    core.sent()
    assert core.cs.charset == 8
    core.query("SET NAMES utf16")
    (answer,) = core.sent()
    assert error_code(answer) == ER.WRONG_VALUE_FOR_VAR
    assert core.actions == []
