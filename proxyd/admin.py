"""The admin console's wire: a small MySQL server on ``admin.listen`` for operators.

Any MySQL client works (``mariadb -h127.0.0.1 -P6032 -uadmin -p``, PyMySQL...). It logs
in with ``admin.user``/``admin.password`` (mysql_native_password, checked as the frontend
checks application users) and then sends COM_QUERY, one statement at a time; the statements
and their answers (SHOW POOLS, RELOAD, PAUSE...) are ``proxyd.console``'s. COM_PING,
COM_INIT_DB and COM_RESET_CONNECTION are acknowledged; any other command is an ERR.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from proxyd.console import ER_UNKNOWN_ERROR, Console, Done, Failed, Operated, ResultSet, normalise
from proxyd.protocol import auth
from proxyd.protocol.constants import (
    CLIENT,
    CLIENT_41_AUTH,
    COM_RESET_CONNECTION,
    COMMAND,
    SERVER_STATUS,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import Outcome, ServerLogin
from proxyd.protocol.messages import (
    HandshakeV10,
    OkPacket,
    build_err,
    build_handshake_v10,
    build_ok,
    is_ssl_request,
    parse_handshake_response,
)
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.resultset import encode_text_result


class Host(Operated, Protocol):
    """What an admin connection needs of the running daemon: the console's view of it,
    and the set of admin connections to close at shutdown."""

    admin_sessions: set[AdminSession]


__all__ = ["AdminSession"]

log = logging.getLogger("proxyd.admin")

ADMIN_CAPABILITIES = CLIENT_41_AUTH | CLIENT.LONG_PASSWORD | CLIENT.CONNECT_WITH_DB
ADMIN_CAPABILITIES |= CLIENT.INTERACTIVE | CLIENT.IGNORE_SIGPIPE | CLIENT.DEPRECATE_EOF
# Clients read the leading number as the server's version; MariaDB's 5.5.5- prefix keeps
# old clients from mistaking 10.x for something ancient.
ADMIN_SERVER_VERSION = b"5.5.5-10.11.0-proxyd-admin"
STATUS = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT

ER_HANDSHAKE = 1043
ER_ACCESS_DENIED = 1045
ER_UNKNOWN_COM = 1047


class AdminSession(asyncio.Protocol):
    """One admin connection: log in, then one statement at a time."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self.console = Console(daemon)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.capabilities = 0
        self.authenticated = False
        self.closed = False
        self._reader = PacketReader()
        self._auth = ServerLogin(self._password_for)
        self._auth_switched = False
        self._user = ""
        self._busy = False
        self._task: asyncio.Task[None] | None = None  # the statement running, kept alive
        self._login_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        self.daemon.admin_sessions.add(self)
        self._login_timer = asyncio.get_running_loop().call_later(
            self.daemon.config.client_login_timeout, self._login_timed_out
        )
        greeting = HandshakeV10(
            server_version=ADMIN_SERVER_VERSION,
            connection_id=0,
            auth_plugin_data=self._auth.scramble,
            capability_flags=ADMIN_CAPABILITIES,
            character_set=33,  # utf8_general_ci
            status_flags=STATUS,
            auth_plugin_name=auth.NATIVE_PASSWORD,
        )
        self._write(build_handshake_v10(greeting), 0)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            self._pump()
        except ProtocolError as exc:
            log.warning("admin %s: protocol error: %s; closing", self.peer, exc)
            self._refuse(ER_HANDSHAKE, f"proxyd: malformed packet: {exc}", 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()

    def goodbye(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._closed()

    def _closed(self) -> None:
        self.closed = True
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self.daemon.admin_sessions.discard(self)

    def _pump(self) -> None:
        while not self._busy and not self.closed:
            packet = self._reader.next_packet()
            if packet is None:
                return
            seq, payload = packet
            if not self.authenticated:
                self._authenticate(seq, payload)
            elif payload:
                self._command(payload)
            else:
                raise ProtocolError("empty command packet")

    # -- connection phase --------------------------------------------------------------

    def _authenticate(self, seq: int, payload: bytes) -> None:
        if self._auth_switched:
            self._authenticated(self._auth.switched(payload, seq))
            return
        if is_ssl_request(payload):
            self._refuse(ER_HANDSHAKE, "proxyd: TLS is not enabled on the admin listener", seq + 1)
            return
        response = parse_handshake_response(payload)
        self.capabilities = response.capability_flags & ADMIN_CAPABILITIES
        self._authenticated(
            self._auth.begin(
                response.username, response.auth_plugin_name, response.auth_response, seq
            )
        )

    def _password_for(self, user: bytes) -> bytes | None:
        admin = self.daemon.config.admin
        if admin is None or user.decode("utf-8", "replace") != admin.user:
            return None
        return admin.password.encode()

    def _authenticated(self, outcome: Outcome) -> None:
        login = self._auth
        if self.transport is not None:
            self.transport.write(login.framed_output())
        self._auth_switched = outcome is Outcome.SWITCHING
        if self._auth_switched:
            return
        self._user = login.user.decode("utf-8", "replace")
        if outcome is Outcome.DENIED:
            self.daemon.stats.inc("auth_failures")
            log.warning("admin %s: access denied for user %r", self.peer, self._user)
            self._write(login.denial(self.peer), login.next_seq)
            self.goodbye()
            return
        self.authenticated = True
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._write(self._ok(), login.next_seq)
        log.debug("admin %s: logged in as %s", self.peer, self._user)

    def _login_timed_out(self) -> None:
        self._login_timer = None
        if not self.authenticated:
            self._refuse(ER_HANDSHAKE, "proxyd: login timed out", 2)

    # -- command phase -----------------------------------------------------------------

    def _command(self, payload: bytes) -> None:
        command = payload[0]
        if command == COMMAND.COM_QUIT:
            self.goodbye()
        elif command in (COMMAND.COM_PING, COMMAND.COM_INIT_DB, COM_RESET_CONNECTION):
            self._write(self._ok(), 1)
        elif command == COMMAND.COM_QUERY:
            self._busy = True
            sql = payload[1:].decode("utf-8", "replace")
            self._task = asyncio.get_running_loop().create_task(self._query(sql))
        else:
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)

    async def _query(self, sql: str) -> None:
        statement = normalise(sql)
        if not statement.startswith(("SHOW", "SELECT", "SET")):
            log.info("admin %s: %s", self.peer, statement)
        try:
            answer = await self.console.execute(sql)
        except Exception as exc:  # one bad statement must not cost the daemon
            log.exception("admin %s: error running %r", self.peer, statement)
            answer = Failed(ER_UNKNOWN_ERROR, f"proxyd admin: internal error: {exc}")
        if isinstance(answer, ResultSet):
            data = encode_text_result(
                [name for name, _ in answer.columns],
                answer.rows,
                self.capabilities,
                STATUS,
                column_types=[kind for _, kind in answer.columns],
            )
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)
        elif isinstance(answer, Done):
            self._write(self._ok(answer.info), 1)
        else:
            self._write(build_err(answer.code, answer.message, answer.sql_state), 1)
        self._busy = False
        self._pump()

    # -- helpers -----------------------------------------------------------------------

    def _ok(self, info: str = "") -> bytes:
        return build_ok(OkPacket(status_flags=STATUS, info=info.encode()), self.capabilities)

    def _write(self, payload: bytes, seq: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_packet(payload, seq))

    def _refuse(self, code: int, message: str, seq: int, sql_state: bytes = b"HY000") -> None:
        self._write(build_err(code, message, sql_state), seq)
        self.goodbye()
