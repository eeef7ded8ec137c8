"""The daemon's listening sockets, by role: clients, the admin console, the metrics endpoint.

A reload binds what the new config adds before it changes anything else, all or nothing, so
that a config naming an address that cannot be bound is rejected as a whole; what the new
config no longer names is closed once the rest of it has been applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from proxyd.config import Address, Config

log = logging.getLogger("proxyd.daemon")

# Which listener serves what: clients, the admin console, the metrics endpoint.
CLIENT, ADMIN, METRICS = "listen", "admin.listen", "metrics.listen"
ROLES = (CLIENT, ADMIN, METRICS)

Key = tuple[str, Address]  # (role, address)


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

    async def open(self, config: Config, roles: tuple[str, ...] = ROLES) -> None:
        """Bind what ``config`` wants and is not bound yet; all or nothing (OSError)."""
        loop = asyncio.get_running_loop()
        opened: list[Key] = []
        for key in wanted(config):
            role, address = key
            if role not in roles or key in self._bound:
                continue
            try:
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
                log.info("no longer listening on %s (%s)", key[1], key[0])
