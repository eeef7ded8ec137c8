"""A primary and replicas with MariaDB's GTID replication, started by the tests.

Each server is a MariaDBServer of its own (temp datadir, free port) with a binary log.
The users and the test database are made on every server by its own provisioning; the
binary logs are then reset so that replication starts from nothing. ``promote()`` does
what an operator or an orchestrator does at a failover.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.mariadb import APP_USER, MariaDBServer

REPL_USER = "repl"
REPL_PASSWORD = "replpw"


class ReplicaSet:
    def __init__(self, factory: Callable[..., MariaDBServer], replicas: int = 2) -> None:
        self.servers = [
            factory(
                skip_log_bin=False,
                log_bin="mariadb-bin",
                server_id=number,
                log_slave_updates=True,
                binlog_format="ROW",
            )
            for number in range(1, replicas + 2)
        ]
        for server in self.servers:
            server.execute(
                f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'"
            )
            server.execute(
                f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPL_USER}'@'%'"
            )
            for host in ("%", "localhost"):
                # As an application's account should be: a read-only server refuses its
                # writes (GRANT ALL includes READ_ONLY ADMIN, which would let them in).
                server.execute(f"REVOKE READ_ONLY ADMIN ON *.* FROM '{APP_USER}'@'{host}'")
            server.execute("RESET MASTER")  # what each made for itself is not replicated
        self.primary = self.servers[0]
        for replica in self.replicas:
            self._follow(replica, self.primary)

    @property
    def replicas(self) -> list[MariaDBServer]:
        return [s for s in self.servers if s is not self.primary]

    def _follow(self, replica: MariaDBServer, primary: MariaDBServer) -> None:
        replica.execute("SET GLOBAL read_only = 1")
        replica.execute("STOP SLAVE")
        replica.execute(
            f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary.port},"
            f" MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}',"
            " MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1"
        )
        replica.execute("START SLAVE")
        deadline = time.monotonic() + 30
        while True:
            status = replica.execute("SHOW SLAVE STATUS")
            if status and _column(replica, "Slave_IO_Running") == "Yes":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{replica!r} does not replicate from {primary!r}")
            time.sleep(0.05)

    def server_id(self, server: MariaDBServer) -> int:
        return int(server.execute("SELECT @@server_id")[0][0])

    def caught_up(self, replica: MariaDBServer, timeout: float = 30) -> None:
        """Wait until ``replica`` applied everything the primary has logged."""
        position = self.primary.execute("SELECT @@gtid_binlog_pos")[0][0]
        waited = replica.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))[0][0]
        if waited != 0:
            raise RuntimeError(f"{replica!r} did not reach {position} in {timeout} s")

    def demote(self) -> None:
        """The primary stops taking writes (an orchestrator's first step)."""
        self.primary.execute("SET GLOBAL read_only = 1")

    def promote(self, replica: MariaDBServer) -> None:
        """``replica`` becomes the primary; the other replicas follow it."""
        replica.execute("STOP SLAVE")
        replica.execute("RESET SLAVE ALL")
        replica.execute("SET GLOBAL read_only = 0")
        old = self.primary
        self.primary = replica
        for other in self.replicas:
            if other is not old:
                self._follow(other, replica)


def _column(server: MariaDBServer, name: str) -> str:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        if row is None:
            return ""
        names = [d[0] for d in cur.description]
        return str(row[names.index(name)])
