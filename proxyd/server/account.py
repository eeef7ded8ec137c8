"""Whom a server connection logs in as, and with which client capabilities: what the
pools key their connections on, apart from the connection itself (connection.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from proxyd.addresses import Address
from proxyd.protocol.constants import CLIENT, CLIENT_41_AUTH, MARIADB_CLIENT_EXTENDED_METADATA
from proxyd.tls import BackendTLSConfig

# What proxyd asks of every server, whatever the client asked of proxyd.
# MULTI_STATEMENTS is switched per client with COM_SET_OPTION, so it does not split the pool.
BASE_CAPABILITIES = CLIENT_41_AUTH | CLIENT.LONG_PASSWORD | CLIENT.MULTI_STATEMENTS
BASE_CAPABILITIES |= CLIENT.SESSION_TRACK | CLIENT.CONNECT_ATTRS
# Client capabilities that change what a server sends or accepts: a backend is
# only shared between clients that agree on these (the pool keys on them). A profile
# holds them, and above bit 32 the MARIADB_PROFILE_CAPABILITIES the client asked for.
PROFILE_CAPABILITIES = (
    CLIENT.FOUND_ROWS
    | CLIENT.DEPRECATE_EOF
    | CLIENT.LOCAL_FILES
    | CLIENT.IGNORE_SPACE
    # Without them the server keeps results from the client (a prepared CALL's OUT
    # parameters, a procedure's result sets): asking for them anyway would send a client
    # answers it cannot read.
    | CLIENT.MULTI_RESULTS
    | CLIENT.PS_MULTI_RESULTS
)
# MariaDB's extended capabilities that proxyd passes on: they change what the server
# puts in a column definition, never how many packets an answer has.
MARIADB_PROFILE_CAPABILITIES = MARIADB_CLIENT_EXTENDED_METADATA


@dataclass(frozen=True, slots=True)
class ServerAccount:
    """Whom a server connection logs in as, and the session it asks for."""

    address: Address
    user: bytes
    password: bytes
    profile: int  # client capabilities that shape answers (see PROFILE_CAPABILITIES)
    charset: int
    schema: bytes | None = None
    tls: BackendTLSConfig | None = None  # backend.tls; None: plaintext
    # Set when only SHA1(password) is known (see UserConfig.backend_password): the
    # password is then unknown and unused.
    password_sha1: bytes | None = None


@dataclass(slots=True)
class ThreadBook:
    """The server thread ids of proxyd's own connections, from the greeting that names
    one until a while after proxyd closes it: the server shows a connection in its
    process list while proxyd is still logging it in (not yet in any pool) and for a
    moment after proxyd let it go; both are proxyd's, not an application's
    (proxyd/session/identity.py leaves them out)."""

    LINGER = 10.0  # seconds a closed connection's id is still taken as proxyd's

    open: dict[int, Any] = field(default_factory=dict)  # thread id -> BackendConnection
    closed: dict[int, float] = field(default_factory=dict)  # thread id -> until when

    def opened(self, thread_id: int, conn: Any) -> None:
        self.open[thread_id] = conn

    def gone(self, thread_id: int) -> None:
        if self.open.pop(thread_id, None) is not None:
            self.closed[thread_id] = time.monotonic() + self.LINGER

    def lingering(self, now: float) -> list[int]:
        """Ids of connections closed within LINGER seconds."""
        expired = [tid for tid, until in self.closed.items() if until <= now]
        for tid in expired:
            del self.closed[tid]
        return list(self.closed)
