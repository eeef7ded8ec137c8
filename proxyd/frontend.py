"""Client sessions over asyncio: the MySQL server that applications see.

ClientSession is the thin adapter between a client's socket and the session's sans-IO
core (proxyd/session/core.py). The core decides; this module does what it asks: writes
to the client, borrows a server connection from the user's pool (or keeps the one it
holds), brings that connection's session to the client's state (schema, character set,
session variables, prepared statements), forwards the command and lets the server
connection stream the answer straight to the client's transport. Flow control between
the two sockets is here too (pause_writing / pause_reading).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from proxyd.pool import AcquireError, Waiter
from proxyd.protocol.constants import COMMAND
from proxyd.protocol.messages import ErrPacket, build_err
from proxyd.protocol.packets import encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.replay import replay_transaction
from proxyd.server.connection import BackendConnection, BackendError
from proxyd.session.answers import ER_CON_COUNT, ER_HANDSHAKE, ER_UNKNOWN_ERROR
from proxyd.session.base import State
from proxyd.session.core import SessionCore
from proxyd.session.hints import replace_previous_results
from proxyd.session.identity import rewrite_ids
from proxyd.session.login import DEFAULT_SERVER_VERSION
from proxyd.session.state import PreparedStatement, execute_packets, with_param_types
from proxyd.tls import TLSError, TLSLayer, TLSTransport

__all__ = ["DEFAULT_SERVER_VERSION", "ClientSession", "State"]

log = logging.getLogger("proxyd.frontend")


class ClientSession(SessionCore, asyncio.Protocol):
    """One client connection: SessionCore's actions over asyncio."""

    backend: BackendConnection | None
    _last_backend: BackendConnection | None

    def __init__(self, daemon: Any) -> None:
        super().__init__(daemon)
        self.transport: asyncio.Transport | None = None
        self._login_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiter: Waiter | None = None  # queued in the pool with enqueue()
        self._writing_paused = False  # the client's unread answers passed the high mark
        self._logging_in = False  # counted in daemon.logins_in_progress
        self._tls: TLSLayer | None = None  # the client speaks TLS (after its SSLRequest)
        self._raw: asyncio.Transport | None = None  # the socket's transport, under TLS

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "localhost")
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else "localhost"
        daemon = self.daemon
        if not daemon.accepting:
            self._refuse(ER_CON_COUNT, "proxyd: shutting down", seq=0)
            return
        if len(daemon.sessions) >= daemon.config.max_client_connections:
            daemon.stats.inc("clients_refused")
            log.warning("client %s: refused, max_client_connections reached", self.peer)
            self._refuse(ER_CON_COUNT, "Too many connections", seq=0)
            return
        if daemon.logins_in_progress >= daemon.config.auth.max_logins_in_progress:
            daemon.stats.inc("logins_refused")
            log.warning("client %s: refused, auth.max_logins_in_progress reached", self.peer)
            self._refuse(ER_CON_COUNT, "proxyd: too many connections logging in", seq=0)
            return
        daemon.logins_in_progress += 1
        self._logging_in = True
        daemon.sessions.add(self)
        self._login_timer = asyncio.get_running_loop().call_later(
            daemon.config.client_login_timeout, self._login_timed_out
        )
        self.send(self.greeting())

    # Bytes go straight to the core: no frame of our own on the hot path (a client that
    # asks for TLS gets _receive_tls in front, see _start_tls).
    data_received = SessionCore.receive_data

    def _start_tls(self, context: ssl.SSLContext, early: bytes) -> None:
        assert self.transport is not None
        self._tls = TLSLayer(context)
        self._raw = self.transport
        self.data_received = self._receive_tls  # type: ignore[method-assign]
        # The loop keeps the protocol's data_received from when it was set: set it again.
        self.transport.set_protocol(self)
        if early:
            self._receive_tls(early)

    def _receive_tls(self, data: bytes) -> None:
        layer, raw = self._tls, self._raw
        assert layer is not None and raw is not None
        try:
            plain, reply = layer.receive(data)
        except TLSError as exc:
            self.daemon.stats.inc("client_tls_errors")
            log.warning("client %s: TLS failed: %s; closing", self.peer, exc)
            raw.close()
            self._close_session()
            return
        if reply and not raw.is_closing():
            raw.write(reply)
        if layer.handshaken and self.transport is raw:
            self.transport = TLSTransport(raw, layer)
        if plain:
            self.receive_data(plain)
        if layer.closed:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_session()

    def pause_writing(self) -> None:
        # The client reads slower than the server sends: stop reading the server until it
        # catches up, or until that answer ends (BackendConnection.pause_relay).
        self._writing_paused = True
        if self.backend is not None:
            self.backend.pause_relay()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.backend is not None:
            self.backend.resume_relay()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    # -- the core's actions -------------------------------------------------------

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._close_session()

    def _logged_in(self) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        self._login_over()

    def _login_over(self) -> None:
        if self._logging_in:
            self._logging_in = False
            self.daemon.logins_in_progress -= 1

    def _wait_before_login(self, delay: float) -> None:
        # The login timeout starts again after the wait: a slowed login is not refused
        # for being slow.
        loop = asyncio.get_running_loop()
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = loop.call_later(
                delay + self.daemon.config.client_login_timeout, self._login_timed_out
            )
        loop.call_later(delay, self._login_waited)

    def _login_timed_out(self) -> None:
        if self.state is State.AUTHENTICATING:
            log.info("client %s: no login within client_login_timeout", self.peer)
            self._refuse(ER_HANDSHAKE, "proxyd: login timed out", seq=2)

    def _answer_later(self, pause: float, payload: bytes, seq: int) -> None:
        self._spawn(self._later(pause, payload, seq))

    async def _later(self, pause: float, payload: bytes, seq: int) -> None:
        await asyncio.sleep(pause)
        self._finish_local(payload, seq)

    def _run(self) -> None:
        if self.daemon.router is not None:
            self._run_routed()
        else:
            self._run_on_primary()

    def _run_routed(self) -> None:
        """_run with reads on replicas: the command's pool is chosen first."""
        self._leave_replica()
        self._pool_now = None
        if self.backend is None and not self.daemon.paused:
            pool = self._read_pool()
            if pool is not None:
                self._pool_now = pool
                backend = pool.take_idle(self.profile, self.cs)
                if backend is not None:
                    self._hold(backend)
                    if (
                        not backend.busy
                        and self._in_sync(backend)
                        and not self._must_wait_for_write(pool)
                    ):
                        self.daemon.stats.inc("reads_on_replicas")
                        self._forward(backend)
                        return
                self._start(self._acquire_and_forward())
                return
        self._run_on_primary()

    def _run_on_primary(self) -> None:
        backend = self.backend
        if backend is None and not self.daemon.holding:
            pool = self.pool
            assert pool is not None
            backend = pool.take_idle(self.profile, self.cs)
            if backend is None:
                # All busy: queue with no task; _handed() goes on from here.
                self._to(State.ACQUIRING)
                try:
                    self._waiter = pool.enqueue(self.profile, self._handed)
                except AcquireError as exc:
                    self._acquire_failed(exc)
                return
            pool.stats.observe_acquire_wait(0.0)
            self._hold(backend)
        if backend is not None and not backend.busy and self._in_sync(backend):
            self._forward(backend)
        else:
            self._start(self._acquire_and_forward())

    def _handed(self, outcome: BackendConnection | AcquireError) -> None:
        """The pool's answer to enqueue(): a connection fresh from use, or the error."""
        self._waiter = None
        if isinstance(outcome, AcquireError):
            self._acquire_failed(outcome)
            return
        if self.state is not State.ACQUIRING:  # closed meanwhile (dequeue() came too late)
            self._release_backend_to(outcome)
            return
        self._hold(outcome)
        if self._gate():
            return
        if not outcome.busy and self._in_sync(outcome):
            self._forward(outcome)
        else:
            self._spawn(self._acquire_and_forward())  # state to replay first

    def _acquire_failed(self, exc: AcquireError) -> None:
        err = exc.err
        self.daemon.stats.inc("errors_passed_on")
        self._finish_local(
            build_err(err.error_code, err.message, err.sql_state)
            if err is not None
            else build_err(ER_UNKNOWN_ERROR, str(exc))
        )

    def _release_backend_to(self, backend: BackendConnection) -> None:
        pool = backend.pool or self.pool
        if pool is not None:
            pool.release(backend)
        else:
            backend.close("client_gone")

    def _rerun(self, pause: float) -> None:
        self._spawn(self._rerun_after(pause))

    def _replay(self) -> None:
        self._spawn(self._replay_transaction())

    async def _replay_transaction(self) -> None:
        outcome, reason = await replay_transaction(self)
        self._replay_done(outcome, reason)

    def _relay_infile(self, seq: int, payload: bytes) -> None:
        backend = self.backend
        tracker = self._tracker
        if backend is None or tracker is None:
            return
        backend.forward_more(encode_packet(payload, seq))
        if not payload:
            self._to(State.IN_COMMAND)
            backend.resume_after_infile(tracker)

    def _release_backend(self, reset: bool) -> None:
        backend = self.backend
        if backend is None or self.pool is None:
            return
        self.backend = None
        if reset:
            backend.needs_reset = True
        (backend.pool or self.pool).release(backend)

    # -- getting a server connection ready ------------------------------------------

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._to(State.ACQUIRING)
        self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(self._task_done)

    def _read_account(self, name: str) -> None:
        self._spawn(self._look_up(name))

    async def _look_up(self, name: str) -> None:
        accounts = self.daemon.accounts
        assert accounts is not None
        found = await accounts.look_up(name)
        self.daemon.account_read(name, found)
        self._account_read(found)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A bug in the slow path must cost this client an ERR, never a hang."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("session %s: internal error", self.id, exc_info=task.exception())
        self._refuse(ER_UNKNOWN_ERROR, "proxyd: internal error; see proxyd's log", seq=1)

    async def _acquire_and_forward(self) -> None:
        """Slow path: get a backend, bring it to our state, then forward."""
        if self.daemon.paused and self.backend is None:
            # PAUSE (admin console): new work waits; a client holding a backend (in a
            # transaction, pinned) goes on, so that what is in flight can finish.
            await self.daemon.wait_unpaused()
        if self.daemon.primary_missing and self.backend is None and self._needs_primary():
            await self.daemon.wait_for_primary()
        deadline = time.monotonic() + self.daemon.config.retry.timeout
        while True:
            if self._gate():
                return
            try:
                backend = await self._ready_backend()
            except AcquireError as exc:
                self._acquire_failed(exc)
                return
            except BackendError as exc:
                # The backend died while we prepared it: nothing of the command was sent.
                # A session outside a transaction and holding no state moves on silently.
                self._drop_backend()
                if self._gate():
                    return
                log.info("session %s: backend lost before forwarding (%s); retrying", self.id, exc)
                self.daemon.stats.inc("errors_hidden")
                if time.monotonic() < deadline:
                    continue
                self._finish_local(build_err(ER_UNKNOWN_ERROR, f"proxyd: {exc}"))
                return
            if isinstance(backend, ErrPacket):
                self._finish_local(
                    build_err(backend.error_code, backend.message, backend.sql_state)
                )
                return
            if self.state is State.CLOSED:
                return
            if self._gate():
                return
            self._forward(backend)
            return

    async def _rerun_after(self, pause: float) -> None:
        await asyncio.sleep(pause)
        await self._acquire_and_forward()

    async def _ready_backend(self) -> BackendConnection | ErrPacket:
        """A backend held for us and brought to this client's session state."""
        assert self.pool is not None
        backend = self.backend
        if backend is None or backend.closed:
            if self.cs.bound:
                # Never reached past _gate(); kept so that no path can move such a session.
                raise BackendError("the session's server connection is gone")
            backend = await self._acquire()
            if self.state is State.CLOSED:
                self._release_backend_to(backend)
                raise AcquireError("client went away")
            self._hold(backend)
        while backend.busy:
            # A janitor ping is in flight.
            await asyncio.sleep(0.002)
            if backend.closed:
                raise BackendError("backend closed during ping")
        cs = self.cs
        stats = self.daemon.stats
        variables = cs.vars
        if self._hints.reads_last_insert_id and backend.last_insert_id != cs.last_insert_id:
            variables = {**variables, b"last_insert_id": str(cs.last_insert_id).encode()}
        err = await backend.take_state(cs.schema, cs.charset, variables, cs.multi_statements, stats)
        if err is not None:
            return err
        if b"last_insert_id" in variables:
            backend.vars.pop(b"last_insert_id", None)
            backend.last_insert_id = cs.last_insert_id
        stmt = self._stmt
        if stmt is not None and backend.statement_id(stmt.sql) is None:
            stats.inc("reprepares")
            result = await backend.prepare(stmt.sql)
            if isinstance(result, ErrPacket):
                return result
        pool = self._pool_now
        if pool is not None and pool is not self.pool:
            if self._must_wait_for_write(pool) and not await self._write_applied(backend):
                # The replica has not applied the client's last write in time: read on
                # the primary, where it is.
                self.backend = None
                self._release_backend_to(backend)
                self._pool_now = None
                return await self._ready_backend()
            stats.inc("reads_on_replicas")
        return backend

    async def _acquire(self) -> BackendConnection:
        """A connection of the command's pool; a replica's that cannot give one in time
        sends the read to the primary."""
        assert self.pool is not None
        pool = self._pool_now or self.pool
        if pool is not self.pool:
            try:
                return await pool.acquire(self.profile, verified_after=self._verify_after)
            except AcquireError as exc:
                log.info("session %s: read on the primary: replica unavailable (%s)", self.id, exc)
                self.daemon.stats.inc("reads_no_replica")
                self._pool_now = None
        return await self.pool.acquire(self.profile, verified_after=self._verify_after)

    async def _write_applied(self, backend: BackendConnection) -> bool:
        """Wait (up to backend.read_your_writes_timeout) until the replica has applied
        the client's last write; False when it has not."""
        gtid, applied = self._gtid_applied
        timeout = self.daemon.config.backend.read_your_writes_timeout
        self.daemon.stats.inc("read_your_writes_waits")
        try:
            rows = await backend.query(
                b"SELECT MASTER_GTID_WAIT('%s', %.3f)" % (gtid.replace(b"'", b""), timeout)
            )
        except BackendError as exc:
            if backend.closed:
                raise
            log.info("session %s: cannot wait for its last write on a replica: %s", self.id, exc)
            rows = None
        if isinstance(rows, list) and rows and rows[0][0] == b"0":
            assert self._pool_now is not None
            applied.add(id(self._pool_now.server))
            return True
        self.daemon.stats.inc("read_your_writes_on_primary")
        return False

    # -- forwarding ----------------------------------------------------------------

    def _forward(self, backend: BackendConnection) -> None:
        assert self.transport is not None
        if self._kill_of is not None and self._killing is None:
            # KILL QUERY of another client's statement. If that statement has ended, its
            # server connection may run someone else's now: nothing to kill. If not, the
            # connection goes to no other client until this KILL is answered.
            target, running = self._kill_of
            if target.backend is not running or target.state is not State.IN_COMMAND:
                self._finish_local(self._ok())
                return
            running.kill_sent()
            self._killing = running
        self._to(State.IN_COMMAND)
        payload = self._command
        command = payload[0]
        tracker = ResponseTracker(command, backend.capabilities, self.capabilities)
        if command == COMMAND.COM_STMT_PREPARE:
            tracker.statement_id = self.cs.next_statement_id
        elif self._wants_digest():
            tracker.digest = 0  # a transaction's answer, kept for a replay
        self._tracker = tracker
        self._started = time.monotonic()
        backend.read_timeout = self.daemon.config.backend.read_timeout
        hints = self._hints
        if (hints.reads_row_count or hints.reads_found_rows) and (
            backend is not self._last_backend or backend.last_session is not self
        ):
            # Those counts describe this server connection's previous statement, which
            # was not this client's: give the client its own, from its last answer.
            payload = b"\x03" + replace_previous_results(
                payload[1:], self.cs.row_count, self.cs.found_rows
            )
        if hints.server_ids is not None:
            # The process list and lock owners in client ids (proxyd/session/identity.py).
            view = self._process_view(backend, hints.server_ids)
            payload = b"\x03" + rewrite_ids(payload[1:], view)
        self._last_backend = backend
        backend.last_session = self
        stmt = self._stmt
        if stmt is None:
            packet = encode_packet(payload, 0)
        else:
            packet = self._statement_packets(backend, stmt, payload)
        backend.forward(packet, tracker, self.transport, self._answered)
        if self._writing_paused:
            backend.pause_relay()  # a client sending on without reading its answers

    def _statement_packets(
        self, backend: BackendConnection, stmt: PreparedStatement, payload: bytes
    ) -> bytes:
        """The client's statement command, speaking of this backend's statement id."""
        server_id = backend.statement_id(stmt.sql)
        assert server_id is not None
        if payload[0] == COMMAND.COM_STMT_EXECUTE:
            return execute_packets(server_id, with_param_types(stmt, payload), stmt.long_data)
        return execute_packets(server_id, payload, ())

    # -- the end of a session --------------------------------------------------------

    def _drop_backend(self) -> None:
        """Close the held backend; its loss reaches backend_lost like any other."""
        backend = self.backend
        if backend is not None:
            backend.close("dropped")
        self.backend = None

    def _close_session(self) -> None:
        """The client is gone (COM_QUIT, RST, timeout, KILL CLIENT): what its server
        connection holds for it ends now, not at that connection's next hand-out."""
        was = self.state
        if was is State.CLOSED:
            return
        self._to(State.CLOSED)
        if self._login_timer is not None:
            self._login_timer.cancel()
        self.daemon.sessions.discard(self)
        self._login_over()
        self._end_kill()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._waiter is not None and self.pool is not None:
            self.pool.dequeue(self._waiter)
            self._waiter = None
        backend = self.backend
        self.backend = None
        if backend is None:
            return
        backend.holder = None
        pool = backend.pool or self.pool
        if pool is None:
            backend.close("client_gone")
        elif was is State.IN_COMMAND and backend.forwarding:
            pool.abandon(backend)
        elif backend.busy or was is State.INFILE:
            # Mid-way through proxyd's own command, or a LOCAL INFILE half sent.
            backend.close("client_gone")
        else:
            # Rolls back, releases locks, drops temporary tables, before anyone waits.
            backend.needs_reset = self.cs.pinned or self.cs.in_transaction
            pool.release(backend)

    def idle_time(self) -> float:
        return time.monotonic() - self.last_active

    def wants_to_finish(self) -> bool:
        """For graceful shutdown: is something in flight that should complete?"""
        return (
            self.state in (State.ACQUIRING, State.IN_COMMAND, State.INFILE)
            or self.cs.in_transaction
        )
