"""The server side of the connection phase, sans I/O: checking a client's password.

proxyd plays the server twice, for applications (frontend) and for operators
(admin console), and both check passwords the same way: the scramble answer
of mysql_native_password, or the fast path of caching_sha2_password (proxyd
knows the password, so a fast-path answer can always be checked), and an
AuthSwitchRequest to mysql_native_password for any other plugin. ServerLogin
holds that exchange; the caller writes what ``take_output`` returns and then
its own OK or ERR with sequence id ``next_seq``.
https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from proxyd.protocol import auth
from proxyd.protocol.messages import build_auth_more_data, build_auth_switch_request

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
