"""Session variables that a server connection and a client's session both reason about.

Below both the client session's books (session_state) and the server connection
(backend), so that neither has to import the other's module for these names.
"""

from __future__ import annotations

# Variables whose value cannot be replayed on another connection.
UNMOVABLE_VARIABLES = frozenset(
    (
        b"insert_id",
        b"identity",
        b"timestamp",
        b"rand_seed1",
        b"rand_seed2",
        b"pseudo_thread_id",
        b"gtid_seq_no",
        b"gtid_domain_id",
        b"server_id",
        b"sql_log_bin",
        b"skip_replication",
    )
)
# Read-only variables the server reports when they change: results of the session's last
# statement, not settings, so never replayed (SET of one is error 1238). last_gtid is
# MariaDB's with a binary log: the GTID of the session's last write.
REPORTED_VARIABLES = frozenset((b"last_gtid", b"in_transaction"))
CHARSET_VARIABLES = frozenset(
    (
        b"character_set_client",
        b"character_set_connection",
        b"character_set_results",
        b"collation_connection",
    )
)
