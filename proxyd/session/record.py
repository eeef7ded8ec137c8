"""What a session keeps of an open transaction so that it can run it again on another
server connection (``retry.transaction_replay``), and the checksum that says whether the
re-run gave the client's answers again.

Pure data, no I/O: the session core (core.py) adds each statement of a transaction and the
checksum of the answer the client got (``ResponseTracker.digest``: CRC-32 of every byte
relayed to the client for that command, computed where the bytes are relayed); proxyd/
replay.py sends the statements again and compares. Nothing is kept outside transactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from proxyd.protocol.constants import COMMAND

# Outcomes of a transaction whose server connection was lost, as counted and exported
# (proxyd_transaction_replays_total{outcome}).
REPLAYED = "replayed"
MISMATCH = "mismatch"
TOO_LARGE = "too_large"
NOT_REPLAYABLE = "not_replayable"
COMMIT_IN_FLIGHT = "commit_in_flight"
OUTCOMES = (REPLAYED, MISMATCH, TOO_LARGE, NOT_REPLAYABLE, COMMIT_IN_FLIGHT)

_TRANSACTION_START = re.compile(rb"\s*(?:BEGIN|START\s+TRANSACTION)\b", re.I)
_OUTFILE = re.compile(rb"\bINTO\s+(?:OUTFILE|DUMPFILE)\b", re.I)


_MAY_START = frozenset(b"bBsS \t\r\n(/")


def starts_transaction(payload: bytes) -> bool:
    """A COM_QUERY that opens a transaction (BEGIN, START TRANSACTION ...). Asked of every
    autocommit statement: the first bytes rule out almost all at once."""
    if len(payload) < 3 or payload[0] != COMMAND.COM_QUERY or payload[1] not in _MAY_START:
        return False
    if payload[1] in b"sS" and payload[2] not in b"tT":
        return False  # SELECT, SET, SHOW...
    return _TRANSACTION_START.match(payload, 1) is not None


def writes_a_file(sql: bytes) -> bool:
    return _OUTFILE.search(sql) is not None


@dataclass(frozen=True, slots=True)
class StartState:
    """The client's session as the transaction began: what a replay restores first."""

    schema: bytes | None
    charset: int
    variables: dict[bytes, bytes]
    multi_statements: bool
    characteristics: bytes  # SET TRANSACTION ... for this transaction, as the server said


@dataclass(frozen=True, slots=True)
class Entry:
    """One command of the transaction and the checksum of its answer."""

    command: int
    payload: bytes  # as forwarded; an execute speaks of the client's statement id
    sql: bytes | None  # a prepared statement's text (COM_STMT_EXECUTE)
    long_data: tuple[bytes, ...]  # its COM_STMT_SEND_LONG_DATA bodies
    digest: int


@dataclass(slots=True)
class TransactionRecord:
    """See the module docstring. ``refused`` says why a replay cannot be honest (an
    outcome and its reason), once something made it so."""

    start: StartState
    max_size: int
    entries: list[Entry] = field(default_factory=list)
    size: int = 0
    refused: tuple[str, str] | None = None

    def add(self, entry: Entry) -> None:
        if self.refused is not None:
            return
        self.size += len(entry.payload) + sum(len(chunk) for chunk in entry.long_data)
        if self.size > self.max_size:
            self.refuse(
                TOO_LARGE,
                f"its statements passed retry.transaction_replay_max_size ({self.max_size} bytes)",
            )
            return
        self.entries.append(entry)

    def refuse(self, outcome: str, reason: str) -> None:
        if self.refused is None:
            self.refused = (outcome, reason)
            self.entries.clear()
