"""What a client is told when proxyd answers for the server: the error codes and texts
of a lost server connection, a refused command, a failed login. Pure functions of the
facts; the session core (core.py) decides when each applies."""

from __future__ import annotations

from proxyd.protocol.constants import COMMAND
from proxyd.protocol.messages import build_err

ER_ACCESS_DENIED = 1045
ER_CON_COUNT = 1040
ER_UNKNOWN_COM = 1047
ER_NET_PACKETS_OUT_OF_ORDER = 1156
ER_LOCK_DEADLOCK = 1213
ER_UNKNOWN_ERROR = 1105
ER_HANDSHAKE = 1043
ER_TOO_MANY_USER_CONNECTIONS = 1203
ER_UNKNOWN_STMT_HANDLER = 1243
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
ER_NO_SUCH_THREAD = 1094
ER_NET_PACKET_TOO_LARGE = 1153
ER_QUERY_INTERRUPTED = 1317

# Commands proxyd refuses: replication and server administration over a pool.
REFUSED_COMMANDS = frozenset(
    (
        COMMAND.COM_BINLOG_DUMP,
        COMMAND.COM_BINLOG_DUMP_GTID,
        COMMAND.COM_REGISTER_SLAVE,
        COMMAND.COM_TABLE_DUMP,
        COMMAND.COM_CONNECT_OUT,
        COMMAND.COM_SHUTDOWN,
        COMMAND.COM_SLEEP,
        COMMAND.COM_CONNECT,
        COMMAND.COM_TIME,
        COMMAND.COM_DELAYED_INSERT,
        COMMAND.COM_DAEMON,
    )
)


LOST_TRANSACTION = build_err(
    ER_LOCK_DEADLOCK,
    "proxyd: the connection to the server was lost inside a transaction; "
    "the transaction was rolled back, retry it",
    b"40001",
)


def lost_transaction_err(reason: str | None) -> bytes:
    """1213 for a transaction lost with its server connection; ``reason``: why it was not
    replayed (retry.transaction_replay), when it could have been."""
    if reason is None:
        return LOST_TRANSACTION
    return build_err(
        ER_LOCK_DEADLOCK,
        "proxyd: the connection to the server was lost inside a transaction and it could not"
        f" be replayed ({reason}); the transaction was rolled back, retry it",
        b"40001",
    )


def is_lost_transaction(err: bytes) -> bool:
    """One of the answers above (every 1213 proxyd makes itself is one)."""
    return err[:3] == LOST_TRANSACTION[:3]


def lost_state_err(lost: str) -> bytes:
    # The command is not run: without that state it could do something else than meant
    # (a user variable read as NULL, a temporary table's name resolving to a real one).
    return build_err(
        ER_UNKNOWN_ERROR,
        f"proxyd: the server connection holding this session's {lost} was lost; "
        "that state no longer exists. The statement was not run; the session goes on "
        "without it",
    )


def lost_in_flight_err(
    reason: str, *, in_transaction: bool, garbled: bool, nothing_sent: bool, also: str
) -> bytes:
    """The answer to a statement whose server connection was lost before its answer was
    whole, when it is not re-run and could have committed (see SessionCore._command_failed)."""
    if in_transaction:
        # A COMMIT (or a statement that commits implicitly) whose answer never came:
        # the server may have committed before the connection died. Saying "rolled
        # back" would have the client apply it twice.
        return build_err(
            ER_UNKNOWN_ERROR,
            f"proxyd: the connection to the server was lost ({reason}) while this statement "
            "ran inside a transaction; the transaction may or may not have been applied",
        )
    if garbled:
        return build_err(
            ER_UNKNOWN_ERROR,
            f"proxyd: could not follow the server's answer ({reason}); the connection to "
            f"the server was closed, the statement may or may not have been applied{also}",
        )
    if nothing_sent:
        return build_err(
            ER_UNKNOWN_ERROR,
            f"proxyd: the connection to the server was lost ({reason}) while this statement "
            f"ran; it may or may not have been applied{also}",
        )
    return build_err(
        ER_UNKNOWN_ERROR,
        f"proxyd: the connection to the server was lost ({reason}) "
        f"in the middle of the result{also}",
    )
