"""A client's session state as the client believes it to be, and why it may be pinned.

The frontend forwards commands; this module keeps the books. After every
answer, ``ClientState.absorb`` folds in what the server's session trackers
reported (schema, system variables, transaction state) and what the
statement's text implies (hints.py), and recomputes ``pins``: the reasons,
if any, why this client must stay on the backend it is using.

Movable state (schema, character set, session variables, autocommit,
multi-statements, LAST_INSERT_ID, binary prepared statements) is replayed on
whatever backend the client gets next. Unmovable state pins:
  transaction      an open transaction (server status flag)
  xa               an XA transaction
  user_variables   user variables (SET @x, SELECT ... INTO @x, :=)
  temp_tables      temporary tables, until all are dropped
  sql_prepare      SQL PREPARE, until all are deallocated
  locks            GET_LOCK locks, until released
  table_locks      LOCK TABLES / FLUSH TABLES WITH READ LOCK, until UNLOCK TABLES
  characteristics  SET TRANSACTION for the next transaction
  variable         a variable that only means something on its own connection
  cursor           an open binary-protocol cursor
  found_rows       SQL_CALC_FOUND_ROWS: FOUND_ROWS() must run where it ran
  warnings         the last statement's warnings, until the next statement
  session_state    state the trackers reported but proxyd could not name
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from pymysql.charset import charset_by_id, charset_by_name

from proxyd.protocol.constants import (
    CLIENT,
    COMMAND,
    SERVER_STATUS,
    SESSION_TRACK_SCHEMA,
    SESSION_TRACK_STATE_CHANGE,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SESSION_TRACK_TRANSACTION_CHARACTERISTICS,
    SESSION_TRACK_TRANSACTION_STATE,
)
from proxyd.protocol.errors import ProtocolError
from proxyd.protocol.messages import StateChange
from proxyd.protocol.packets import encode_packet
from proxyd.protocol.response import ResponseTracker
from proxyd.session.hints import NO_HINTS, StatementHints
from proxyd.variables import CHARSET_VARIABLES, REPORTED_VARIABLES, UNMOVABLE_VARIABLES


@functools.cache
def _collations() -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(1, 2048):
        try:
            out[charset_by_id(i).collation] = i
        except KeyError:
            continue
    return out


def charset_id(charset: str, collation: str | None) -> int | None:
    """The collation id for SET NAMES charset [COLLATE collation], or None if unknown."""
    if collation is not None:
        cid = _collations().get(collation)
        if cid is None or not collation.startswith(charset):
            return None
        return cid
    cs = charset_by_name(charset)
    return None if cs is None else cs.id


# Pins that last only until the next statement is answered.
_PER_STATEMENT_PINS = ("warnings", "found_rows")
# Pins whose loss with a server connection the client learns of by itself, so the session
# may go on without a word: the next statement's diagnostics replace them anyway, and a
# COM_STMT_FETCH on a lost cursor is answered "no open cursor".
SOFT_PINS = frozenset((*_PER_STATEMENT_PINS, "cursor"))

PIN_DESCRIPTIONS = {
    "xa": "XA transaction",
    "user_variables": "user variables",
    "temp_tables": "temporary tables",
    "sql_prepare": "SQL PREPARE statements",
    "locks": "GET_LOCK locks",
    "table_locks": "LOCK TABLES / FLUSH TABLES WITH READ LOCK",
    "characteristics": "SET TRANSACTION for the next transaction",
    "variable": "a session variable bound to its connection",
    "cursor": "an open cursor",
    "found_rows": "SQL_CALC_FOUND_ROWS (for FOUND_ROWS())",
    "warnings": "diagnostics of the last statement (for SHOW WARNINGS/ERRORS)",
    "session_state": "session state reported by the server",
}


@dataclass(slots=True)
class PreparedStatement:
    """A binary-protocol statement as the client knows it (proxyd's id)."""

    id: int
    sql: bytes
    num_params: int
    num_columns: int
    param_types: bytes | None = None  # sent by the client with its first execute
    long_data: list[bytes] = field(default_factory=list)  # pending SEND_LONG_DATA bodies
    replica_read: bool | None = None  # may execute on a replica (session/routing.py)


class ClientState:
    """See the module docstring."""

    def __init__(self, capabilities: int, charset: int, schema: bytes | None) -> None:
        self.schema = schema
        self.charset = charset
        self.vars: dict[bytes, bytes] = {}
        self.multi_statements = bool(capabilities & CLIENT.MULTI_STATEMENTS)
        self.last_insert_id = 0
        self.last_gtid = b""  # MariaDB's @@last_gtid after this client's last write
        self.characteristics = b""  # the pending SET TRANSACTION, as the server states it
        self.nontransactional_write = False  # in this transaction (see _apply_changes)
        self.row_count = -1  # ROW_COUNT() of the previous statement
        self.found_rows = 0  # FOUND_ROWS() after a plain SELECT
        self.status_flags = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
        self.pins: dict[str, str] = {}
        self.temp_tables: set[bytes] = set()
        self.sql_prepared: set[bytes] = set()
        self.locks = 0
        self.lock_names: set[bytes] = set()  # of those GET_LOCK locks, the ones named literally
        self.user_variables: set[bytes] = set()  # names set while pinned, for the loss message
        self.statements: dict[int, PreparedStatement] = {}
        self.next_statement_id = 1
        self.cursor_statement: int | None = None

    @property
    def in_transaction(self) -> bool:
        return bool(self.status_flags & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    @property
    def pinned(self) -> bool:
        return bool(self.pins)

    @property
    def holds_state(self) -> bool:
        """Pinned by state whose loss must be told to the client (not SOFT_PINS)."""
        return bool(self.pins) and any(key not in SOFT_PINS for key in self.pins)

    @property
    def bound(self) -> bool:
        """May only go on with the server connection it has (a transaction, held state)."""
        return self.in_transaction or self.holds_state

    def pin_reasons(self) -> str:
        reasons = list(self.pins.values())
        if self.in_transaction:
            reasons.insert(0, "open transaction")
        return ", ".join(reasons)

    def set_charset(self, charset: int) -> None:
        """SET NAMES: the handshake-style character set replaces any per-variable one."""
        self.charset = charset
        for name in CHARSET_VARIABLES:
            self.vars.pop(name, None)

    def reset(self) -> None:
        """COM_RESET_CONNECTION / COM_CHANGE_USER: a fresh session, same schema."""
        self.vars.clear()
        self.last_insert_id = 0
        self.status_flags = SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT
        self.pins.clear()
        self.temp_tables.clear()
        self.sql_prepared.clear()
        self._forget_held()
        self.statements.clear()
        self.cursor_statement = None

    def lose_backend(self) -> str:
        """The backend holding our unmovable state died; that state is gone with it.

        Returns what was lost that the client must be told of ("" for nothing), by name
        where proxyd knows it: "open transaction, lock 'x', temporary table t1"."""
        lost = ", ".join(
            [
                *(["open transaction"] if self.in_transaction else []),
                *(self._held(k, why) for k, why in self.pins.items() if k not in SOFT_PINS),
            ]
        )
        self.pins.clear()
        self.temp_tables.clear()
        self.sql_prepared.clear()
        self._forget_held()
        self.cursor_statement = None
        self.status_flags &= ~SERVER_STATUS.SERVER_STATUS_IN_TRANS
        return lost

    def _held(self, pin: str, description: str) -> str:
        """A pin's description, naming what it holds where proxyd knows the names."""
        names: list[str] = []
        if pin == "temp_tables":
            one, many, names = "temporary table", "temporary tables", _listed(self.temp_tables)
        elif pin == "sql_prepare":
            one, many = "prepared statement", "prepared statements"
            names = _listed(self.sql_prepared)
        elif pin == "user_variables":
            one, many = "user variable", "user variables"
            names = ["@" + n for n in _listed(self.user_variables)]
        elif pin == "locks":
            one, many = "lock", "locks"
            names = [f"'{n}'" for n in _listed(self.lock_names)]
            if 0 < len(names) < self.locks:
                names.append(f"{self.locks - len(names)} more GET_LOCK lock(s)")
        if not names:
            return description
        return f"{one if len(names) == 1 else many} {', '.join(names)}"

    def _forget_held(self) -> None:
        self.locks = 0
        self.lock_names.clear()
        self.user_variables.clear()

    # -- learning from an answer ---------------------------------------------------

    def absorb(
        self,
        command: int,
        tracker: ResponseTracker,
        hints: StatementHints,
        uses_tables: bool = True,
    ) -> None:
        """Fold in one answer; ``uses_tables`` is False for a statement that leaves the
        diagnostics area as it was (MariaDB clears it only for statements using tables)."""
        if tracker.status_flags:
            self.status_flags = tracker.status_flags & ~SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
        if hints.diagnostics:
            # SHOW WARNINGS and friends leave the previous statement's diagnostics in
            # place (and may report a count of 0 while doing so): keep what pinned them.
            return
        for key in _PER_STATEMENT_PINS:
            if key != "warnings" or uses_tables or tracker.err is not None:
                self.pins.pop(key, None)
        if command in (COMMAND.COM_QUERY, COMMAND.COM_STMT_EXECUTE) and tracker.err is None:
            if tracker.result_sets:
                self.row_count = -1
                self.found_rows = tracker.rows
            elif tracker.ok is not None:
                self.row_count = tracker.ok.affected_rows
        ok = tracker.ok
        if ok is not None and ok.last_insert_id:
            self.last_insert_id = ok.last_insert_id
        if tracker.warnings or tracker.err is not None:
            # An error fills the diagnostics area too (SHOW ERRORS, @@error_count, GET
            # DIAGNOSTICS, the CLI's --show-warnings): they must be read where it ran.
            self.pins["warnings"] = PIN_DESCRIPTIONS["warnings"]
        if command == COMMAND.COM_STMT_EXECUTE and (
            tracker.status_flags & SERVER_STATUS.SERVER_STATUS_CURSOR_EXISTS
        ):
            self.pins["cursor"] = PIN_DESCRIPTIONS["cursor"]
        failed = tracker.err is not None and not tracker.state_changes
        if hints is not NO_HINTS and not failed:
            self._apply_hints(hints)
        for changes in tracker.state_changes:
            self._apply_changes(changes, hints)

    def _apply_hints(self, h: StatementHints) -> None:
        pins = self.pins
        if h.calc_found_rows:
            pins["found_rows"] = PIN_DESCRIPTIONS["found_rows"]
        if h.user_variables:
            pins["user_variables"] = PIN_DESCRIPTIONS["user_variables"]
            self.user_variables.update(h.user_variable_names)
        self.temp_tables.update(h.temp_tables_created)
        self.temp_tables.difference_update(h.tables_dropped)
        self.sql_prepared.update(h.prepared)
        self.sql_prepared.difference_update(h.deallocated)
        if h.release_all_locks:
            self.locks = 0
            self.lock_names.clear()
        self.locks = max(0, self.locks + h.get_locks - h.release_locks)
        self.lock_names.update(h.lock_names)
        self.lock_names.difference_update(h.released_lock_names)
        if not self.locks:
            self.lock_names.clear()
        if h.lock_tables:
            pins["table_locks"] = PIN_DESCRIPTIONS["table_locks"]
        if h.unlock_tables:
            pins.pop("table_locks", None)
        if h.xa_start:
            pins["xa"] = PIN_DESCRIPTIONS["xa"]
        if h.xa_end:
            pins.pop("xa", None)
        for key, active in (
            ("temp_tables", self.temp_tables),
            ("sql_prepare", self.sql_prepared),
            ("locks", self.locks),
        ):
            if active:
                pins[key] = PIN_DESCRIPTIONS[key]
            else:
                pins.pop(key, None)

    def _apply_changes(self, changes: list[StateChange], hints: StatementHints) -> None:
        named = False
        bare = False
        for c in changes:
            if c.type == SESSION_TRACK_SCHEMA:
                self.schema = c.name or None
                named = True
            elif c.type == SESSION_TRACK_SYSTEM_VARIABLES:
                named = True
                if c.name in UNMOVABLE_VARIABLES:
                    self.pins["variable"] = f"session variable {c.name.decode(errors='replace')}"
                elif c.name == b"last_insert_id":
                    self.last_insert_id = int(c.value or b"0") if c.value.isdigit() else 0
                elif c.name in REPORTED_VARIABLES:
                    if c.name == b"last_gtid":
                        self.last_gtid = c.value  # where this client's last write went
                elif not c.name.startswith(b"session_track_"):
                    self.vars[c.name] = c.value
            elif c.type == SESSION_TRACK_STATE_CHANGE:
                bare = True
            elif c.type == SESSION_TRACK_TRANSACTION_CHARACTERISTICS:
                if c.name and not self.in_transaction:
                    self.pins["characteristics"] = PIN_DESCRIPTIONS["characteristics"]
                    self.characteristics = c.name  # SET TRANSACTION ...;
                else:
                    self.pins.pop("characteristics", None)
            elif c.type == SESSION_TRACK_TRANSACTION_STATE:
                if c.name.endswith(b"L"):
                    self.pins["table_locks"] = PIN_DESCRIPTIONS["table_locks"]
                # "TrRwWsSL", one flag per place: w, a non-transactional table written,
                # which a rollback cannot undo (a replay would write it twice).
                if c.name[3:4] == b"w":
                    self.nontransactional_write = True
        explained = (
            hints.user_variables
            or hints.temp_tables_created
            or hints.tables_dropped
            or hints.prepared
            or hints.deallocated
            or hints.lock_tables
            or hints.unlock_tables
        )
        if bare and not named and not explained:
            self.pins["session_state"] = PIN_DESCRIPTIONS["session_state"]


def _listed(names: set[bytes]) -> list[str]:
    return sorted(n.decode("utf-8", "replace") for n in names)


def with_param_types(stmt: PreparedStatement, payload: bytes) -> bytes:
    """A COM_STMT_EXECUTE that always sends its parameter types: the server connection's
    copy of the statement may have others bound (or none) from another client's use."""
    n = stmt.num_params
    if n == 0:
        return payload
    bound_at = 10 + (n + 7) // 8
    if len(payload) <= bound_at:
        raise ProtocolError("COM_STMT_EXECUTE too short for its parameters")
    if payload[bound_at] == 1:
        stmt.param_types = payload[bound_at + 1 : bound_at + 1 + 2 * n]
        return payload
    if stmt.param_types is None:
        return payload
    return payload[:bound_at] + b"\x01" + stmt.param_types + payload[bound_at + 1 :]


def execute_packets(server_id: int, payload: bytes, long_data: Iterable[bytes]) -> bytes:
    """A statement command (and the long data it carries) framed for a server connection
    whose id for the statement is ``server_id``."""
    sid = server_id.to_bytes(4, "little")
    out = [
        encode_packet(bytes((COMMAND.COM_STMT_SEND_LONG_DATA,)) + sid + chunk, 0)
        for chunk in long_data
    ]
    out.append(encode_packet(payload[:1] + sid + payload[5:], 0))
    return b"".join(out)
