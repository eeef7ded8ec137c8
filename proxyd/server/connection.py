"""One connection from proxyd to the MySQL/MariaDB server.

A BackendConnection logs in with a user's credentials, switches on the
server's session trackers, learns ``@@wait_timeout``, and then does one of two
things at a time: runs a command of proxyd's own (ping, state replay, reset),
or forwards a client's command and streams the answer straight to that
client's transport through a ResponseTracker. It notices at once when the
server closes it (KILL, wait_timeout, shutdown) and tells its owner.

What the connection's server session holds, and proxyd's own commands that shape it
(setup, replay, re-prepare, reset, ping), are in proxyd/server/setup.py; this module is
the socket: login, the one-command-at-a-time primitive those rest on, and forwarding.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from proxyd.protocol.constants import (
    CLIENT,
    COMMAND,
    SERVER_STATUS,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.login import ClientLogin, LoginRefused
from proxyd.protocol.messages import (
    build_command,
    parse_err,
)
from proxyd.protocol.packets import PacketReader, encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.server.account import (
    BASE_CAPABILITIES,
    ServerAccount,
    ThreadBook,
)
from proxyd.server.setup import BackendError, BackendGone, ServerSession
from proxyd.tls import TLSError, TLSLayer, TLSTransport

log = logging.getLogger("proxyd.backend")

_ids = itertools.count(1)

# close_reason of a connection whose answer proxyd could not follow.
PROTOCOL_ERROR = "protocol error from server"
UNPLACED_LOGGED = 256


class BackendConnection(ServerSession, asyncio.Protocol):
    """A server connection; see the module docstring."""

    def __init__(
        self, account: ServerAccount, on_lost: Callable[[BackendConnection, str], None]
    ) -> None:
        profile = account.profile
        super().__init__(account.charset, account.schema, bool(profile & CLIENT.MULTI_STATEMENTS))
        self.id = next(_ids)
        self.account = account
        self.address = account.address
        self.user = account.user
        self.profile = profile
        self.on_lost = on_lost
        self.threads: ThreadBook | None = None  # the server's book of proxyd's thread ids
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.close_reason = ""
        self.server_version = b""
        self.server_charset = 0  # the server's default collation, from its greeting
        self.server_mariadb_capabilities = 0  # MariaDB's extended ones, from its greeting
        self.thread_id = 0
        self.server_capabilities = 0
        self.created_at = time.monotonic()
        self.last_active = self.created_at
        self.uses = 0
        self.status_flags = 0
        # Connection phase.
        self._reader: PacketReader | None = PacketReader()
        self._packet_waiter: asyncio.Future[tuple[int, bytes]] | None = None
        # Command phase.
        self._tracker: ResponseTracker | None = None
        self._sink: asyncio.Transport | None = None
        self._done: Callable[[ResponseTracker], None] | None = None
        self._internal: asyncio.Future[list[bytes]] | None = None
        self._internal_packets: PacketReader | None = None
        self._internal_tracker: ResponseTracker | None = None
        self.read_timeout: float | None = None  # for forwarded statements; None: no limit
        self.command_timeout = 30.0  # for proxyd's own commands (backend.ping_timeout)
        self._last_data = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._relay_paused = False  # not reading the server: the client does not keep up
        self.tls_version: str | None = None  # TLSv1.3... once the login switched to TLS
        self._tls: TLSLayer | None = None
        self._raw: asyncio.Transport | None = None  # the socket's transport, under TLS
        self._tls_ready: asyncio.Future[None] | None = None  # the TLS handshake's end
        # KILL QUERY statements sent for this connection's statement and not yet answered:
        # until they are, it goes to no other client (whose statement they would kill).
        self.kills_pending = 0
        self.parked = False  # released while kills_pending: Pool.release() again after
        self.pool: Any = None  # the owning Pool, set by it
        self.stats: Any = None  # the daemon's Stats, set by the Server that opened it
        self.holder: Any = None  # the client session using it, if any
        self.last_session: Any = None  # whose statement ran here last

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)

    def data_received(self, data: bytes) -> None:
        tracker = self._tracker
        if tracker is not None:
            self._last_data = time.monotonic()
            # Hot path: a client's command is in flight.
            try:
                rest = tracker.feed(data)
            except ProtocolError as exc:
                self._relay(tracker, data)  # the whole packets before the offender
                self._unplaced(tracker, str(exc), tracker.unplaced or b"")
                return
            self._relay(tracker, data)
            if tracker.done or tracker.awaiting_infile:
                if rest:
                    # The answer ended early by our reckoning: the client may wait for the
                    # rest, or take it for the answer to its next command.
                    self._unplaced(tracker, f"{len(rest)} bytes after the answer's end", rest)
                    return
                self._finish_forward(tracker)
            return
        if self._internal is not None and self._internal_packets is not None:
            self._internal_packets.feed(data)
            self._internal_answer(data)
            return
        if self._reader is not None:
            self._reader.feed(data)
            self._wake_packet_waiter()
            return
        # Unsolicited bytes while idle: the server's last words before closing
        # (ERR 4031 idle timeout on MySQL 8.0.24+, 1927 connection killed...).
        self._note_unsolicited(data)

    def _relay(self, tracker: ResponseTracker, data: bytes) -> None:
        out = tracker.take_output()
        sink = self._sink
        if sink is not None and out:
            if len(out) == 1:
                sink.write(out[0])
            else:
                sink.writelines(out)
            if self.stats is not None:
                self.stats.counters["bytes_sent"] += len(data)

    def _unplaced(self, tracker: ResponseTracker, what: str, offender: bytes) -> None:
        """Bytes of an answer that proxyd cannot place: never wait on them. The connection
        is closed; its holder answers the client through the loss path (see
        PROTOCOL_ERROR), which neither hides nor re-runs it."""
        log.error(
            "backend %s (thread %s): answer to command 0x%02x: %s, after packet %d; "
            "closing. Bytes: %s",
            self.id,
            self.thread_id,
            tracker.command,
            what,
            tracker.last_seq,
            offender[:UNPLACED_LOGGED].hex(" "),
        )
        if self.stats is not None:
            self.stats.inc("server_protocol_errors")
        self.close(f"{PROTOCOL_ERROR}: {what}")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            reason = "server_closed"
        elif isinstance(exc, ConnectionResetError):
            reason = "server_reset"
        else:
            reason = f"error: {exc}"
        self._mark_closed(reason)

    def pause_writing(self) -> None:
        holder = self.holder
        if holder is not None:
            holder.pause_reading()

    def resume_writing(self) -> None:
        holder = self.holder
        if holder is not None:
            holder.resume_reading()

    # -- lifecycle ---------------------------------------------------------------

    def _mark_closed(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        if self.threads is not None and self.thread_id:
            self.threads.gone(self.thread_id)
        # Whoever awaits a packet, the TLS handshake or one of proxyd's own commands.
        for waiting in (self._packet_waiter, self._tls_ready, self._internal):
            if waiting is not None and not waiting.done():
                waiting.set_exception(BackendGone(f"server closed the connection ({reason})"))
        self.on_lost(self, self.close_reason)

    def _fail(self, reason: str) -> None:
        log.warning("backend %s (thread %s): %s", self.id, self.thread_id, reason)
        self.close(reason)

    def close(self, reason: str = "closed") -> None:
        """Close now; tell the owner through on_lost."""
        if not self.close_reason:
            self.close_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            if not self.busy and not self._reader:
                # A polite COM_QUIT so the server logs no aborted connection.
                self.transport.write(encode_packet(build_command(COMMAND.COM_QUIT), 0))
            self.transport.close()
        self._mark_closed(reason)

    @property
    def busy(self) -> bool:
        return self._tracker is not None or self._internal is not None

    @property
    def relaying(self) -> bool:
        """A client's command is in flight (or, its client gone, still being drained)."""
        return self._tracker is not None

    @property
    def idle_for(self) -> float:
        return time.monotonic() - self.last_active

    @property
    def age(self) -> float:
        return time.monotonic() - self.created_at

    def _note_unsolicited(self, data: bytes) -> None:
        reader = PacketReader()
        reader.feed(data)
        try:
            packet = reader.next_packet()
        except ProtocolError:
            packet = None
        if packet and packet[1][:1] == b"\xff":
            err = parse_err(packet[1])
            self.close_reason = (
                f"server error {err.error_code}: {err.message.decode(errors='replace')}"
            )
            if err.error_code in (1927, 4031):
                self.close_reason = "killed" if err.error_code == 1927 else "server_idle_timeout"
        else:
            self.close_reason = "unexpected data from server"
        self.close(self.close_reason)

    # -- connection phase --------------------------------------------------------

    def _wake_packet_waiter(self) -> None:
        waiter = self._packet_waiter
        if waiter is None or waiter.done() or self._reader is None:
            return
        try:
            packet = self._reader.next_packet()
        except ProtocolError as exc:
            waiter.set_exception(BackendError(f"malformed packet from server: {exc}"))
            return
        if packet is not None:
            waiter.set_result(packet)

    async def _read_packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        packet = self._reader.next_packet()
        if packet is not None:
            return packet
        if self.closed:
            raise BackendGone(f"server closed the connection ({self.close_reason})")
        self._packet_waiter = asyncio.get_running_loop().create_future()
        try:
            return await self._packet_waiter
        finally:
            self._packet_waiter = None

    def _send(self, payload: bytes, seq: int) -> None:
        assert self.transport is not None
        self.transport.write(encode_packet(payload, seq))

    def send_unanswered(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(payload, 0)

    async def login(self, timeout: float) -> None:
        """Run the connection phase and the session setup; raise BackendError."""
        await asyncio.wait_for(self._login(), timeout)
        self.last_active = time.monotonic()

    async def _login(self) -> None:
        await self._authenticate()
        self._reader = None
        await self.setup_session()

    async def _authenticate(self) -> None:
        tls = self.account.tls
        login = ClientLogin(
            self.user,
            self.account.password,
            self.charset,
            self.schema,
            (BASE_CAPABILITIES | self.profile) & 0xFFFFFFFF,
            self.profile >> 32,
            {b"_client_name": b"proxyd", b"program_name": b"proxyd"},
            "disabled" if tls is None or tls.context is None else tls.login_mode,
            self.account.password_sha1,
        )
        seq, payload = await self._read_packet()
        try:
            self._send(login.greeting(payload), seq + 1)
            greeting = login.server
            assert greeting is not None
            self.server_version = greeting.server_version
            self.server_charset = greeting.character_set
            self.server_mariadb_capabilities = login.server_mariadb_capabilities
            self.thread_id = greeting.connection_id
            if self.threads is not None:
                self.threads.opened(self.thread_id, self)
            self.server_capabilities = greeting.capability_flags
            self.status_flags = greeting.status_flags
            self.capabilities = login.capabilities
            self.multi_statements = bool(login.capabilities & CLIENT.MULTI_STATEMENTS)
            if login.tls:
                assert tls is not None and tls.context is not None
                await self._start_tls(tls.context, tls.server_name)
                seq += 1
                self._send(login.response(), seq + 1)
            while not login.done:
                seq, payload = await self._read_packet()
                for answer in login.receive(payload):
                    self._send(answer, seq + 1)
        except LoginRefused as exc:
            raise BackendError(str(exc), exc.err) from None
        except ProtocolError as exc:
            raise BackendError(f"during login: {exc}") from None

    async def _start_tls(self, context: ssl.SSLContext, server_name: str | None) -> None:
        """Encrypt this connection (after the SSLRequest); never falls back to plaintext.
        The TLS layer is proxyd's own (proxyd/tls.py), as towards clients."""
        raw = self.transport
        assert raw is not None
        address = self.account.address
        layer = TLSLayer(context, server_side=False, server_hostname=server_name or address.host)
        self._tls, self._raw = layer, raw
        self._tls_ready = asyncio.get_running_loop().create_future()
        self.data_received = self._receive_tls  # type: ignore[method-assign]
        raw.set_protocol(self)  # the loop keeps data_received from when it was set
        try:
            raw.write(layer.start())
            await self._tls_ready
        except TLSError as exc:
            if exc.refused_certificate:
                raise BackendError(
                    f"TLS to {address}: the server's certificate was refused: {exc}"
                ) from None
            raise BackendError(f"TLS to {address} failed: {exc}") from None
        self.transport = TLSTransport(raw, layer)
        self.tls_version = layer.ssl_object.version() or "TLS"

    def _receive_tls(self, data: bytes) -> None:
        layer, ready, raw = self._tls, self._tls_ready, self._raw
        assert layer is not None and ready is not None and raw is not None
        try:
            plain, reply = layer.receive(data)
        except TLSError as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self._fail(f"TLS: {exc}")
            return
        if reply and not raw.is_closing():
            raw.write(reply)
        if layer.handshaken and not ready.done():
            ready.set_result(None)
        if plain:
            BackendConnection.data_received(self, plain)
        if layer.closed:
            self.close("server_closed")

    # -- proxyd's own commands ---------------------------------------------------

    async def command(self, command: int, argument: bytes = b"") -> list[bytes]:
        """Send one command of proxyd's own; return the answer's packets."""
        if self.closed:
            raise BackendGone(f"connection closed ({self.close_reason})")
        if self.busy:
            raise RuntimeError("backend is busy")
        tracker = ResponseTracker(command, self.capabilities)
        loop = asyncio.get_running_loop()
        self._internal = fut = loop.create_future()
        self._internal_packets = PacketReader()
        self._internal_tracker = tracker
        self._send(build_command(command, argument), 0)
        try:
            packets = await asyncio.wait_for(fut, self.command_timeout)
        except asyncio.TimeoutError:
            # A server that does not answer proxyd's own command is as good as gone.
            self._fail(f"no answer to proxyd's own command in {self.command_timeout:g}s")
            raise BackendGone("server did not answer") from None
        finally:
            self._internal = None
            self._internal_packets = None
            self._internal_tracker = None
        self.last_active = time.monotonic()
        self.status_flags = tracker.status_flags or self.status_flags
        self._learn(tracker.state_changes)
        return packets

    def _internal_answer(self, data: bytes) -> None:
        """The tracker finds where the answer ends; then its packets are decoded once."""
        tracker = self._internal_tracker
        reader = self._internal_packets
        fut = self._internal
        assert tracker is not None and reader is not None and fut is not None
        try:
            tracker.feed(data)
            tracker.take_output()
            if not tracker.done:
                return
            packets = []
            while (packet := reader.next_packet()) is not None:
                packets.append(packet[1])
        except ProtocolError as exc:
            self._fail(f"protocol error from server: {exc}")
            return
        if not fut.done():
            fut.set_result(packets)

    # -- forwarding a client's command -----------------------------------------

    def forward(
        self,
        packet: bytes,
        tracker: ResponseTracker,
        sink: asyncio.Transport,
        done: Callable[[ResponseTracker], None],
    ) -> None:
        """Send a client's framed command and stream the answer to ``sink``."""
        assert self.transport is not None
        self.uses += 1
        self.last_active = time.monotonic()
        if tracker.done:
            # Commands without an answer (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
            self.transport.write(packet)
            done(tracker)
            return
        self._tracker = tracker
        self._sink = sink
        self._done = done
        self.transport.write(packet)
        if self.read_timeout is not None:
            self._last_data = time.monotonic()
            self._arm_watchdog(self.read_timeout)

    def _arm_watchdog(self, delay: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._check_silence)

    def _check_silence(self) -> None:
        """backend.read_timeout: a server silent this long mid-answer is taken as gone."""
        self._watchdog = None
        if self._tracker is None or self.read_timeout is None or self.closed:
            return
        silent = time.monotonic() - self._last_data
        if silent >= self.read_timeout:
            self._fail(f"no answer for {silent:.1f}s (backend.read_timeout)")
            self.close_reason = "read_timeout"
        else:
            self._arm_watchdog(self.read_timeout - silent)

    def forward_more(self, packet: bytes) -> None:
        """More bytes of the same command (LOCAL INFILE contents)."""
        assert self.transport is not None
        self.transport.write(packet)

    def resume_after_infile(self, tracker: ResponseTracker) -> None:
        tracker.infile_sent()
        self._tracker = tracker

    def kill_sent(self) -> None:
        self.kills_pending += 1

    def kill_answered(self) -> None:
        self.kills_pending -= 1
        if self.kills_pending == 0 and self.parked:
            self.parked = False
            if self.pool is not None:
                self.pool.release(self)

    def pause_relay(self) -> None:
        """The client reads slower than the server answers: stop reading the server until
        resume_relay(). Only while a client's command is in flight: the pause ends with its
        answer (or the client's departure), so a connection never goes back to the pool,
        or to proxyd's own commands, deaf."""
        if self._tracker is None or self._relay_paused:
            return
        self._relay_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_relay(self) -> None:
        if not self._relay_paused:
            return
        self._relay_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _finish_forward(self, tracker: ResponseTracker) -> None:
        done = self._done
        self._tracker = None
        # The answer is whole (or the server waits for LOCAL INFILE data): nothing more
        # to hold back, whatever the client's pace.
        self.resume_relay()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if tracker.done:
            self._sink = None
            self._done = None
        self.last_active = time.monotonic()
        if tracker.status_flags:
            self.status_flags = tracker.status_flags
        if tracker.state_changes:
            self._learn(tracker.state_changes)
        if done is not None:
            try:
                done(tracker)
            except Exception:
                # A bug must cost one client its connection, never the daemon.
                log.exception("backend %s: error handling a response; closing", self.id)
                holder = self.holder
                self.close("internal_error")
                if holder is not None:
                    holder.goodbye()

    @property
    def forwarding(self) -> bool:
        """A client's command is in flight (not one of proxyd's own)."""
        return self._tracker is not None

    def drain(self, done: Callable[[ResponseTracker], None]) -> None:
        """The client went away mid-answer: read the rest of it, send it nowhere, then
        call ``done``. The connection stays open (and counted) until then."""
        self._sink = None
        self._done = done
        self.resume_relay()

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


async def open_backend(
    account: ServerAccount,
    on_lost: Callable[[BackendConnection, str], None],
    timeout: float,
    login_timeout: float | None = None,
    threads: ThreadBook | None = None,
) -> BackendConnection:
    """Connect (within ``timeout``), log in and set up a server session (within
    ``login_timeout``, by default ``timeout`` too), or raise BackendError."""
    loop = asyncio.get_running_loop()
    address = account.address
    conn = BackendConnection(account, on_lost)
    conn.threads = threads
    conn.command_timeout = timeout if login_timeout is None else login_timeout
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: conn, address.host, address.port), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise BackendGone(f"cannot connect to {address}: {exc or 'timed out'}") from None
    try:
        await conn.login(timeout if login_timeout is None else login_timeout)
    except TimeoutError:
        conn.close("login timed out")
        raise BackendGone(f"login to {address} timed out") from None
    except BackendError:
        conn.close("login failed")
        raise
    return conn
