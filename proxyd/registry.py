"""What the running daemon shows its console and its metrics: plain records, no behaviour.

The admin console, the metrics and the client sessions each name, as a ``typing.Protocol``
of their own, the little they need of the daemon (which passes itself); the records they
read it through live here, below all of them, so that nothing imports the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolSummary:
    """One pool as SHOW POOLS and the metrics see it."""

    user: str
    mode: str
    clients_active: int  # holding a backend or running a command
    clients_waiting: int  # waiting for a backend (or held by PAUSE)
    clients_idle: int
    backends_active: int  # lent out, or busy with a ping or reset
    backends_idle: int
    backends_connecting: int
    backends_max: int
    longest_wait: float  # seconds the longest current waiter has waited
    removed: bool  # the user is gone from the config; the pool drains with its clients


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    message: str
