"""The connection phase, sans I/O: both sides of a login.

ServerLogin is the server side: checking a client's password.

proxyd plays the server twice, for applications (frontend) and for operators
(admin console), and both check passwords the same way: the scramble answer
of mysql_native_password (the password or only its stored hash suffices);
caching_sha2_password's fast path when proxyd knows the password, else its full path
(the password in clear inside TLS, or RSA-encrypted with proxyd's key without TLS);
mysql_clear_password only inside TLS; and an AuthSwitchRequest to
mysql_native_password for any other plugin. ServerLogin
holds that exchange; the caller writes what ``take_output`` returns and then
its own OK or ERR with sequence id ``next_seq``. ClientLogin is proxyd logging in to
a server (see its docstring).
https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from typing import Any

from proxyd.protocol import auth, ed25519
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
ER_SECURE_TRANSPORT_REQUIRED = 3159
# Compared anyway, so that a wrong user costs the time of a wrong password.
_NO_SUCH_USER = auth.Credentials.of(b"\x00no such user")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # write OK with next_seq
    DENIED = "denied"  # write ERR 1045 with next_seq
    SWITCHING = "switching"  # the client must answer an AuthSwitchRequest: call switched()


class ServerLogin:
    """The server side; see the module docstring. ``credentials_for(user)`` gives what
    proxyd knows of the account's password (Credentials, or the password itself), or
    None. The session sets ``secure`` once TLS is up, and ``rsa_key`` is a callable
    giving proxyd's RSA private key (for caching_sha2_password's full path without TLS).
    After ACCEPTED, ``password_sha1`` is SHA1(password) (what a native login to the
    server needs) and ``password`` the password itself when the exchange revealed it."""

    def __init__(
        self,
        credentials_for: Callable[[bytes], auth.Credentials | bytes | None],
        rsa_key: Callable[[], Any] | None = None,
    ) -> None:
        self.scramble = auth.new_scramble()
        self.credentials_for = credentials_for
        self.rsa_key = rsa_key
        self.secure = False
        self.user = b""
        self.used_password = False  # for "Access denied ... (using password: YES|NO)"
        self.next_seq = 0
        self.password: bytes | None = None
        self.password_sha1: bytes | None = None
        self.reason: tuple[int, str, bytes] | None = None  # a DENIED that is not 1045
        self._stage = _Stage.NATIVE_SWITCH
        self._out: list[tuple[bytes, int]] = []

    def denial(self, peer: str) -> bytes:
        """The ERR for a DENIED outcome, worded as the server words it (1045, 28000)."""
        if self.reason is not None:
            return build_err(*self.reason)
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
        self.password = self.password_sha1 = None
        self.reason = None
        plugin = plugin or auth.NATIVE_PASSWORD
        if plugin == auth.NATIVE_PASSWORD:
            return self._check_native(response, seq)
        if plugin == auth.CACHING_SHA2_PASSWORD:
            if not response:
                # Some clients (MariaDB Connector/C) send nothing for a plugin the
                # greeting did not name: ask for an answer to a scramble of that plugin.
                self.scramble = auth.new_scramble()
                self._stage = _Stage.SHA2_SWITCH
                return self._ask(build_auth_switch_request(plugin, self.scramble), seq)
            return self._caching_sha2(response, seq)
        if plugin == auth.CLEAR_PASSWORD:
            if not self.secure:
                self.next_seq = seq + 1
                self.used_password = bool(response)
                self.reason = (
                    ER_SECURE_TRANSPORT_REQUIRED,
                    "proxyd: mysql_clear_password is only accepted over TLS; connect with"
                    " TLS or use mysql_native_password or caching_sha2_password",
                    b"HY000",
                )
                return Outcome.DENIED
            return self._check_cleartext(response.rstrip(b"\x00"), seq)
        # A plugin we cannot check: ask for one we can, with a fresh scramble.
        self.scramble = auth.new_scramble()
        self._stage = _Stage.NATIVE_SWITCH
        return self._ask(build_auth_switch_request(auth.NATIVE_PASSWORD, self.scramble), seq)

    def switched(self, response: bytes, seq: int) -> Outcome:
        """The client's next answer (to an AuthSwitchRequest or an AuthMoreData)."""
        if self._stage is _Stage.NATIVE_SWITCH:
            return self._check_native(response, seq)
        if self._stage is _Stage.SHA2_RSA:
            return self._check_rsa(response, seq)
        if self._stage is _Stage.SHA2_SWITCH:
            return self._caching_sha2(response, seq)
        # SHA2_FULL: the password in clear inside TLS, or a request for the RSA key.
        if self.secure:
            return self._check_cleartext(response.rstrip(b"\x00"), seq)
        if response == auth.SHA2_REQUEST_PUBLIC_KEY and self.rsa_key is not None:
            self._stage = _Stage.SHA2_RSA
            return self._ask(build_auth_more_data(auth.rsa_public_pem(self.rsa_key())), seq)
        if len(response) >= 128 and self.rsa_key is not None:  # encrypted with a known key
            return self._check_rsa(response, seq)
        self.next_seq = seq + 1
        self.used_password = True
        return Outcome.DENIED  # a password in clear over plaintext is never accepted

    def _caching_sha2(self, response: bytes, seq: int) -> Outcome:
        credentials = self._credentials()
        if credentials is not None and credentials.password is not None and response:
            return self._check_sha2_fast(credentials, response, seq)
        if not response:  # the empty password: nothing to protect, no full path
            return self._check_cleartext(b"", seq)
        # Only the native hash is known (or no such user): the password itself is
        # needed, as when a server's cache is cold.
        self._stage = _Stage.SHA2_FULL
        return self._ask(build_auth_more_data(auth.SHA2_PERFORM_FULL_AUTH), seq)

    def _ask(self, payload: bytes, seq: int) -> Outcome:
        self._out.append((payload, seq + 1))
        return Outcome.SWITCHING

    def _credentials(self) -> auth.Credentials | None:
        known = self.credentials_for(self.user)
        if isinstance(known, bytes):
            return auth.Credentials.of(known)
        return known

    def _check_native(self, response: bytes, seq: int) -> Outcome:
        self.used_password = bool(response)
        self.next_seq = seq + 1
        known = self._credentials()
        checked = (known or _NO_SUCH_USER).check_native(response, self.scramble)
        if checked is None or known is None:
            return Outcome.DENIED
        self.password_sha1 = checked
        self.password = known.password
        return Outcome.ACCEPTED

    def _check_sha2_fast(self, known: auth.Credentials, response: bytes, seq: int) -> Outcome:
        assert known.password is not None
        self.used_password = True
        self.next_seq = seq + 1
        if not auth.check_caching_sha2(response, self.scramble, known.password):
            return Outcome.DENIED
        self._out.append((build_auth_more_data(auth.SHA2_FAST_AUTH_OK), self.next_seq))
        self.next_seq += 1
        return self._accept_password(known.password)

    def _check_rsa(self, response: bytes, seq: int) -> Outcome:
        assert self.rsa_key is not None
        try:
            password = auth.rsa_decrypt_password(response, self.scramble, self.rsa_key())
        except ValueError:
            self.next_seq = seq + 1
            self.used_password = True
            return Outcome.DENIED
        return self._check_cleartext(password, seq)

    def _check_cleartext(self, password: bytes, seq: int) -> Outcome:
        self.used_password = bool(password)
        self.next_seq = seq + 1
        known = self._credentials()
        if not (known or _NO_SUCH_USER).check_cleartext(password) or known is None:
            return Outcome.DENIED
        return self._accept_password(password)

    def _accept_password(self, password: bytes) -> Outcome:
        self.password = password
        self.password_sha1 = hashlib.sha1(password).digest() if password else b""
        return Outcome.ACCEPTED


