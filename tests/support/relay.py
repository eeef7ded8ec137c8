"""A TCP relay that tests put between proxyd and MariaDB to inject network faults.

It runs its own asyncio loop in a background thread; every control method is safe to call
from the test's thread and takes effect at once. Modes (see `mode`):

- ``pass``: bytes are forwarded both ways as they arrive.
- ``blackhole``: connections stay open, new ones are accepted, but nothing is forwarded
  in either direction and nothing is closed, like a network partition. Bytes are held,
  not lost: reading stops, so kernel buffers fill and senders stall as over a dead link,
  and whatever was held is delivered if the mode returns to ``pass``.
- ``delay``: every chunk is delivered `seconds` after it arrived, in order, both ways.
- ``refuse``: new connections are reset at once (RST) without reaching the target;
  established ones keep forwarding.

`drop_all()` resets every current connection on both sides, as a crashed middlebox would;
`inject(data)` sends bytes of the test's own to proxyd as if the server had sent them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import deque
from typing import Any

PASS = "pass"
BLACKHOLE = "blackhole"
DELAY = "delay"
REFUSE = "refuse"

_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN: SO_LINGER with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pipe:
    """Chunks read from one side, each with the loop time it is due on the other side.

    An empty chunk marks the end of the stream (the sender half-closed).
    """

    def __init__(self) -> None:
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.queued = asyncio.Event()


class _Link:
    """One relayed connection: the client side, the target side and a pipe each way."""

    def __init__(self, relay: TcpRelay, client: asyncio.StreamWriter) -> None:
        self.relay = relay
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, client_reader: asyncio.StreamReader) -> None:
        try:
            target_reader, target = await asyncio.wait_for(
                asyncio.open_connection(*self.relay.target), timeout=5
            )
        except (OSError, asyncio.TimeoutError):
            # The target is down: the client sees its connection reset, the nearest thing
            # to the refusal it would have got connecting directly.
            _reset(self.client)
            return
        self.target = target
        upstream, downstream = _Pipe(), _Pipe()
        self.tasks = [
            asyncio.create_task(self._receive(client_reader, upstream)),
            asyncio.create_task(self._deliver(upstream, target)),
            asyncio.create_task(self._receive(target_reader, downstream)),
            asyncio.create_task(self._deliver(downstream, self.client)),
        ]
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
        # Look at every finished task (no short circuit), so none logs "exception never retrieved".
        failed = [task for task in done if task.cancelled() or task.exception() is not None]
        if failed:
            # One side was reset (or drop_all ran): pass on a reset, not a polite FIN.
            self.reset()
        else:
            self.client.close()
            target.close()

    async def _receive(self, reader: asyncio.StreamReader, pipe: _Pipe) -> None:
        relay = self.relay
        loop = asyncio.get_running_loop()
        while True:
            await relay._until_flowing()
            data = await reader.read(_CHUNK)
            pipe.chunks.append((loop.time() + relay._delay, data))
            pipe.queued.set()
            if not data:
                return

    async def _deliver(self, pipe: _Pipe, writer: asyncio.StreamWriter) -> None:
        relay = self.relay
        loop = asyncio.get_running_loop()
        while True:
            if not pipe.chunks:
                pipe.queued.clear()
                await pipe.queued.wait()
                continue
            await relay._until_flowing()
            when, data = pipe.chunks[0]
            if when > loop.time():
                await asyncio.sleep(when - loop.time())
                continue  # the mode may have changed meanwhile
            pipe.chunks.popleft()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client)
        if self.target is not None:
            _reset(self.target)


class TcpRelay:
    """Listen on 127.0.0.1:`port` and relay each connection to `target` (host, port).

    Starts listening in the constructor. Counters: `accepted` (connections accepted since
    start, refused ones included) and `active` (connections currently relayed).
    """

    def __init__(self, target: tuple[str, int] | str, port: int = 0) -> None:
        if isinstance(target, str):
            host, _, target_port = target.rpartition(":")
            target = (host, int(target_port))
        self.target: tuple[str, int] = target
        self.host = "127.0.0.1"
        self.accepted = 0
        self._mode = PASS
        self._delay = 0.0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-relay", daemon=True
        )
        self._thread.start()
        self.port: int = self._call(self._listen(port))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def active(self) -> int:
        return len(self._links)

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TcpRelay {self.address} -> {self.target[0]}:{self.target[1]} {self._mode}>"

    # -- control, from any thread ------------------------------------------------------------

    def forward(self) -> None:
        """Mode ``pass``: forward everything, including what a blackhole held back."""
        self._set_mode(PASS, 0.0)

    def blackhole(self) -> None:
        self._set_mode(BLACKHOLE, self._delay)

    def delay(self, seconds: float) -> None:
        self._set_mode(DELAY, seconds)

    def refuse(self) -> None:
        self._set_mode(REFUSE, 0.0)

    def inject(self, data: bytes) -> int:
        """Send ``data`` to the client side of every current connection, as if the target
        had sent it (a corrupting middlebox, a server bug); returns how many got it."""

        async def send() -> int:
            links = list(self._links)
            for link in links:
                link.client.write(data)
            return len(links)

        return self._call(send())

    def drop_all(self) -> int:
        """Reset every current connection on both sides; returns how many there were."""

        async def drop() -> int:
            links = list(self._links)
            for link in links:
                link.reset()
            return len(links)

        return self._call(drop())

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                link.reset()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # -- internals, on the relay's loop ------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _set_mode(self, mode: str, delay: float) -> None:
        async def apply() -> None:
            self._mode = mode
            self._delay = delay
            if mode == BLACKHOLE:
                self._flowing.clear()
            else:
                self._flowing.set()

        self._call(apply())

    async def _until_flowing(self) -> None:
        if not self._flowing.is_set():
            await self._flowing.wait()

    async def _listen(self, port: int) -> int:
        self._server = await asyncio.start_server(self._accept, self.host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode == REFUSE:
            _reset(writer)
            return
        link = _Link(self, writer)
        self._links.add(link)
        try:
            await link.run(reader)
        except asyncio.CancelledError:
            # close() cancels everything; asyncio before 3.12 would report a cancelled
            # connection handler as an unhandled exception.
            link.reset()
        finally:
            self._links.discard(link)
