"""The connection phase, sans I/O: both sides of a login.

ServerLogin is the server side: checking a client's password.

proxyd plays the server twice, for applications (frontend) and for operators
(admin console), and both check passwords the same way: the scramble answer
of mysql_native_password, or the fast path of caching_sha2_password (proxyd
knows the password, so a fast-path answer can always be checked), and an
AuthSwitchRequest to mysql_native_password for any other plugin. ServerLogin
holds that exchange; the caller writes what ``take_output`` returns and then
its own OK or ERR with sequence id ``next_seq``. ClientLogin is proxyd logging in to
a server (see its docstring).
https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from proxyd.protocol import auth
from proxyd.protocol.constants import CLIENT, CLIENT_MYSQL
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import (
    SSL_REQUEST_LENGTH,
    ErrPacket,
    HandshakeResponse41,
    HandshakeV10,
    build_auth_more_data,
    build_auth_switch_request,
    build_err,
    build_handshake_response,
    parse_auth_switch_request,
    parse_err,
    parse_handshake_v10,
)
from proxyd.protocol.packets import encode_packet

ER_ACCESS_DENIED = 1045
_NO_PASSWORD = b"\x00no such user"  # compared anyway, so a wrong user costs the same time


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # write OK with next_seq
    DENIED = "denied"  # write ERR 1045 with next_seq
    SWITCHING = "switching"  # the client must answer an AuthSwitchRequest: call switched()


class ServerLogin:
    def __init__(self, password_for: Callable[[bytes], bytes | None]) -> None:
        self.scramble = auth.new_scramble()
        self.password_for = password_for
        self.user = b""
        self.used_password = False  # for "Access denied ... (using password: YES|NO)"
        self.next_seq = 0
        self._out: list[tuple[bytes, int]] = []

    def denial(self, peer: str) -> bytes:
        """The ERR for a DENIED outcome, worded as the server words it (1045, 28000)."""
        host = peer.rsplit(":", 1)[0]
        name = self.user.decode("utf-8", "replace")
        used = "YES" if self.used_password else "NO"
        return build_err(
            ER_ACCESS_DENIED,
            f"Access denied for user '{name}'@'{host}' (using password: {used})",
            b"28000",
        )

    def framed_output(self) -> bytes:
        """take_output(), framed as packets, for one write."""
        return b"".join(encode_packet(payload, seq) for payload, seq in self.take_output())

    def take_output(self) -> list[tuple[bytes, int]]:
        """Packets (payload, sequence id) to send before the OK or ERR."""
        out = self._out
        self._out = []
        return out

    def begin(self, user: bytes, plugin: bytes | None, response: bytes, seq: int) -> Outcome:
        """The client's first answer (HandshakeResponse41 or COM_CHANGE_USER), at ``seq``."""
        self.user = user
        plugin = plugin or auth.NATIVE_PASSWORD
        if plugin in (auth.NATIVE_PASSWORD, auth.CACHING_SHA2_PASSWORD):
            return self._check(plugin, response, seq)
        # A plugin we cannot check: ask for one we can, with a fresh scramble.
        self.scramble = auth.new_scramble()
        self._out.append((build_auth_switch_request(auth.NATIVE_PASSWORD, self.scramble), seq + 1))
        return Outcome.SWITCHING

    def switched(self, response: bytes, seq: int) -> Outcome:
        """The client's answer to the AuthSwitchRequest."""
        return self._check(auth.NATIVE_PASSWORD, response, seq)

    def _check(self, plugin: bytes, response: bytes, seq: int) -> Outcome:
        self.used_password = bool(response)
        known = self.password_for(self.user)
        password = _NO_PASSWORD if known is None else known
        if plugin == auth.CACHING_SHA2_PASSWORD:
            ok = auth.check_caching_sha2(response, self.scramble, password)
        else:
            ok = auth.check_native(response, self.scramble, password)
        self.next_seq = seq + 1
        if not ok or known is None:
            return Outcome.DENIED
        if plugin == auth.CACHING_SHA2_PASSWORD:
            self._out.append((build_auth_more_data(auth.SHA2_FAST_AUTH_OK), self.next_seq))
            self.next_seq += 1
        return Outcome.ACCEPTED


class LoginRefused(Exception):
    """The server refused proxyd's login; ``err`` is its ERR when it sent one."""

    def __init__(self, message: str, err: ErrPacket | None = None) -> None:
        super().__init__(message)
        self.err = err


