"""The session's side of transaction replay (``retry.transaction_replay``): what it records
while a transaction is open, and what it decides when the server connection holding that
transaction is lost. No I/O: the replay itself (another server connection, the statements
sent again, their answers compared) is proxyd/replay.py's, asked for through ``_replay()``
and answered through ``_replay_done()``.

A transaction is replayed when its connection is lost while the client is between two of
its statements, or waiting for the answer to one that cannot commit and of which nothing
reached the client. It is not when a COMMIT (or an implicit commit) was in flight: that
one may have committed (the in-doubt ERR), nor when the record was refused (too large,
GET_LOCK, INTO OUTFILE, LOAD DATA LOCAL, an open cursor, a non-transactional write, state
held on the connection before the transaction began).
"""

from __future__ import annotations

import logging

from proxyd.protocol.constants import COMMAND, SERVER_STATUS
from proxyd.protocol.response import ResponseTracker
from proxyd.session.answers import lost_transaction_err
from proxyd.session.base import SessionBase, State
from proxyd.session.record import (
    COMMIT_IN_FLIGHT,
    NOT_REPLAYABLE,
    REPLAYED,
    Entry,
    StartState,
    TransactionRecord,
    starts_transaction,
    writes_a_file,
)
from proxyd.session.state import with_param_types
from proxyd.session.statements import is_plain_rollback

log = logging.getLogger("proxyd.frontend")


class TransactionReplay(SessionBase):
    """See the module docstring."""

    def _wants_digest(self) -> bool:
        """Record the answer to the command about to be forwarded: inside a recorded
        transaction, or a command that may open one (then the session as it is now is
        where a replay starts)."""
        cs = self.cs
        if cs.in_transaction:
            record = self._record
            return record is not None and record.refused is None
        if not self.daemon.config.retry.transaction_replay:
            return False
        command = self._command
        if cs.status_flags & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT and not (
            command[0] == COMMAND.COM_QUERY and starts_transaction(command)
        ):
            return False
        self._txn_start = StartState(
            cs.schema,
            cs.charset,
            dict(cs.vars),
            cs.multi_statements,
            cs.characteristics if "characteristics" in cs.pins else b"",
        )
        self._held_before = cs.holds_state and "characteristics" not in cs.pins
        cs.nontransactional_write = False
        return True

    def _note_transaction(self, tracker: ResponseTracker, long_data: tuple[bytes, ...]) -> None:
        """After an answer: record the command if a transaction is open (it may have just
        opened it); forget the record once it is over."""
        cs = self.cs
        if not cs.in_transaction:
            self._record = None
            return
        record = self._record
        if record is None:
            start = self._txn_start
            if tracker.digest is None or start is None:
                return  # opened unwatched (replay off at its start): no replay
            record = self._record = TransactionRecord(
                start, self.daemon.config.retry.transaction_replay_max_size
            )
            if self._held_before:
                record.refuse(NOT_REPLAYABLE, "the session held state on its connection")
        if tracker.digest is None or record.refused is not None:
            return
        command = self._command
        stmt = self._stmt
        sql = command[1:] if command[0] == COMMAND.COM_QUERY else None
        if stmt is not None:
            sql = stmt.sql
        if self._hints.get_locks:
            record.refuse(NOT_REPLAYABLE, "it took a GET_LOCK lock")
        elif sql is not None and writes_a_file(sql):
            record.refuse(NOT_REPLAYABLE, "it wrote a file (INTO OUTFILE)")
        elif "cursor" in cs.pins or command[0] == COMMAND.COM_STMT_FETCH:
            record.refuse(NOT_REPLAYABLE, "it opened a cursor")
        elif cs.nontransactional_write:
            record.refuse(NOT_REPLAYABLE, "it wrote to a non-transactional table")
        if stmt is not None and command[0] == COMMAND.COM_STMT_EXECUTE:
            command = with_param_types(stmt, command)
        record.add(
            Entry(
                command[0],
                command,
                stmt.sql if stmt is not None else None,
                long_data,
                tracker.digest,
            )
        )

    def _infile_started(self) -> None:
        if self._record is not None:
            self._record.refuse(NOT_REPLAYABLE, "it ran LOAD DATA LOCAL INFILE")

    def _can_replay(self) -> bool:
        record = self._record
        return record is not None and record.refused is None

    def _count_lost_transaction(self, outcome: str | None = None) -> str | None:
        """A transaction lost for good: count why (once per transaction); the reason for
        the client, when there was a record (replay on)."""
        record = self._record
        if record is None:
            return None
        self._record = None
        if outcome is None:
            if record.refused is None:
                return None
            outcome, reason = record.refused
        elif outcome == COMMIT_IN_FLIGHT:
            reason = "a COMMIT was in flight"
        else:
            reason = "part of the answer had reached the client"
        self.daemon.stats.inc(f"transaction_replays_{outcome}")
        log.warning("session %s: transaction lost, not replayed (%s): %s", self.id, outcome, reason)
        return reason

    def _replay_owed_gate(self) -> bool:
        """_gate()'s part: the transaction's connection was lost between statements and a
        replay is owed before this command runs. True when the command was taken care of
        (replayed first, or answered)."""
        self._replay_owed = False
        if is_plain_rollback(self._command):
            # What the client asks for has happened: the server rolled it back.
            self._record = None
            self.cs.lose_backend()
            if self.state is State.IDLE:
                self._write(self._ok(), 1)  # from _dispatch: nothing started
            else:
                self._finish_local(self._ok())
            return True
        if self.state is not State.ACQUIRING:
            self._to(State.ACQUIRING)
        self._replay()
        return True

    def _replay_done(self, outcome: str, reason: str) -> None:
        """proxyd/replay.py's answer: replayed (the new connection is held, the command
        goes on), or not (the client gets 1213 with the reason)."""
        if self.state is State.CLOSED:
            return
        stats = self.daemon.stats
        stats.inc(f"transaction_replays_{outcome}")
        if outcome == REPLAYED:
            log.info(
                "session %s: transaction replayed on a new server connection (%s)", self.id, reason
            )
            stats.inc("errors_hidden")
            self._rerun(0.0)
            return
        log.warning("session %s: transaction not replayed (%s): %s", self.id, outcome, reason)
        self._record = None
        stats.inc("errors_passed_on")
        self.cs.lose_backend()
        self._finish_local(lost_transaction_err(reason))
