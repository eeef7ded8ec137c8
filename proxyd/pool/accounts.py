"""Accounts read from the server (``users_from_server``), as MaxScale and PgBouncer's
auth_query do: for a client whose user is not in ``users:``.

With the lookup account, proxyd reads the user's rows of ``mysql.user`` and keeps the
one the server itself would match for proxyd's own address (``USER()``'s host part): its
mysql_native_password hash, SHA1(SHA1(password)), checks the client's scramble answer,
and the answer yields SHA1(password), with which proxyd logs in to the server as that
account (proxyd/protocol/auth.py). proxyd never learns the password. An account with
another plugin is refused with a message saying which plugin and what to do.

A lookup's answer is kept ``refresh`` seconds (an unknown user one second, so that an
account created meanwhile is found at once); a failed lookup keeps using the last answer.
One server connection serves the lookups, one query at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxyd.config import UserConfig, UsersFromServerConfig
from proxyd.pool.server import Server
from proxyd.protocol import auth
from proxyd.server.connection import BackendConnection, BackendError

log = logging.getLogger("proxyd.accounts")

NATIVE = "mysql_native_password"
UNKNOWN_USER_TTL = 1.0


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup gave for a user: the account, or None with ``refusal`` saying why
    it cannot log in through proxyd (empty: no such account)."""

    user: UserConfig | None
    refusal: str = ""
    at: float = 0.0


class AccountLookup:
    """See the module docstring. ``server()`` gives the daemon's current Server (a reload
    may replace it)."""

    def __init__(self, config: UsersFromServerConfig, server: Callable[[], Server]) -> None:
        self.config = config
        self._server = server
        self._found: dict[str, Found] = {}
        self._running: dict[str, asyncio.Future[Found]] = {}
        self._conn: BackendConnection | None = None
        self._host = ""  # proxyd's host as the server sees it
        self._lock = asyncio.Lock()

    def fresh(self, name: str, now: float) -> Found | None:
        """The kept answer for ``name`` while it is fresh, else None: look_up() first."""
        found = self._found.get(name)
        if found is None:
            return None
        ttl = self.config.refresh if found.user is not None else UNKNOWN_USER_TTL
        return found if now - found.at < ttl else None

    def known(self, name: str) -> UserConfig | None:
        """The account last found for ``name``, fresh or not."""
        found = self._found.get(name)
        return None if found is None else found.user

    async def look_up(self, name: str) -> Found:
        """Read ``name``'s account from the server (one query for concurrent callers)."""
        running = self._running.get(name)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Found] = asyncio.get_running_loop().create_future()
        self._running[name] = future
        try:
            found = await self._look_up(name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: concurrent callers get it, nobody else
            raise
        finally:
            del self._running[name]
        future.set_result(found)
        return found

    async def _look_up(self, name: str) -> Found:
        try:
            async with self._lock:
                rows = await self._query(name)
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            previous = self._found.get(name)
            log.warning("cannot read account %r from the server: %s", name, exc)
            if previous is not None:
                return previous  # the last answer, rather than no login at all
            return Found(None, f"proxyd cannot read this account from the server ({exc})")
        found = self._choose(name, rows)
        self._found[name] = found
        return found

    async def _query(self, name: str) -> list[tuple[str, str, str]]:
        # A hex literal: no quoting of the name to get wrong. Compared as bytes, as the
        # server compares user names.
        sql = (
            b"SELECT Host, plugin, authentication_string FROM mysql.user WHERE User = X'%s'"
            % name.encode().hex().encode()
        )
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                rows = await conn.query(sql)
            except BackendError:
                # Idle since the last lookup, the server may have closed it
                # (wait_timeout, a restart): once more on a new connection.
                conn.close("lookup failed")
                self._conn = None
            else:
                return _texts(rows)
        conn = self._conn = await self._connect()
        return _texts(await conn.query(sql))

    async def _connect(self) -> BackendConnection:
        server = self._server()
        conn = await server.connect(
            UserConfig.own(self.config.user, self.config.password), 0, self._lost
        )
        rows = await conn.query(b"SELECT USER()")
        if isinstance(rows, list) and rows and rows[0][0]:
            self._host = bytes(rows[0][0]).decode("utf-8", "replace").rpartition("@")[2]
        return conn

    def _lost(self, conn: BackendConnection, reason: str) -> None:
        if conn is self._conn:
            self._conn = None

    def _choose(self, name: str, rows: list[tuple[str, str, str]]) -> Found:
        now = time.monotonic()
        row = best_match(self._host, rows)
        if row is None:
            return Found(None, "", now)
        _, plugin, stored = row
        if plugin not in ("", NATIVE):
            return Found(
                None,
                f"account '{name}' uses the {plugin} plugin; users_from_server can only log"
                f" in {NATIVE} accounts: ALTER USER it IDENTIFIED BY a password with that"
                " plugin, or list it in users: with its password",
                now,
            )
        try:
            digest = auth.parse_native_hash(stored) if stored else b""
        except ValueError:
            return Found(None, f"account '{name}' has no usable password hash", now)
        user = UserConfig(
            name=name,
            password="",
            backend_user=name,
            backend_password=None,
            max_connections=0,
            password_hash=digest,
            from_server=True,
        )
        return Found(user, "", now)

    async def warm(self) -> None:
        """Connect once at start (and so learn the server's version) when no pool can."""
        try:
            async with self._lock:
                if self._conn is None:
                    self._conn = await self._connect()
        except (BackendError, OSError, asyncio.TimeoutError) as exc:
            log.warning("users_from_server: cannot log in as %r: %s", self.config.user, exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close("shutting down")
            self._conn = None


def _texts(rows: object) -> list[tuple[str, str, str]]:
    """(Host, plugin, authentication_string) rows as text."""
    if not isinstance(rows, list):
        return []

    def text(value: bytes | None) -> str:
        return bytes(value or b"").decode("utf-8", "replace")

    return [(text(host), text(plugin), text(stored)) for host, plugin, stored in rows]


def best_match(host: str, rows: list[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The row whose Host pattern the server would pick for a client at ``host``: exact
    names before patterns, longer patterns before shorter, ``%`` last."""
    candidates = [row for row in rows if _host_matches(row[0], host)]
    if not candidates:
        return None
    return min(candidates, key=lambda row: _specificity(row[0]))


def _specificity(pattern: str) -> tuple[int, int]:
    wild = "%" in pattern or "_" in pattern
    return (1 if wild else 0, -len(pattern.replace("%", "").replace("_", "")))


def _host_matches(pattern: str, host: str) -> bool:
    local = {"localhost", "127.0.0.1", "::1"}
    if pattern == "localhost":
        return host in local
    if host == "localhost" and pattern in local:
        return True
    regex = "".join(
        ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.lower()
    )
    return re.fullmatch(regex, host.lower()) is not None or (
        host == "localhost" and re.fullmatch(regex, "127.0.0.1") is not None
    )
