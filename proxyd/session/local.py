"""Commands a client session answers itself, without a server connection: sans-IO.

COM_PING, COM_STMT_CLOSE/RESET/SEND_LONG_DATA (prepared statements are the client's, kept
here and prepared on whichever server connection runs them), COM_SET_OPTION,
COM_RESET_CONNECTION, and KILL of another client's session or query.
"""

from __future__ import annotations

import logging

from proxyd.protocol.messages import build_err
from proxyd.session.answers import (
    ER_NO_SUCH_THREAD,
    ER_QUERY_INTERRUPTED,
    ER_UNKNOWN_COM,
)
from proxyd.session.base import SessionBase, State
from proxyd.session.hints import NO_HINTS
from proxyd.session.state import PreparedStatement

log = logging.getLogger("proxyd.frontend")


class LocalCommands(SessionBase):
    """See the module docstring."""

    def _proxyd_thread(self, thread_id: int) -> bool:
        """One of proxyd's server connections that a client holds (the process list shows
        it by the client's id) or that waits for one (hidden). Only one still running the
        statement of a client that left is shown, and killable, by its own id."""
        return any(
            conn.thread_id == thread_id and (conn.holder is not None or not conn.relaying)
            for pool in self.daemon.all_pools()
            for conn in pool.conns
        )

    def _com_quit(self, payload: bytes) -> None:
        self._close()

    def _com_ping(self, payload: bytes) -> None:
        self._write(self._ok(), 1)

    def _com_stmt_close(self, payload: bytes) -> None:
        if len(payload) < 5:
            return
        stmt_id = int.from_bytes(payload[1:5], "little")
        stmt = self.cs.statements.pop(stmt_id, None)
        if stmt is not None and self.cs.cursor_statement == stmt_id:
            self._close_cursor(stmt)
        # The backend keeps its copy for the next client that prepares the same SQL.

    def _com_stmt_reset(self, payload: bytes) -> None:
        stmt = self._statement(payload)
        if stmt is None:
            return
        stmt.long_data.clear()
        if self.cs.cursor_statement == stmt.id:
            self._close_cursor(stmt)
        self._write(self._ok(), 1)

    def _close_cursor(self, stmt: PreparedStatement) -> None:
        # Closing the server's statement closes its cursor; it is prepared again if needed.
        self.cs.cursor_statement = None
        self.cs.pins.pop("cursor", None)
        backend = self.backend
        if backend is not None and backend.statement_id(stmt.sql) is not None:
            backend.forget_statement(stmt.sql)
        self._maybe_release()

    def _com_stmt_send_long_data(self, payload: bytes) -> None:
        # Kept until the execute, which may run on another backend; no answer is sent.
        if len(payload) < 7:
            return
        stmt = self.cs.statements.get(int.from_bytes(payload[1:5], "little"))
        if stmt is not None:
            stmt.long_data.append(payload[5:])

    def _com_set_option(self, payload: bytes) -> None:
        if len(payload) < 3 or payload[1] not in (0, 1):
            self._write(build_err(ER_UNKNOWN_COM, "Unknown command", b"08S01"), 1)
            return
        self.cs.multi_statements = payload[1] == 0
        self._write(self._eof_or_ok(), 1)

    def _com_reset_connection(self, payload: bytes) -> None:
        self.cs.reset()
        self._loss = None
        self._release_backend(reset=True)
        self._write(self._ok(), 1)

    def _kill(self, query_only: bool, target_id: int) -> bytes | None:
        """KILL [QUERY] <id>, where the id is one proxyd showed a client (its session id)
        or a server thread that is not proxyd's.

        Killing a connection closes that client and with it any backend it is using;
        killing a query runs KILL QUERY on the server for the backend running it. proxyd's
        own server connections are not the client's to kill: unknown thread, as the process
        list never shows them. Returns the COM_QUERY to forward, or None when answered here.
        """
        target = next((s for s in self.daemon.sessions if s.id == target_id), None)
        if target is None and not self._proxyd_thread(target_id):
            # No client's: another application's connection or the server's own thread,
            # whose ids the process list shows as they are. The server decides.
            self._hints = NO_HINTS
            return b"\x03" + b"KILL %s%d" % (b"QUERY " if query_only else b"", target_id)
        if target is None or target.user != self.user:
            self._write(build_err(ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}"), 1)
            return None
        backend = target.backend
        if target is self:
            if query_only:
                self._write(
                    build_err(ER_QUERY_INTERRUPTED, "Query execution was interrupted", b"70100"), 1
                )
            else:
                self.goodbye()
            return None
        if not query_only:
            target.goodbye()
            self._write(self._ok(), 1)
            return None
        if target.state is State.IN_COMMAND and backend is not None:
            self._hints = NO_HINTS
            self._kill_of = (target, backend)  # checked again when it is sent
            return b"\x03" + f"KILL QUERY {backend.thread_id}".encode()
        self._write(self._ok(), 1)
        return None
