"""The daemon's listening sockets, by role: clients, the admin console, the metrics endpoint.

A reload binds what the new config adds before it changes anything else, all or nothing, so
that a config naming an address that cannot be bound is rejected as a whole; what the new
config no longer names is closed once the rest of it has been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterable

from proxyd.config import Config, ListenAddress, UnixAddress

log = logging.getLogger("proxyd.daemon")

# Which listener serves what: clients, the admin console, the metrics endpoint.
CLIENT, ADMIN, METRICS = "listen", "admin.listen", "metrics.listen"
ROLES = (CLIENT, ADMIN, METRICS)

Key = tuple[str, ListenAddress]  # (role, address)


def wanted(config: Config) -> list[Key]:
    """What ``config`` asks to listen on."""
    keys = [(CLIENT, address) for address in config.listen]
    if config.admin is not None:
        keys.append((ADMIN, config.admin.listen))
    if config.metrics is not None:
        keys.append((METRICS, config.metrics.listen))
    return keys


class Listeners:
    """The bound sockets; ``factory(role)`` makes the protocol factory for a role."""

    def __init__(self, factory: Callable[[str], Callable[[], asyncio.Protocol]]) -> None:
        self._factory = factory
        self._bound: dict[Key, asyncio.AbstractServer] = {}
        self._inodes: dict[Key, int] = {}  # a Unix socket's file, removed on close if ours

    async def open(self, config: Config, roles: tuple[str, ...] = ROLES) -> None:
        """Bind what ``config`` wants and is not bound yet; all or nothing (OSError)."""
        loop = asyncio.get_running_loop()
        opened: list[Key] = []
        for key in wanted(config):
            role, address = key
            if role not in roles or key in self._bound:
                continue
            try:
                if isinstance(address, UnixAddress):
                    listener = await _unix_server(loop, self._factory(role), address)
                    self._inodes[key] = os.stat(address.path).st_ino
                else:
                    listener = await loop.create_server(
                        self._factory(role),
                        address.host,
                        address.port,
                        reuse_address=True,
                        backlog=1024 if role == CLIENT else 64,
                    )
            except OSError as exc:
                for done in opened:
                    self._bound.pop(done).close()
                raise OSError(
                    exc.errno, f"cannot listen on {address} ({role}): {exc.strerror or exc}"
                ) from None
            self._bound[key] = listener
            opened.append(key)
            log.info("listening on %s (%s)", address, role)

    def close_unwanted(self, config: Config) -> None:
        """Close what ``config`` no longer names."""
        keep = wanted(config)
        self._close([key for key in self._bound if key not in keep])

    def close_role(self, role: str) -> None:
        self._close([key for key in self._bound if key[0] == role])

    def close_all(self) -> None:
        self._close(list(self._bound))

    def _close(self, keys: Iterable[Key]) -> None:
        for key in keys:
            listener = self._bound.pop(key, None)
            if listener is not None:
                listener.close()
                if isinstance(key[1], UnixAddress):
                    _remove_socket(key[1].path, self._inodes.pop(key, None))
                log.info("no longer listening on %s (%s)", key[1], key[0])


async def _unix_server(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.Protocol],
    address: UnixAddress,
) -> asyncio.AbstractServer:
    """Listen on a Unix socket: a stale socket file (nobody listening) is replaced, anything
    else at that path is left alone and refused; then the file gets its mode and owner."""
    path = address.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left by a process that is gone
        else:
            raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")
        finally:
            probe.close()
    server = await loop.create_unix_server(factory, path, backlog=1024)
    try:
        os.chmod(path, address.mode)
        if address.owner:
            user, _, group = address.owner.partition(":")
            if user and group:
                shutil.chown(path, user, group)
            elif user:
                shutil.chown(path, user)
            elif group:
                shutil.chown(path, group=group)
    except (OSError, LookupError) as exc:
        server.close()
        os.unlink(path)
        raise OSError(errno.EPERM, f"cannot set the mode or owner of {path}: {exc}") from None
    return server


def _remove_socket(path: str, inode: int | None) -> None:
    """Remove the socket file, unless another process has put its own there since."""
    with contextlib.suppress(OSError):
        if inode is not None and os.stat(path).st_ino == inode:
            os.unlink(path)
