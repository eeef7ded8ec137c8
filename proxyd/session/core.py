"""The client session's core: client packets and server-connection events in, actions out.

SessionCore holds everything a client session decides, and nothing that does I/O: no
socket, no event loop, no task. Bytes from the client go in through ``receive_data``; the
answer to a command comes in through ``_answered`` (the server connection streamed it
whole) or ``backend_lost`` (the server connection died). What the session wants done
comes out through the action methods at the end of the class (send bytes to the client,
run the command on a server connection, re-run it after a pause, release the server
connection, close), which the asyncio adapter (proxyd/frontend.py) implements and which
the core's tests record (tests/session/).

Invariants, each owned by one method:
- A command goes to a server connection only past ``_gate()``: a session in a transaction,
  or holding state on its server connection, goes on there or nowhere. Once that
  connection is lost, in whichever order the close, its callback and the next command
  arrive, that command gets the loss answer (1213 for a transaction) and never runs on
  another connection in autocommit.
- ``_command_failed`` re-runs only what cannot have changed anything (nothing received,
  no state bound, a read); a COMMIT lost in flight is answered "may or may not have been
  applied", never "rolled back".
- ``_maybe_release`` keeps the server connection while a transaction is open or the
  session holds state that cannot move (see session/state.py); otherwise it goes back to
  the pool after each answer (transaction pooling).

Session states, and the moves between them, are in TRANSITIONS below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from proxyd.protocol.constants import (
    COM_RESET_CONNECTION,
    COMMAND,
    MAX_PACKET_PAYLOAD,
    SERVER_STATUS,
)
from proxyd.protocol.errors import PacketTooLarge, ProtocolError
from proxyd.protocol.messages import build_err
from proxyd.protocol.response import ResponseTracker
from proxyd.session.answers import (
    ER_NET_PACKET_TOO_LARGE,
    ER_STMT_HAS_NO_OPEN_CURSOR,
    ER_UNKNOWN_COM,
    REFUSED_COMMANDS,
    is_lost_transaction,
    lost_in_flight_err,
    lost_state_err,
    lost_transaction_err,
)
from proxyd.session.hints import NO_HINTS, analyse, replace_connection_id
from proxyd.session.identity import PROCESSLIST_COLUMNS, THREADS_COLUMNS, Client, ProcessView
from proxyd.session.routing import is_replica_read
from proxyd.session.state import PreparedStatement, charset_id
from proxyd.session.statements import cannot_commit, is_plain_rollback, is_retry_safe, uses_tables

if TYPE_CHECKING:
    from proxyd.pool import Pool

from proxyd.server.connection import PROTOCOL_ERROR
from proxyd.session.base import MAX_BUFFERED_INPUT, RETRY_PAUSE, ServerConnection, State
from proxyd.session.local import LocalCommands
from proxyd.session.login import LoginPhase
from proxyd.session.record import COMMIT_IN_FLIGHT, NOT_REPLAYABLE
from proxyd.session.replaying import TransactionReplay

log = logging.getLogger("proxyd.frontend")


# Character sets with characters of more than one byte at the least (mbminlen > 1): the
# server refuses them as character_set_client.
NOT_CLIENT_CHARSETS = frozenset(("ucs2", "utf16", "utf16le", "utf32"))
ER_WRONG_VALUE_FOR_VAR = 1231


def _not_client(name: str) -> str:
    return f"Variable 'character_set_client' can't be set to the value of '{name}'"


class SessionCore(LoginPhase, LocalCommands, TransactionReplay):
    """One client session's decisions; see the module docstring."""

    # Commands answered without a server connection, by command byte (filled below).
    _LOCAL_COMMANDS: ClassVar[dict[int, Callable[[SessionCore, bytes], None]]] = {}

    def receive_data(self, data: bytes) -> None:
        """Bytes from the client."""
        self.last_active = time.monotonic()
        self.daemon.stats.counters["bytes_received"] += len(data)
        self._reader.feed(data)
        try:
            if self.state is State.AUTHENTICATING and not self._auth_stage:
                self._authenticate()
            self._pump()
        except PacketTooLarge as exc:
            if self.state is State.AUTHENTICATING:
                self._protocol_violation(f"login {exc}")
                return
            # What the server itself answers, and like it, proxyd closes the connection.
            log.warning("client %s: packet above max_allowed_packet; closing", self.peer)
            self.daemon.stats.inc("client_protocol_errors")
            self._refuse(
                ER_NET_PACKET_TOO_LARGE,
                "Got a packet bigger than 'max_allowed_packet' bytes",
                seq=1,
                sql_state=b"08S01",
            )
        except ProtocolError as exc:
            self._protocol_violation(str(exc))

    def _pump(self) -> None:
        """Take client packets while nothing else is in flight."""
        while self.state is State.IDLE or self.state is State.INFILE or self._auth_stage:
            packet = self._reader.next_packet()
            if packet is None:
                break
            seq, payload = packet
            if self._auth_stage:
                self._authenticated(self._auth.switched(payload, seq))
                continue
            if self.state is State.INFILE:
                self._relay_infile(seq, payload)
                continue
            if self._reader.first_seq != 0:
                raise ProtocolError(
                    f"command with sequence id {self._reader.first_seq} (expected 0)"
                )
            if not payload:
                raise ProtocolError("empty command packet")
            self._dispatch(payload)
        if self._reader.buffered > MAX_BUFFERED_INPUT and self.state is not State.IDLE:
            self.pause_reading()
        elif self._paused and self.state is State.IDLE:
            self.resume_reading()

    def _dispatch(self, payload: bytes) -> None:
        command = payload[0]
        stats = self.daemon.stats
        stats.inc("commands")
        if command == COMMAND.COM_QUERY:
            stats.inc("queries")
            self._hints = analyse(payload[1:])
            if self._hints is not NO_HINTS:
                rewritten = self._local_query(payload)
                if rewritten is None:
                    return
                payload = rewritten
        else:
            self._hints = NO_HINTS
            handler = self._LOCAL_COMMANDS.get(command)
            if handler is not None:
                handler(self, payload)
                return
            if command == COMMAND.COM_PROCESS_KILL:
                if len(payload) < 5:
                    raise ProtocolError("COM_PROCESS_KILL too short")
                rewritten = self._kill(False, int.from_bytes(payload[1:5], "little"))
                if rewritten is None:
                    return
                payload = rewritten
            if command in REFUSED_COMMANDS or command > COM_RESET_CONNECTION:
                self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
                return
        self._stmt = None
        if command in (COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_FETCH):
            stmt = self._statement(payload)
            if stmt is None:
                return
            if command == COMMAND.COM_STMT_FETCH and self.cs.cursor_statement != stmt.id:
                self._write(
                    build_err(
                        ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({stmt.id}) has no open cursor"
                    ),
                    1,
                )
                return
            self._stmt = stmt
        self._command = payload
        self._attempts = 0
        self._verify_after = 0.0
        if self._gate():
            return
        self._run()

    def _local_query(self, payload: bytes) -> bytes | None:
        """Statements proxyd answers (None) or rewrites (the COM_QUERY to forward)."""
        hints = self._hints
        if hints.kill is not None:
            return self._kill(*hints.kill)
        if hints.set_names is not None:
            name, collation = hints.set_names
            if name in NOT_CLIENT_CHARSETS:
                # The server's own refusal: these cannot be a client's character set.
                self._write(build_err(ER_WRONG_VALUE_FOR_VAR, _not_client(name), b"42000"), 1)
                return None
            charset = None
            if collation is None:
                charset = self.daemon.server.default_collations.get(name)
            if charset is None:
                charset = charset_id(name, collation)
            if charset is not None:
                # Movable state: recorded here, applied on whichever backend runs next.
                self.cs.set_charset(charset)
                self._write(self._ok(), 1)
                return None
        if hints.connection_id:
            return b"\x03" + replace_connection_id(payload[1:], self.id)
        return payload

    def _process_view(self, backend: ServerConnection, asked: bytes) -> ProcessView:
        """Who holds which server connection right now, for rewrite_ids(): every client
        using one is shown by its own id; clients of this pool between statements as
        idle connections; proxyd's idle ones not at all."""
        now = time.monotonic()
        held: dict[int, Client] = {}
        idle: list[Client] = []
        for session in self.daemon.sessions:
            if session.state in (State.AUTHENTICATING, State.CLOSED):
                continue
            used = session.backend
            if used is not None and not used.closed:
                held[used.thread_id] = Client(session.id, session.user, session.peer)
            elif session.pool is self.pool:
                idle.append(
                    Client(
                        session.id,
                        session.user,
                        session.peer,
                        session.cs.schema,
                        now - session.last_active,
                    )
                )
        # A connection still running the statement of a client that left is shown as
        # the server's: it is working, and KILL of its id reaches it.
        threads = self.daemon.server.threads
        hidden = [
            thread_id
            for thread_id, conn in threads.open.items()
            if thread_id not in held and not conn.relaying
        ]
        # Connections being opened (not in a pool yet) are in threads.open too; those
        # proxyd just closed linger on the server a moment.
        hidden += threads.lingering(now)
        columns = self.daemon.server.columns
        return ProcessView(
            held,
            hidden,
            idle,
            backend.thread_id,
            asked,
            columns.get("PROCESSLIST", PROCESSLIST_COLUMNS),
            columns.get("threads", THREADS_COLUMNS),
            columns,
        )

    def _read_pool(self) -> Pool | None:
        """With ``backend.reads: replicas``: the replica pool the command in flight reads
        on, or None (the primary). Only an autocommit read that moves freely (no
        transaction, no state held, not a re-run after a failure: re-runs go to the
        primary) in transaction pooling, as session/routing.py tells it."""
        router = self.daemon.router
        own = self.pool
        cs = self.cs
        if (
            router is None
            or own is None
            or self._attempts
            or cs.bound
            or not cs.status_flags & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
            or self.daemon.config.pool.mode == "session"
        ):
            return None
        hints = self._hints
        if hints is not NO_HINTS and (
            hints.server_ids is not None or hints.diagnostics or hints.calc_found_rows
        ):
            return None
        if not self._is_read():
            return None
        server = router.pick()
        if server is None:
            self.daemon.stats.inc("reads_no_replica")
            return None
        pool = router.pool(server, own)
        if not pool.idle and not server.has_room():
            self.daemon.stats.inc("reads_no_replica")
            return None
        return pool

    def _is_read(self) -> bool:
        """The command only reads, as session/routing.py tells it (a prepared statement's
        answer kept with it)."""
        command = self._command[0]
        if command == COMMAND.COM_QUERY:
            return is_replica_read(self._command[1:])
        stmt = self._stmt
        if command == COMMAND.COM_STMT_EXECUTE and stmt is not None:
            if stmt.replica_read is None:
                stmt.replica_read = is_replica_read(stmt.sql)
            return stmt.replica_read
        return False

    def _needs_primary(self) -> bool:
        """A command that may write (or start a transaction): with no writable server it
        waits for one; a read runs on whichever server the pool has."""
        command = self._command[0]
        if command in (COMMAND.COM_QUERY, COMMAND.COM_STMT_EXECUTE):
            return not self._is_read()
        return False

    def _leave_replica(self) -> None:
        """The session holds a replica's connection only for what its last read left
        (warnings for SHOW WARNINGS, an open cursor): any other command gives it back."""
        backend = self.backend
        if backend is None or backend.pool is self.pool or self.cs.bound:
            return
        command = self._command[0]
        if command == COMMAND.COM_STMT_FETCH or (
            command == COMMAND.COM_QUERY and self._hints.diagnostics
        ):
            return
        self._release_backend(reset=False)

    def _must_wait_for_write(self, pool: Pool) -> bool:
        """Read-your-writes: is the client's last write not known to be applied on the
        replica ``pool`` connects to?"""
        gtid = self.cs.last_gtid
        if not gtid or pool is self.pool or not self.daemon.config.backend.read_your_writes:
            return False
        seen, applied = self._gtid_applied
        if seen != gtid:
            self._gtid_applied = (gtid, set())
            return True
        return id(pool.server) not in applied

    def _in_sync(self, backend: ServerConnection) -> bool:
        cs = self.cs
        return (
            backend.charset == cs.charset
            and backend.vars == cs.vars
            and (cs.schema is None or backend.schema == cs.schema)
            and backend.multi_statements == cs.multi_statements
            and (
                not self._hints.reads_last_insert_id or backend.last_insert_id == cs.last_insert_id
            )
            and (self._stmt is None or backend.statement_id(self._stmt.sql) is not None)
        )

    def _hold(self, backend: ServerConnection) -> None:
        self.backend = backend
        backend.holder = self

    def _gate(self) -> bool:
        """The one check before a command may go to a server connection.

        A session in a transaction or holding state on its server connection goes on
        there or nowhere: once that connection is lost, whichever came first (its close,
        the close's callback, this command), the next command gets the loss answer
        (1213 for a transaction) instead of running on another connection outside the
        transaction. Returns True when the command was answered here.
        """
        backend = self.backend
        if backend is not None and backend.closed:
            self.backend_lost(backend, backend.close_reason or "closed")
        elif backend is None and self.cs.bound and not self._replay_owed:
            self._note_lost("no server connection")
        if self._replay_owed:
            return self._replay_owed_gate()
        loss = self._loss
        if loss is None:
            return False
        self._loss = None
        self.daemon.stats.inc("errors_passed_on")
        if is_lost_transaction(loss) and is_plain_rollback(self._command):
            # What the client asks for has happened: the server rolled it back.
            loss = self._ok()
        if self.state is State.IDLE:
            self._write(loss, 1)  # from _dispatch: nothing started
        else:
            self._finish_local(loss)
        return True

    def _note_lost(self, reason: str) -> None:
        """The server connection holding this idle session's state is gone."""
        cs = self.cs
        in_transaction = cs.in_transaction
        if in_transaction and self._can_replay():
            self._replay_owed = True
            log.info(
                "session %s: backend lost inside a transaction (%s); replaying it before the"
                " next statement",
                self.id,
                reason,
            )
            return
        why = self._count_lost_transaction() if in_transaction else None
        lost = cs.lose_backend()
        if in_transaction or lost:
            self.daemon.stats.inc("session_state_lost")
        if in_transaction:
            self._loss = lost_transaction_err(why)
            log.warning("session %s: backend lost inside a transaction (%s)", self.id, reason)
        elif lost:
            self._loss = lost_state_err(lost)
            log.warning(
                "session %s: backend holding %s lost (%s); that state is gone",
                self.id,
                lost,
                reason,
            )
        else:
            self.daemon.stats.inc("errors_hidden")

    def _answered(self, tracker: ResponseTracker) -> None:
        """The backend streamed the whole answer (or paused for LOCAL INFILE)."""
        if self.state is State.CLOSED:
            return
        if tracker.awaiting_infile:
            if self._record is not None:
                self._infile_started()
            self._to(State.INFILE)
            self._pump()
            return
        self._tracker = None
        self._end_kill()
        self.daemon.stats.observe_query(time.monotonic() - self._started)
        long_data: tuple[bytes, ...] = ()
        if self._stmt is not None:
            long_data = tuple(self._stmt.long_data)
            self._stmt.long_data.clear()  # kept until now for a re-run
        self._absorb(tracker)
        if tracker.digest is not None or self._record is not None:
            self._note_transaction(tracker, long_data)
        self._to(State.IDLE)
        self._maybe_release()
        self._pump()

    def _absorb(self, tracker: ResponseTracker) -> None:
        cs = self.cs
        command = self._command[0]
        was_in_transaction = cs.in_transaction
        cs.absorb(
            command,
            tracker,
            self._hints,
            uses_tables="warnings" not in cs.pins or uses_tables(command, self._command),
        )
        if was_in_transaction and not cs.in_transaction:
            self.daemon.stats.inc("transactions")
        backend = self.backend
        if backend is not None and tracker.ok is not None and tracker.ok.last_insert_id:
            backend.last_insert_id = tracker.ok.last_insert_id
        prep = tracker.prepare_ok
        if command == COMMAND.COM_STMT_PREPARE and prep is not None:
            stmt_id = cs.next_statement_id
            cs.next_statement_id += 1
            sql = self._command[1:]
            cs.statements[stmt_id] = PreparedStatement(
                stmt_id, sql, prep.num_params, prep.num_columns
            )
            if backend is not None:
                backend.remember_statement(sql, prep.statement_id)
        elif command == COMMAND.COM_STMT_EXECUTE and "cursor" in cs.pins and self._stmt is not None:
            cs.cursor_statement = self._stmt.id

    def backend_lost(self, backend: ServerConnection, reason: str) -> None:
        if backend is not self.backend:
            return
        self.backend = None
        if self.state is State.CLOSED:
            return
        tracker = self._tracker
        if self.state in (State.IN_COMMAND, State.INFILE) and tracker is not None:
            self._tracker = None
            self._command_failed(tracker, reason)
            return
        self._note_lost(reason)

    def _command_failed(self, tracker: ResponseTracker, reason: str) -> None:
        """The backend died with our command in flight."""
        nothing_sent = not tracker.in_result_rows and tracker.last_seq < 0
        cs = self.cs
        was_in_trans = cs.in_transaction
        command, stmt = self._command, self._stmt
        prepared = stmt.sql if stmt is not None else None
        # An answer proxyd could not follow would fail the same way again: not re-run.
        garbled = reason.startswith(PROTOCOL_ERROR)
        if nothing_sent and not cs.bound and not garbled and is_retry_safe(command, prepared):
            # retry.max_attempts counts tries in total, the first included.
            retry = self.daemon.config.retry
            now = time.monotonic()
            if self._attempts == 0:
                self._retry_deadline = now + retry.timeout
            self._attempts += 1
            if self._attempts < retry.max_attempts and now < self._retry_deadline:
                self.daemon.stats.inc("retries")
                self.daemon.stats.inc("errors_hidden")
                log.info(
                    "session %s: backend lost (%s); re-running a read-only command", self.id, reason
                )
                # Whatever killed that connection (a KILL round, a restart) may have killed
                # the idle ones too: re-run on one heard from since, after a short pause.
                self._verify_after = now
                self._pool_now = None  # a re-run goes to the primary
                pause = min(RETRY_PAUSE * 2 ** (self._attempts - 1), self._retry_deadline - now)
                self._to(State.ACQUIRING)
                self._rerun(pause)
                return
        why = None
        if was_in_trans and self._record is not None:
            if (
                nothing_sent
                and not garbled
                and self._can_replay()
                and cannot_commit(command, prepared)
                and not is_plain_rollback(command)
            ):
                log.info(
                    "session %s: backend lost inside a transaction (%s); replaying it, then"
                    " this statement",
                    self.id,
                    reason,
                )
                if self.state is State.INFILE:
                    self._to(State.IN_COMMAND)
                self._to(State.ACQUIRING)
                self._replay()
                return
            if not cannot_commit(command, prepared):
                self._count_lost_transaction(COMMIT_IN_FLIGHT)
            elif not nothing_sent or garbled:
                self._count_lost_transaction(NOT_REPLAYABLE)
            else:
                why = self._count_lost_transaction()
        self.daemon.stats.inc("errors_passed_on")
        if stmt is not None:
            stmt.long_data.clear()
        lost = cs.lose_backend()
        if lost:
            self.daemon.stats.inc("session_state_lost")
        also = f"; lost with it: {lost}" if lost and not was_in_trans else ""
        if was_in_trans and nothing_sent and is_plain_rollback(command):
            err = self._ok()  # rolled back either way
        elif was_in_trans and cannot_commit(command, prepared):
            err = lost_transaction_err(why)
        else:
            err = lost_in_flight_err(
                reason,
                in_transaction=was_in_trans,
                garbled=garbled,
                nothing_sent=nothing_sent,
                also=also,
            )
        seq = tracker.last_seq + 1 if tracker.last_seq >= 0 else 1
        if self.state is State.INFILE:
            self._to(State.IN_COMMAND)
        owed = tracker.unfinished_packet
        if owed and owed < MAX_PACKET_PAYLOAD:
            # Complete the row the client is reading (zeros read as empty values), so the
            # ERR that follows is read as a packet, not as the rest of that row.
            self.send(b"\x00" * owed)
        self._write(err, seq)
        if tracker.done:
            # The answer looked whole when bytes came after it: the client may have read
            # it as such, and would take this ERR for the answer to its next command.
            log.warning("session %s: closing the client after an unfollowable answer", self.id)
            self._close()
            return
        self._end_kill()
        self._to(State.IDLE)
        self._pump()


SessionCore._LOCAL_COMMANDS.update(
    {
        COMMAND.COM_QUIT: SessionCore._com_quit,
        COMMAND.COM_PING: SessionCore._com_ping,
        COMMAND.COM_STMT_CLOSE: SessionCore._com_stmt_close,
        COMMAND.COM_STMT_RESET: SessionCore._com_stmt_reset,
        COMMAND.COM_STMT_SEND_LONG_DATA: SessionCore._com_stmt_send_long_data,
        COMMAND.COM_SET_OPTION: SessionCore._com_set_option,
        COM_RESET_CONNECTION: SessionCore._com_reset_connection,
        COMMAND.COM_CHANGE_USER: SessionCore._com_change_user,
    }
)
