"""The connection phase of a client session, and COM_CHANGE_USER: sans-IO.

The greeting, the password check (proxyd/protocol/login.py's ServerLogin), the account's
limits, and the move to IDLE; a failed COM_CHANGE_USER keeps the session as the server
does (see _login_failed).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from proxyd.pool.accounts import Found
from proxyd.protocol import auth
from proxyd.protocol.constants import (
    CLIENT,
    CLIENT_41_AUTH,
    SERVER_STATUS,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import ER_ACCESS_DENIED, Outcome
from proxyd.protocol.messages import (
    HandshakeV10,
    build_err,
    build_handshake_v10,
    is_ssl_request,
    parse_handshake_response,
)
from proxyd.protocol.packets import Reader, encode_packet
from proxyd.session.answers import (
    ER_HANDSHAKE,
    ER_TOO_MANY_USER_CONNECTIONS,
    ER_UNKNOWN_COM,
)
from proxyd.session.state import ClientState

if TYPE_CHECKING:
    pass

from proxyd.server.account import MARIADB_PROFILE_CAPABILITIES, PROFILE_CAPABILITIES
from proxyd.session.base import (
    CHANGE_USER_FAILURE_PAUSE,
    MAX_CHANGE_USER_FAILURES,
    LoginGate,
    SessionBase,
    State,
)

log = logging.getLogger("proxyd.frontend")

# What proxyd offers clients (and so what it must be able to honour).
# CLIENT_MYSQL (the old LONG_PASSWORD bit) is left out, as MariaDB leaves it out: clients
# then send MariaDB's extended capabilities (see MARIADB_PROFILE_CAPABILITIES).
_LOGIN = CLIENT_41_AUTH | CLIENT.CONNECT_WITH_DB | CLIENT.CONNECT_ATTRS
_STATEMENTS = CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS
_ANSWERS = CLIENT.FOUND_ROWS | CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF | CLIENT.LOCAL_FILES
_CLIENT_SIDE = CLIENT.IGNORE_SPACE | CLIENT.INTERACTIVE | CLIENT.IGNORE_SIGPIPE
SERVER_CAPABILITIES = _LOGIN | _STATEMENTS | _ANSWERS | _CLIENT_SIDE
DEFAULT_SERVER_VERSION = b"5.5.5-10.11.0-MariaDB-proxyd"


ER_NOT_SUPPORTED_YET = 1235
ER_SECURE_TRANSPORT_REQUIRED = 3159


class LoginPhase(SessionBase):
    """See the module docstring."""

    def greeting(self) -> bytes:
        """The server greeting (HandshakeV10) this session opens with, framed."""
        daemon = self.daemon
        return encode_packet(
            build_handshake_v10(
                HandshakeV10(
                    server_version=daemon.server_version(),
                    connection_id=self.id,
                    auth_plugin_data=self._auth.scramble,
                    capability_flags=SERVER_CAPABILITIES
                    | (CLIENT.SSL if daemon.config.tls.context is not None else 0),
                    character_set=daemon.server_charset(),
                    status_flags=SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT,
                    auth_plugin_name=auth.NATIVE_PASSWORD,
                    mariadb_capabilities=(
                        daemon.server.mariadb_capabilities & MARIADB_PROFILE_CAPABILITIES
                    ),
                )
            ),
            0,
        )

    def _authenticate(self) -> None:
        """The client's HandshakeResponse41 (answers to an auth switch go through _pump)."""
        if self._pending_login is not None:
            return  # its account is being read from the server
        if self._login_gate is not LoginGate.OPEN:
            if self._login_gate is LoginGate.WAITING:
                return
            # Once per connection: an address that failed to log in waits first.
            delay = self.daemon.login_guard.delay_for(self.peer_host, time.monotonic())
            if delay:
                self._login_gate = LoginGate.WAITING
                self.daemon.stats.inc("logins_delayed")
                self._wait_before_login(delay)
                return
            self._login_gate = LoginGate.OPEN
        packet = self._reader.next_packet()
        if packet is None:
            return
        seq, payload = packet
        expected = 2 if self.tls else 1  # after an SSLRequest, the response is the second
        if seq != expected:
            raise ProtocolError(f"handshake response with sequence id {seq} (expected {expected})")
        if is_ssl_request(payload):
            context = self.daemon.config.tls.context
            if context is None or self.tls:
                self._refuse(ER_HANDSHAKE, "proxyd: TLS is not enabled on this listener", seq + 1)
                return
            self.tls = True
            self._start_tls(context, self._reader.take_remaining())
            return
        if not self.tls and self.daemon.config.tls.required:
            self._refuse(
                ER_SECURE_TRANSPORT_REQUIRED,
                "proxyd: connections using insecure transport are prohibited (tls.mode:"
                " require); connect with TLS",
                seq + 1,
            )
            return
        response = parse_handshake_response(payload)
        if response.capability_flags & CLIENT.COMPRESS:
            # Not offered, yet some clients (PHP's mysqlnd) ask anyway, then speak it after
            # the OK: an OK would leave both sides waiting. Refused now, while the answer
            # is still read uncompressed.
            self._refuse(
                ER_NOT_SUPPORTED_YET,
                "proxyd: the compressed protocol is not supported; connect without compression",
                seq + 1,
                sql_state=b"42000",
            )
            return
        self.capabilities = response.capability_flags & SERVER_CAPABILITIES
        self.mariadb_capabilities = (
            response.mariadb_capabilities
            & self.daemon.server.mariadb_capabilities
            & MARIADB_PROFILE_CAPABILITIES
        )
        self._pending_charset = response.character_set or self.daemon.server_charset()
        self._pending_db = response.database
        self._begin_login(response.username, response.auth_plugin_name, response.auth_response, seq)

    def _begin_login(self, user: bytes, plugin: bytes | None, response: bytes, seq: int) -> None:
        """Check the password of a login or COM_CHANGE_USER; a user not in ``users:`` is
        read from the server first (users_from_server), which _account_read continues."""
        self._auth.secure = self.tls
        self._pending_login = (user, plugin, response, seq)
        name = user.decode("utf-8", "replace")
        accounts = self.daemon.accounts
        if accounts is not None and name not in self.daemon.config.users:
            found = accounts.fresh(name, time.monotonic())
            if found is None:
                self._read_account(name)
                return
            self._account_read(found)
            return
        self._pending_login = None
        self._authenticated(self._auth.begin(user, plugin, response, seq))

    def _account_read(self, found: Found) -> None:
        """The server's answer about the account of the login held by _begin_login."""
        pending = self._pending_login
        self._pending_login = None
        if pending is None or self.state is State.CLOSED:
            return
        user, plugin, response, seq = pending
        if found.refusal:
            log.warning("client %s: login refused: %s", self.peer, found.refusal)
            err = build_err(ER_ACCESS_DENIED, f"proxyd: {found.refusal}", b"28000")
            self._login_failed(err, seq + 1)
            return
        self._authenticated(self._auth.begin(user, plugin, response, seq))

    def _login_waited(self) -> None:
        """The login guard's wait is over: read the login that came meanwhile."""
        self._login_gate = LoginGate.OPEN
        self.receive_data(b"")

    def _authenticated(self, outcome: Outcome) -> None:
        """Act on the password check of a login or a COM_CHANGE_USER."""
        login = self._auth
        out = login.framed_output()
        if out:
            self.send(out)
        self._auth_stage = outcome is Outcome.SWITCHING
        if self._auth_stage:
            return
        name = login.user.decode("utf-8", "replace")
        if outcome is Outcome.DENIED:
            self.daemon.stats.inc("auth_failures")
            self.daemon.login_guard.failed(self.peer_host, time.monotonic())
            log.warning("client %s: access denied for user %r", self.peer, name)
            self._login_failed(login.denial(self.peer), login.next_seq)
            return
        account = self.daemon.user_config(name)
        if account is None:  # gone by a reload while its password was checked
            self._login_failed(login.denial(self.peer), login.next_seq)
            return
        if account.require_tls and not self.tls:
            log.warning("client %s: user %r refused over plaintext (require_tls)", self.peer, name)
            err = build_err(
                ER_SECURE_TRANSPORT_REQUIRED,
                f"proxyd: user '{name}' must connect with TLS (require_tls)",
            )
            self._login_failed(err, login.next_seq)
            return
        limit = account.max_connections
        if limit and sum(1 for s in self.daemon.sessions if s.user == name) >= limit:
            err = build_err(
                ER_TOO_MANY_USER_CONNECTIONS,
                f"User '{name}' has exceeded the 'max_connections' resource "
                f"(current value: {limit})",
                b"42000",
            )
            self._login_failed(err, login.next_seq)
            return
        self.daemon.login_guard.succeeded(self.peer_host)
        if self._change_user:
            self._release_backend(reset=True)
        self.user = name
        self.pool = self.daemon.pool_for(account)
        if account.backend_password is None and login.password_sha1 is not None:
            # Known by its hash only: this login gave what the server's check needs.
            self.pool.password_sha1 = login.password_sha1
        self.profile = (self.capabilities & PROFILE_CAPABILITIES) | (
            self.mariadb_capabilities << 32
        )
        self.cs = ClientState(self.capabilities, self._pending_charset, self._pending_db)
        self._reader.max_payload = self.daemon.server.max_allowed_packet
        self._loss = None
        self._logged_in()
        if self._change_user:
            self._change_user = False
            self._finish_local(self._ok(), login.next_seq)
        else:
            self._to(State.IDLE)
            self._write(self._ok(), login.next_seq)
        log.debug("client %s: session %s logged in as %s", self.peer, self.id, name)

    def _login_failed(self, err: bytes, seq: int) -> None:
        """A refused login closes the connection; a refused COM_CHANGE_USER does not:
        as on the server, the session goes on as the previous user (its state reset, as
        COM_CHANGE_USER resets it before checking), after a second's pause against
        password guessing."""
        if not self._change_user:
            self._write(err, seq)
            self._close()
            return
        self._change_user = False
        self._change_user_failures += 1
        self._release_backend(reset=True)
        self._answer_later(CHANGE_USER_FAILURE_PAUSE, err, seq)

    def _com_change_user(self, payload: bytes) -> None:
        if self._change_user_failures >= MAX_CHANGE_USER_FAILURES:
            # MariaDB's answer once a connection failed three times (MDEV-3915).
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
            return
        r = Reader(payload, 1)
        user = r.nul_str()
        secure = self.capabilities & CLIENT.SECURE_CONNECTION
        response = r.take(r.u8()) if secure else r.nul_str()
        self._pending_db = r.nul_str_or_rest() or None if r.remaining() else None
        self._pending_charset = r.u16() & 0xFF if r.remaining() >= 2 else self.cs.charset
        plugin = None
        if r.remaining() and self.capabilities & CLIENT.PLUGIN_AUTH:
            plugin = r.nul_str_or_rest()
        self.cs.reset()  # the server resets the session before it checks the password
        self._loss = None
        self._change_user = True
        self._to(State.ACQUIRING)
        self._begin_login(user, plugin, response, 0)