class _Stage(enum.Enum):
    NATIVE_SWITCH = "native"  # the answer to an AuthSwitchRequest to mysql_native_password
    SHA2_SWITCH = "sha2 switch"  # caching_sha2_password's answer to a scramble of its own
    SHA2_FULL = "sha2 full"  # caching_sha2_password after "perform full authentication"
    SHA2_RSA = "sha2 rsa"  # ... after proxyd sent its RSA public key


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
    Auth switch, both caching_sha2_password paths (fast, and full with the server's
    RSA key) and MariaDB's client_ed25519 are handled.
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
        password_sha1: bytes | None = None,
    ) -> None:
        self.user = user
        # Set when only SHA1(password) is known (an account read from the server, or a
        # password_hash): enough for mysql_native_password, for no other plugin.
        self._password_sha1 = password_sha1
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
            if self._password_sha1 is not None:
                if not self._password_sha1:
                    return b""
                return auth.scramble_native_from_sha1(self._password_sha1, self._scramble)
            return auth.scramble_native(self._password, self._scramble)
        if self._password_sha1 is not None:
            raise LoginRefused(
                f"the server asks for auth plugin {self._plugin.decode(errors='replace')},"
                " but proxyd knows only this account's mysql_native_password hash: give the"
                " account a mysql_native_password password on the server, or its password"
                " in users:"
            )
        if self._plugin == auth.ED25519:
            # 32 random bytes; a last NUL byte was taken for the packet's terminator.
            return ed25519.sign(self._password, self._scramble[:32].ljust(32, b"\x00"))
        if self._plugin == auth.CACHING_SHA2_PASSWORD:
            return auth.scramble_caching_sha2(self._password, self._scramble)
        raise LoginRefused(
            f"server asks for unsupported auth plugin {self._plugin.decode(errors='replace')}"
        )
