"""A bare TCP byte relay on uvloop: the floor any proxy's data path is measured against.

It knows nothing of MySQL: each accepted connection gets one connection to the target, and
bytes are copied both ways as they arrive, with the same flow control a proxy needs (stop
reading a side whose peer cannot keep up). Whatever a MySQL-aware proxy spends beyond this,
per query, is the price of its logic.

    python -m bench.relay --listen 127.0.0.1:6034 --target 127.0.0.1:3306
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

import uvloop


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)  # the target is still connecting
        elif not peer.transport.is_closing():
            # Otherwise the peer left (a client's COM_QUIT and close crossing the server's
            # last bytes): drop them, as the kernel would. uvloop raises on a closed handle.
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Client(_Side):
    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        server = _Side()
        server.peer, self.peer = self, server
        try:
            await asyncio.get_running_loop().create_connection(lambda: server, *self.target)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        assert server.transport is not None
        if self.transport is None or self.transport.is_closing():
            server.transport.close()  # the client left while the target was connecting
            return
        for chunk in self.pending:
            server.transport.write(chunk)
        self.pending.clear()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(target), *listen, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay listening on {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port to accept on")
    parser.add_argument("--target", required=True, help="host:port to relay to")
    args = parser.parse_args(argv)
    uvloop.run(_serve(_address(args.listen), _address(args.target)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
