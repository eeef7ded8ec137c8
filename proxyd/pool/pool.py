"""A user's pool of server connections: hand-out and return.

A Pool hands healthy BackendConnections to client sessions and takes them back: an idle
one at once when its health is certain (take_idle, no I/O), else after a ping, else a new
one within ``max_size``, else the session queues (FIFO, O(1) per hand-out). A connection
that comes back dirty (a transaction, pinned state) is reset before anyone else gets it;
one whose client left mid-statement is stopped (abandon). Its upkeep (pings, lifetime,
min_idle) is the janitor's (janitor.py); what all pools of a server share is server.py's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxyd.config import PoolConfig, UserConfig
from proxyd.pool.janitor import Janitor, lifetime, ping_interval
from proxyd.pool.server import SERVER_REFUSALS, AcquireError, Server
from proxyd.protocol.messages import ErrPacket
from proxyd.protocol.response import ResponseTracker
from proxyd.server.connection import BackendConnection, BackendError, BackendGone
from proxyd.stats import Stats


class SessionShape(Protocol):
    """What take_idle() compares of a client's session with a connection's."""

    schema: bytes | None
    charset: int
    vars: dict[bytes, bytes]


log = logging.getLogger("proxyd.pool")

MATCH_SCAN = 8  # idle connections looked at for one whose session already matches


# eq=False: waiters are compared by identity (`in`, remove()), in C; a generated __eq__
# comparing fields in Python cost a third of proxyd's CPU with 512 clients queueing.
@dataclass(slots=True, eq=False)
class Waiter:
    """A client queueing for a connection: an awaiting task (``future``), or a session's
    ``callback`` called with the connection (or the AcquireError) with no task at all."""

    profile: int
    future: asyncio.Future[BackendConnection] | None
    since: float
    callback: Callable[[BackendConnection | AcquireError], None] | None = None
    timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self.future is None or not self.future.done()


class Pool:
    """Backend connections of one user; see the module docstring."""

    def __init__(self, user: UserConfig, config: PoolConfig, server: Server, stats: Stats) -> None:
        self.user = user
        self.config = config
        self.server = server
        self.stats = stats
        self.idle: list[BackendConnection] = []  # LIFO: hot ones stay hot
        self.conns: set[BackendConnection] = set()
        self.connecting = 0
        self.waiters: collections.deque[Waiter] = collections.deque()
        self.last_profile = 0
        self.closed = False
        self._janitor = Janitor(self)
        self._stopping: set[asyncio.Task[None]] = set()  # abandon() at work
        # Connections opened before this moment (monotonic) are closed instead of reused
        # when they come back: the daemon sets it for RECONNECT and for a new backend
        # address or credentials, and closes the idle ones itself.
        self.drain_before = 0.0
        # The server's last refusal of this user's login (1045, 1040...), until a login works.
        self.refusal: ErrPacket | None = None
        # SHA1(password) learned from a client's login, for a user proxyd knows only by
        # its hash (user.backend_password None): until then the pool cannot connect.
        self.password_sha1: bytes | None = None
        # A replica's pool (proxyd/pool/router.py): a failed connect fails its waiters at
        # once, who read on the primary instead, rather than waiting acquire_timeout.
        self.fail_fast = False

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def size(self) -> int:
        return len(self.conns) + self.connecting

    def start(self) -> None:
        self._janitor.start()

    def ping_interval(self, conn: BackendConnection) -> float:
        return ping_interval(self.config, conn)

    def lifetime(self, conn: BackendConnection) -> float:
        return lifetime(self.config, conn)

    # -- hand-out ----------------------------------------------------------------

    def take_idle(self, profile: int, want: SessionShape | None = None) -> BackendConnection | None:
        """An idle connection ready right now, or None (no waiting, no I/O).

        Prefers, among the most recently used, one whose server session already matches
        the client's (schema, character set, variables), so nothing needs replaying.
        """
        idle = self.idle
        best = -1
        looked = 0
        for i in range(len(idle) - 1, -1, -1):
            conn = idle[i]
            if conn.profile != profile or conn.closed:
                continue
            if conn.idle_for >= self.ping_interval(conn):
                continue  # health uncertain: acquire() checks it first
            if best < 0:
                best = i
            if want is None or (
                conn.schema == want.schema
                and conn.charset == want.charset
                and conn.vars == want.vars
            ):
                best = i
                break
            looked += 1
            if looked >= MATCH_SCAN:
                break
        if best < 0:
            return None
        return idle.pop(best)

    async def acquire(
        self,
        profile: int,
        timeout: float | None = None,
        verified_after: float = 0.0,
        first: bool = False,
    ) -> BackendConnection:
        """A healthy connection of this profile; raise AcquireError after ``timeout``.

        A connection is pinged first when its health is uncertain: idle past its ping
        interval, or (``verified_after``, for a re-run after a failure) not heard from
        since that moment, when whatever killed one connection may have killed it too.
        """
        self._admit(profile)
        deadline = time.monotonic() + (self.config.acquire_timeout if timeout is None else timeout)
        while True:
            conn = self._pop_idle(profile)
            if conn is not None:
                self.stats.observe_acquire_wait(0.0)
            if conn is None:
                conn = await self._wait(profile, deadline, first)
            if conn.idle_for >= self.ping_interval(conn) or conn.last_active < verified_after:
                try:
                    await conn.ping(self.server.config.ping_timeout)
                    self.stats.inc("pings")
                except (BackendError, asyncio.TimeoutError):
                    self.stats.inc("pings_failed")
                    conn.close("ping_failed")
                    continue
            if conn.closed:
                continue
            return conn

    def _admit(self, profile: int) -> None:
        """Raise AcquireError when waiting is pointless: shutting down, or the server
        refused proxyd's login and will not be asked again yet."""
        if self.closed:
            raise AcquireError("proxyd: pool is shutting down")
        self.last_profile = profile
        refusal = self.refusal
        if refusal is not None and not self.idle and time.monotonic() < self.server.next_attempt:
            self.stats.inc("acquire_refused")
            raise AcquireError(refusal.message.decode(errors="replace"), refusal)

    def enqueue(
        self, profile: int, callback: Callable[[BackendConnection | AcquireError], None]
    ) -> Waiter:
        """Queue for a connection with no task and no await: ``callback`` is called with
        one as soon as one is free (from release(), a new connect, the janitor), or with
        the AcquireError after ``acquire_timeout``. A connection handed over this way has
        just been used or checked, so it needs no ping. Raises AcquireError at once where
        acquire() would; see dequeue() for a client that leaves first."""
        self._admit(profile)
        waiter = Waiter(profile, None, time.monotonic(), callback)
        waiter.timer = asyncio.get_running_loop().call_later(
            self.config.acquire_timeout, self._expire, waiter
        )
        self.waiters.append(waiter)
        self._grow()
        return waiter

    def dequeue(self, waiter: Waiter) -> None:
        """The client queued with enqueue() left before its turn."""
        if waiter.timer is not None:
            waiter.timer.cancel()
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    def _expire(self, waiter: Waiter) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)
        self._waited(waiter)
        assert waiter.callback is not None
        waiter.callback(self._timeout_error())

    def _timeout_error(self) -> AcquireError:
        self.stats.inc("acquire_timeouts")
        why = (
            "server unreachable: " + self.server.last_error
            if not self.server.up
            else f"all {self.config.max_size} backend connections of user {self.name!r} are busy"
        )
        return AcquireError(
            f"proxyd: no backend connection within acquire_timeout "
            f"({self.config.acquire_timeout:g}s); {why}"
        )

    def _waited(self, waiter: Waiter) -> None:
        self.stats.observe_acquire_wait(time.monotonic() - waiter.since)

    def _deliver(self, waiter: Waiter, outcome: BackendConnection | AcquireError) -> None:
        """Give a queued client its connection (or its error)."""
        if waiter.future is not None:
            if isinstance(outcome, AcquireError):
                waiter.future.set_exception(outcome)
            else:
                waiter.future.set_result(outcome)
            return
        if waiter.timer is not None:
            waiter.timer.cancel()
        self._waited(waiter)
        assert waiter.callback is not None
        try:
            waiter.callback(outcome)
        except Exception:
            # A bug in one queued session must not reach whoever released the connection.
            log.exception("pool %s: error handing a connection to a queued client", self.name)
            if not isinstance(outcome, AcquireError):
                outcome.close("internal_error")

    def _pop_idle(self, profile: int) -> BackendConnection | None:
        for i in range(len(self.idle) - 1, -1, -1):
            conn = self.idle[i]
            if conn.profile == profile and not conn.closed:
                return self.idle.pop(i)
        return None

    async def _wait(self, profile: int, deadline: float, first: bool) -> BackendConnection:
        fut: asyncio.Future[BackendConnection] = asyncio.get_running_loop().create_future()
        waiter = Waiter(profile, fut, time.monotonic())
        if first:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        self._grow()
        try:
            return await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise self._timeout_error() from None
        finally:
            # Handed a connection, the waiter already left the queue (_hand_over); failed,
            # the whole queue was emptied. Only a timed-out or cancelled wait is still in
            # it: the one case that pays for a scan.
            if fut.cancelled():
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
            self._waited(waiter)

    def _grow(self) -> None:
        """Start connections for waiters that no pending connect will serve."""
        unserved = len(self.waiters) - self.connecting
        while unserved > 0:
            full = self.size >= self.config.max_size
            if full or not self.server.has_room():
                # Full, or the server at its max_connections: make room by closing an
                # idle connection of another profile.
                victim = next((c for c in self.idle if not self._wanted_by_waiter(c)), None)
                if victim is not None:
                    self.idle.remove(victim)
                    victim.close("profile_swap")
                    continue
                if full:
                    return
            profile = self.waiters[-unserved].profile
            if not self._spawn(profile):
                return
            unserved -= 1

    def _wanted_by_waiter(self, conn: BackendConnection) -> bool:
        return any(w.profile == conn.profile for w in self.waiters)

    @property
    def can_connect(self) -> bool:
        return self.user.backend_password is not None or self.password_sha1 is not None

    def _spawn(self, profile: int, want_room: bool = True) -> bool:
        """Start one connect; False when none may start (no credentials yet, or the
        server at its max_connections: this pool grows again once one of its closes)."""
        if not self.can_connect:
            return False  # a hash-only user: the first client's login gives the credentials
        server = self.server
        if not server.has_room():
            if want_room:
                server.room_wanted(self)
            return False
        self.connecting += 1
        server.reserved += 1
        asyncio.get_running_loop().create_task(self._connect(profile, server))
        return True

    def grow(self) -> None:
        """Room was made on the server: connect for whoever waits."""
        if self.waiters and not self.closed:
            self._grow()

    async def _connect(self, profile: int, server: Server) -> None:
        try:
            while not self.closed:
                try:
                    conn = await self.server.connect(
                        self.user, profile, self._lost, self.password_sha1
                    )
                except BackendError as exc:
                    if exc.err is not None and exc.err.error_code in SERVER_REFUSALS:
                        self._fail_waiters(exc)
                    elif self.fail_fast:
                        self._fail_waiters(exc, refused=False)
                        return
                    if not self.waiters and len(self.idle) >= self.config.min_idle:
                        return
                    continue
                conn.pool = self
                self.refusal = None
                self.conns.add(conn)
                self.connecting -= 1
                try:
                    self._hand_over(conn)
                finally:
                    self.connecting += 1
                return
        finally:
            self.connecting -= 1
            server.reserved -= 1

    def _fail_waiters(self, exc: BackendError, refused: bool = True) -> None:
        """The server refused proxyd's login: pass its answer on at once, and to those who
        come while proxyd waits to try again (the circuit is open until then). Not
        ``refused`` (a fail_fast pool that cannot connect): the waiters get the error and
        go elsewhere."""
        err = None
        if refused:
            assert exc.err is not None
            err = ErrPacket(
                exc.err.error_code,
                exc.err.sql_state,
                b"proxyd: server refused the backend login: " + exc.err.message,
            )
            self.refusal = err
        waiters = list(self.waiters)
        self.waiters.clear()
        for waiter in waiters:
            if waiter.pending:
                self._deliver(waiter, AcquireError(str(exc), err))

    # -- return ------------------------------------------------------------------

    def release(self, conn: BackendConnection) -> None:
        """Take back a connection whose server session is clean enough to share."""
        conn.holder = None
        if conn.closed:
            return
        if conn.kills_pending:
            conn.parked = True  # a KILL QUERY for its last statement is still under way
            return
        if conn.created_at < self.drain_before:
            self._retire(conn, "drained")
            return
        if conn.busy or conn.in_transaction or conn.needs_reset:
            asyncio.get_running_loop().create_task(self._clean_and_return(conn))
            return
        if self.closed or self.size > self.config.max_size or conn.age >= self.lifetime(conn):
            self._retire(conn, "lifetime" if conn.age >= self.lifetime(conn) else "surplus")
            return
        self._hand_over(conn)

    def abandon(self, conn: BackendConnection) -> None:
        """Its client went away while a statement ran on ``conn``.

        The server would go on running it (a lock wait can last minutes) on a connection
        that still counts against the server and against ``max_size``: stop it with
        KILL QUERY from another connection of this pool, read the rest of its answer,
        then reset ``conn`` and keep it. ``conn`` stays in ``conns`` all along.
        """
        loop = asyncio.get_running_loop()
        drained: asyncio.Future[ResponseTracker] = loop.create_future()

        def done(tracker: ResponseTracker) -> None:
            if not drained.done():
                drained.set_result(tracker)

        conn.drain(done)
        task = loop.create_task(self._stop_abandoned(conn, drained))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop_abandoned(
        self, conn: BackendConnection, drained: asyncio.Future[ResponseTracker]
    ) -> None:
        try:
            await self._kill_query(conn, drained)
            deadline = time.monotonic() + self.server.config.ping_timeout
            while not drained.done() and not conn.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    conn.close("abandoned_statement_did_not_stop")
                    return
                await asyncio.wait({drained}, timeout=min(left, 0.1))
        except Exception:  # this task must end with conn either closed or kept
            log.exception("pool %s: stopping an abandoned statement failed", self.name)
            conn.close("internal_error")
            return
        if conn.closed or drained.result().awaiting_infile:
            conn.close("client_gone")
            return
        conn.needs_reset = True
        self.release(conn)

    async def _kill_query(
        self, conn: BackendConnection, drained: asyncio.Future[ResponseTracker]
    ) -> None:
        """KILL QUERY for ``conn``'s statement, from a connection of this pool: an idle one,
        a new one within ``max_size``, or the next one released (ahead of clients)."""
        while not drained.done() and not conn.closed:
            if self.closed:
                conn.close("shutdown")
                return
            killer = await self._killer(conn.profile, drained)
            if killer is None:
                continue
            try:
                if drained.done() or conn.closed:
                    return
                await killer.query(b"KILL QUERY %d" % conn.thread_id)
                self.stats.inc("statements_stopped")
                log.info(
                    "pool %s: client gone; stopped its statement on backend %s (thread %s)",
                    self.name,
                    conn.id,
                    conn.thread_id,
                )
                return
            except BackendError as exc:
                if exc.err is not None:  # 1094 unknown thread: it ended meanwhile
                    return
            finally:
                self.release(killer)

    async def _killer(
        self, profile: int, drained: asyncio.Future[ResponseTracker]
    ) -> BackendConnection | None:
        """A connection to send KILL QUERY from, or None once the statement ended by
        itself (its answer drained: the wait is over, maybe for this very connection)
        or when none came in time."""
        getting = asyncio.get_running_loop().create_task(self.acquire(profile, first=True))
        either: set[asyncio.Future[Any]] = {getting, drained}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
        try:
            killer = await getting
        except (AcquireError, asyncio.CancelledError):
            # Everything busy (maybe waiting for the drained one itself), or the server
            # refusing: look again soon, unless the statement is over.
            if not drained.done():
                await asyncio.sleep(0.1)
            return None
        if drained.done():
            self.release(killer)  # handed over just as the wait ended
            return None
        return killer

    async def _clean_and_return(self, conn: BackendConnection) -> None:
        try:
            if conn.busy:
                conn.close("released_busy")
                return
            await conn.reset()
        except (BackendError, asyncio.TimeoutError) as exc:
            conn.close(f"reset_failed: {exc}")
            return
        self.stats.inc("resets")
        self.release(conn)

    def _hand_over(self, conn: BackendConnection) -> None:
        for waiter in self.waiters:
            if waiter.profile == conn.profile and waiter.pending:
                self.waiters.remove(waiter)
                self._deliver(waiter, conn)
                return
        self.idle.append(conn)
        if self.waiters:
            self._grow()

    def _retire(self, conn: BackendConnection, reason: str) -> None:
        self.stats.inc(f"recycled_{reason}")
        log.debug("pool %s: retiring backend %s (%s)", self.name, conn.id, reason)
        conn.close(reason)

    def _lost(self, conn: BackendConnection, reason: str) -> None:
        """A connection closed, whoever closed it."""
        self.conns.discard(conn)
        if self.server.room_waiters:
            self.server.freed()
        if conn in self.idle:
            self.idle.remove(conn)
        if reason in ("server_closed", "server_reset", "killed", "server_idle_timeout"):
            self.stats.inc(f"recycled_{'killed' if reason == 'killed' else 'server_closed'}")
            # The daemon logs one line per burst; this is the per-connection detail.
            log.debug(
                "pool %s: backend %s (thread %s) closed by the server (%s)",
                self.name,
                conn.id,
                conn.thread_id,
                reason,
            )
        holder = conn.holder
        if holder is not None:
            holder.backend_lost(conn, reason)

    async def close(self) -> None:
        self.closed = True
        self._janitor.stop()
        waiters = list(self.waiters)
        self.waiters.clear()
        for waiter in waiters:
            if waiter.pending:
                self._deliver(waiter, AcquireError("proxyd: shutting down"))
        for conn in list(self.idle):
            conn.close("shutdown")
        self.idle.clear()

    def close_all(self) -> None:
        for conn in list(self.conns):
            conn.close("shutdown")


__all__ = ["AcquireError", "BackendGone", "Pool", "Server"]
