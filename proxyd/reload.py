"""What a reloaded config changes: the line that tells it, and how the server and pools take it.

Nothing here cuts a backend from under a client: backends to be replaced (a new
``backend.address``, changed backend credentials) are marked with the pool's
``drain_before`` and closed by the daemon's upkeep when they come back idle. The daemon
decides when a reload happens and binds its new listeners first (see ``proxyd.daemon``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from proxyd.config import BackendConfig, Config, UserConfig
from proxyd.config_view import flatten_config
from proxyd.pool import Pool, Server
from proxyd.stats import Stats

log = logging.getLogger("proxyd.daemon")


def config_changes(old: Config, new: Config) -> list[str]:
    """``["pool.max_size: 20 -> 40", "users[app].password changed", ...]``, never a password."""
    before, after = flatten_config(old), flatten_config(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key.startswith("path") or key.endswith(".name"):
            continue
        if key not in after:
            changes.append(f"{key} removed")
        elif key not in before:
            changes.append(f"{key} = {after[key]}")
        elif before[key] != after[key]:
            changes.append(f"{key}: {before[key]} -> {after[key]}")
    # Redaction hides password changes; name them (never the values).
    for name, user in new.users.items():
        was = old.users.get(name)
        if was is not None and (was.password, was.password_hash) != (
            user.password,
            user.password_hash,
        ):
            changes.append(f"users[{name}].password changed")
        if was is not None and was.backend_password != user.backend_password:
            changes.append(f"users[{name}].backend_password changed")
    if old.admin and new.admin and old.admin.password != new.admin.password:
        changes.append("admin.password changed")
    return changes


def apply_backend(
    server: Server, pools: list[Pool], old: BackendConfig, new: BackendConfig, stats: Stats
) -> Server:
    """The server the pools use from now on: ``server`` with new timeouts, or a new one
    (a new address or connect budget), in which case the pools are switched to it."""
    if new == old:
        return server
    if new.address == old.address and new.max_connecting == old.max_connecting:
        server.config = new  # timeouts: read at each use
        if new.tls != old.tls:
            # Connections opened under the old TLS settings are replaced as they idle.
            log.info("backend.tls changed: server connections are replaced as they idle")
            for pool in pools:
                pool.drain_before = time.monotonic()
        return server
    replacement = Server(new, stats)
    replacement.threads = server.threads  # the old server's connections drain meanwhile
    if new.address == old.address:
        # Same server, new connect budget: keep what we know of it.
        replacement.version = server.version
        replacement.charset = server.charset
        replacement.up = server.up
    else:
        replacement.version = server.version  # shown to clients until the new one answers
        replacement.charset = server.charset
        log.info(
            "backend.address changed from %s to %s: new backend connections go to %s; "
            "the %d to %s close as they become idle",
            old.address,
            new.address,
            new.address,
            sum(len(pool.conns) for pool in pools),
            old.address,
        )
    now = time.monotonic()
    for pool in pools:
        pool.server = replacement
        if new.address != old.address or new.tls != old.tls:
            pool.drain_before = now
    return replacement


def apply_users(
    pools: dict[str, Pool],
    removed: list[Pool],
    users: Mapping[str, UserConfig],
    new_pool: Callable[[UserConfig], Pool],
    clients: Callable[[Pool], int],
) -> None:
    """Give ``pools`` (by user name) the ``users`` of the new config.

    A new user gets a pool (a removed one it had, if still draining, or ``new_pool``); a
    user gone from the config moves to ``removed``, where its clients keep their sessions
    (``clients`` counts them, for the log).
    """
    now = time.monotonic()
    for name, user in users.items():
        pool = pools.get(name)
        if pool is None:
            pool = next((p for p in removed if p.name == name), None)
            if pool is not None:
                removed.remove(pool)
            else:
                pool = new_pool(user)
                pool.start()
                log.info("user %s added", name)
            pools[name] = pool
        previous = pool.user
        pool.user = user
        if (previous.backend_user, previous.backend_password) != (
            user.backend_user,
            user.backend_password,
        ):
            pool.drain_before = now
            log.info("user %s: backend credentials changed; replacing its backends", name)
    for name in [name for name in pools if name not in users]:
        pool = pools.pop(name)
        removed.append(pool)
        log.info(
            "user %s removed: no new logins; its %d clients keep their sessions",
            name,
            clients(pool),
        )
