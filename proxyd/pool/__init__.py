"""Server-connection pools: hand-out and return (pool.py), upkeep (janitor.py), and what
the pools of one server address share (server.py)."""

from proxyd.pool.pool import Pool, SessionShape, Waiter
from proxyd.pool.server import AcquireError, Server

__all__ = ["AcquireError", "Pool", "Server", "SessionShape", "Waiter"]