class ClientLogin:
    """The client side of the connection phase, sans I/O: proxyd logging in to a server.

    ``greeting()`` takes the server's HandshakeV10 and returns the HandshakeResponse41
    to send; ``receive()`` takes each packet after it and returns what to send next
    (nothing, or one payload, perhaps empty), until ``done`` once the server said OK.
    Either raises LoginRefused (an ERR, a plugin proxyd cannot speak) or ProtocolError.
    Auth switch and both caching_sha2_password paths (fast, and full with the server's
    RSA key) are handled.
    """

    def __init__(
        self,
        user: bytes,
        password: bytes,
        charset: int,
        schema: bytes | None,
        capabilities: int,
        mariadb_capabilities: int = 0,
        connect_attrs: dict[bytes, bytes] | None = None,
        tls: str = "disabled",
    ) -> None:
        self.user = user
        self._tls = tls  # disabled | preferred (when offered) | required
        self.tls = False  # agreed: greeting() returned an SSLRequest; response() follows
        self._response = b""
        self._password = password
        self.charset = charset
        self.schema = schema
        self._wanted = capabilities
        self._wanted_mariadb = mariadb_capabilities
        self._attrs = connect_attrs or {}
        self.server: HandshakeV10 | None = None
        self.capabilities = 0  # what both sides agreed on
        self.server_mariadb_capabilities = 0
        self._plugin = b""
        self._scramble = b""
        self.done = False

    def greeting(self, payload: bytes) -> bytes:
        try:
            greeting = parse_handshake_v10(payload)
        except ProtocolError as exc:
            if payload[:1] == b"\xff":
                err = parse_err(payload)
                raise LoginRefused(
                    f"server refused: {err.message.decode(errors='replace')}", err
                ) from None
            raise ProtocolError(f"bad greeting from server: {exc}") from None
        if not greeting.capability_flags & CLIENT.PROTOCOL_41:
            raise LoginRefused("server does not speak protocol 4.1")
        self.server = greeting
        caps = self._wanted & greeting.capability_flags
        mariadb_caps = 0
        if not greeting.capability_flags & CLIENT_MYSQL:
            self.server_mariadb_capabilities = greeting.mariadb_capabilities
            mariadb_caps = self._wanted_mariadb & greeting.mariadb_capabilities
        if mariadb_caps:
            caps &= ~CLIENT_MYSQL  # says the reserved bytes hold MariaDB's capabilities
        if self.schema:
            caps |= CLIENT.CONNECT_WITH_DB
        if self._tls != "disabled" and greeting.capability_flags & CLIENT.SSL:
            self.tls = True
            caps |= CLIENT.SSL
        elif self._tls == "required":
            raise LoginRefused("the server does not offer TLS, which backend.tls.mode requires")
        self.capabilities = caps
        self._plugin = greeting.auth_plugin_name
        self._scramble = greeting.auth_plugin_data
        response = build_handshake_response(
            HandshakeResponse41(
                capability_flags=caps,
                max_packet_size=1 << 30,
                character_set=self.charset & 0xFF,
                username=self.user,
                auth_response=self._auth_response(),
                database=self.schema,
                auth_plugin_name=self._plugin,
                connect_attrs=self._attrs,
                mariadb_capabilities=mariadb_caps,
            )
        )
        if self.tls:
            # The SSLRequest is the response's fixed part; the whole follows over TLS.
            self._response = response
            return response[:SSL_REQUEST_LENGTH]
        return response

    def response(self) -> bytes:
        """The HandshakeResponse41 to send once TLS is up (after greeting() asked for it)."""
        return self._response

    def receive(self, payload: bytes) -> list[bytes]:
        head = payload[:1]
        if head == b"\x00":
            self.done = True
            return []
        if head == b"\xff":
            err = parse_err(payload)
            raise LoginRefused(
                f"server refused login as {self.user.decode(errors='replace')}: "
                f"{err.error_code} {err.message.decode(errors='replace')}",
                err,
            )
        if head == b"\xfe":
            switch = parse_auth_switch_request(payload)
            self._plugin, self._scramble = switch.plugin_name, switch.plugin_data
            return [self._auth_response()]  # empty for an empty password, and still sent
        if head == b"\x01" and self._plugin == auth.CACHING_SHA2_PASSWORD:
            data = payload[1:]
            if data == auth.SHA2_FAST_AUTH_OK:
                return []  # the OK follows
            if data == auth.SHA2_PERFORM_FULL_AUTH:
                if self.tls:
                    return [self._password + b"\x00"]  # in clear, inside TLS
                return [auth.SHA2_REQUEST_PUBLIC_KEY]
            if data.startswith(b"-----BEGIN"):
                return [auth.rsa_encrypt_password(self._password, self._scramble, data)]
            raise LoginRefused("unexpected caching_sha2_password exchange")
        raise ProtocolError(f"unexpected packet during login: {head!r}")

    def _auth_response(self) -> bytes:
        if self._plugin == auth.NATIVE_PASSWORD:
            return auth.scramble_native(self._password, self._scramble)
        if self._plugin == auth.CACHING_SHA2_PASSWORD:
            return auth.scramble_caching_sha2(self._password, self._scramble)
        raise LoginRefused(
            f"server asks for unsupported auth plugin {self._plugin.decode(errors='replace')}"
        )
