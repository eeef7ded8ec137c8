"""Transaction replay: a client's open transaction run again on a new server connection
after its own was lost, each answer checked against the one the client already has.

The session (session/replaying.py) decides that a replay is owed and records the
transaction (session/record.py); this module does it, over asyncio:

1. wait for a writable server if there is none (a failover in progress), take a server
   connection from the user's pool, pinged first (whatever killed one may have killed
   others);
2. bring it to the session as it was when the transaction began (schema, character set,
   variables) and give it the transaction's characteristics (``SET TRANSACTION ...``);
3. send each recorded statement again (prepared statements prepared on it first) through
   the same forwarding path as a client's, into a sink that keeps nothing, the answer's
   bytes hashed as they pass; any checksum that differs from the client's is a mismatch:
   the connection is reset (rolled back) and returned, and the client gets 1213.

A connection lost during the replay is replaced and the replay starts over, up to
``retry.transaction_replay_attempts`` times within ``retry.timeout``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from proxyd.pool import AcquireError
from proxyd.protocol.constants import COMMAND
from proxyd.protocol.messages import ErrPacket
from proxyd.protocol.packets import encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.server.connection import BackendConnection, BackendError
from proxyd.session.base import State
from proxyd.session.record import MISMATCH, NOT_REPLAYABLE, REPLAYED, Entry, TransactionRecord
from proxyd.session.state import execute_packets


class _Lost(Exception):
    """The connection being replayed on was lost: try again on another."""


class _Watcher:
    """The holder of the connection during a replay: its loss ends the attempt, and no
    client's reading is paused for it."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def backend_lost(self, conn: Any, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def goodbye(self) -> None:
        pass


class _Discard:
    """Where a replayed answer goes: the client has it already."""

    def write(self, data: Any) -> None:
        pass

    def writelines(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def replay_transaction(session: Any) -> tuple[str, str]:
    """Replay ``session``'s recorded transaction; (outcome, reason). On REPLAYED the
    session holds the new connection, in the transaction where the client left it."""
    record: TransactionRecord | None = session._record
    if record is None or record.refused is not None:
        return NOT_REPLAYABLE, "nothing recorded"
    daemon = session.daemon
    retry = daemon.config.retry
    deadline = time.monotonic() + retry.timeout
    why = "no attempt"
    for attempt in range(1, retry.transaction_replay_attempts + 1):
        if daemon.primary_missing:
            await daemon.wait_for_primary()
        try:
            conn = await session.pool.acquire(
                session.profile,
                timeout=max(0.0, deadline - time.monotonic()),
                verified_after=time.monotonic(),
            )
        except AcquireError as exc:
            return NOT_REPLAYABLE, f"no server connection: {exc}"
        watcher = _Watcher()
        conn.holder = watcher
        try:
            mismatch = await _run(session, record, conn, watcher, deadline)
        except (_Lost, BackendError) as exc:
            why = str(exc) or "connection lost"
            conn.close("replay_lost")
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.05 * attempt, max(0.0, deadline - time.monotonic())))
            continue
        except asyncio.TimeoutError:
            conn.close("replay_timed_out")
            return NOT_REPLAYABLE, "the replay took longer than retry.timeout"
        if mismatch is not None or session.state is State.CLOSED:
            conn.holder = None
            conn.needs_reset = True  # rolls the replayed transaction back
            session.pool.release(conn)
            if mismatch is not None:
                return MISMATCH, mismatch
            return NOT_REPLAYABLE, "the client left"
        session._hold(conn)
        return REPLAYED, f"{len(record.entries)} statements, attempt {attempt}"
    return NOT_REPLAYABLE, f"{retry.transaction_replay_attempts} attempts failed: {why}"


async def _run(
    session: Any,
    record: TransactionRecord,
    conn: BackendConnection,
    watcher: _Watcher,
    deadline: float,
) -> str | None:
    """One attempt on ``conn``; the reason of a mismatch, or None when every answer
    matched."""
    start = record.start
    err = await conn.take_state(
        start.schema, start.charset, start.variables, start.multi_statements, session.daemon.stats
    )
    if err is not None:
        return f"the session's state was refused: {err.message.decode(errors='replace')}"
    if start.characteristics:
        for statement in start.characteristics.split(b";"):
            if statement.strip():
                await conn.query(statement.strip())
    for number, entry in enumerate(record.entries, 1):
        packet = await _packet(conn, entry)
        if isinstance(packet, ErrPacket):
            return f"statement {number} could not be prepared again"
        tracker = ResponseTracker(entry.command, conn.capabilities, session.capabilities)
        tracker.digest = 0
        answered: asyncio.Future[ResponseTracker] = asyncio.get_running_loop().create_future()

        def done(t: ResponseTracker, answered: asyncio.Future[ResponseTracker] = answered) -> None:
            if not answered.done():
                answered.set_result(t)

        conn.forward(packet, tracker, cast(asyncio.Transport, _Discard()), done)
        left = deadline - time.monotonic()
        either: set[asyncio.Future[Any]] = {answered, watcher.lost}
        await asyncio.wait(either, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
        if watcher.lost.done():
            raise _Lost(watcher.lost.result())
        if not answered.done():
            raise asyncio.TimeoutError
        if tracker.awaiting_infile or tracker.digest != entry.digest:
            return f"statement {number} of {len(record.entries)} answered differently"
    return None


async def _packet(conn: BackendConnection, entry: Entry) -> bytes | ErrPacket:
    """The recorded command framed for ``conn`` (its own id for a prepared statement)."""
    if entry.command != COMMAND.COM_STMT_EXECUTE or entry.sql is None:
        return encode_packet(entry.payload, 0)
    server_id = conn.statement_id(entry.sql)
    if server_id is None:
        prepared = await conn.prepare(entry.sql)
        if isinstance(prepared, ErrPacket):
            return prepared
        server_id = conn.statement_id(entry.sql)
        assert server_id is not None
    return execute_packets(server_id, entry.payload, entry.long_data)
