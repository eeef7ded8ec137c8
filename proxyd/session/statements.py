"""What a statement's text says about re-running it after a lost server connection.

Pure functions over the bytes of a COM_QUERY (or the text of a prepared statement),
used by the client session on the loss path: may this command run again elsewhere
(it changes no data), can it have committed a transaction, does it leave the
diagnostics area as it was. Literals are emptied first: words inside strings
('into the dark') say nothing about the statement.
"""

from __future__ import annotations

import re

from proxyd.protocol.constants import COMMAND

# Statements that cannot change data: safe to run again on a new backend when
# the old one died before answering.
_READ_ONLY_PREFIXES = (
    b"SELECT",
    b"SHOW",
    b"DESCRIBE",
    b"DESC",
    b"EXPLAIN",
    b"HELP",
    b"SET",
    b"USE",
)
_STRING_LITERAL = re.compile(rb"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"", re.S)
# Statements that never commit: a transaction lost while one of them ran was rolled back.
# Anything else (COMMIT, DDL, SET autocommit, BEGIN, CALL...) may have committed it.
_NEVER_COMMITS = (
    b"SELECT",
    b"INSERT",
    b"UPDATE",
    b"DELETE",
    b"REPLACE",
    b"SAVEPOINT",
    b"RELEASE SAVEPOINT",
    b"ROLLBACK",
    b"SHOW",
    b"DESCRIBE",
    b"DESC",
    b"EXPLAIN",
    b"WITH",
    b"VALUES",
    b"DO ",
)
_TRANSACTION_START = re.compile(
    rb"\s*(?:BEGIN(?:\s+WORK)?|START\s+TRANSACTION(?:\s+[A-Z ,]*)?)\s*;?\s*$"
)
_TABLELESS = (b"SELECT", b"SET", b"DO ", b"VALUES")
_TABLE_WORDS = re.compile(rb"\b(?:FROM|INTO|JOIN|UPDATE|TABLE)\b")
_PLAIN_ROLLBACK = re.compile(rb"\s*ROLLBACK(?:\s+WORK)?\s*;?\s*$")
_UNSAFE_READ_WORDS = (
    b"FOR UPDATE",
    b"LOCK IN SHARE MODE",
    b"INTO",
    b"GET_LOCK",
    b"SLEEP(",
    b"NEXTVAL",
)


def words(sql: bytes) -> bytes:
    """The statement in upper case with string literals emptied: words inside literals
    ('into the dark') say nothing about the statement."""
    return _STRING_LITERAL.sub(b"''", bytes(sql)).upper()


def _one_statement(words: bytes) -> bool:
    return b";" not in words.rstrip(b"; \t\r\n")


def is_read_only(sql: bytes) -> bool:
    """A statement that changes no data, so it may run again on another connection."""
    whole = words(sql)
    text = whole.lstrip(b" \t\r\n(")
    if not text.startswith(_READ_ONLY_PREFIXES):
        return False
    if text.startswith(b"SET") and (b"@" in text.split(b"=", 1)[0].replace(b"@@", b"")):
        return False  # user variables: retried state would pin anyway
    return not any(word in whole for word in _UNSAFE_READ_WORDS) and _one_statement(whole)


def is_retry_safe(payload: bytes, prepared: bytes | None) -> bool:
    """A command that changes no data if it ran, so it may run again elsewhere.

    Only asked of a session outside a transaction: there BEGIN changes nothing either
    (inside one it would commit the transaction first).
    """
    command = payload[0]
    if command in (
        COMMAND.COM_PING,
        COMMAND.COM_INIT_DB,
        COMMAND.COM_STMT_PREPARE,
        COMMAND.COM_FIELD_LIST,
        COMMAND.COM_STATISTICS,
    ):
        return True
    if command == COMMAND.COM_QUERY:
        return is_read_only(payload[1:]) or bool(_TRANSACTION_START.match(words(payload[1:])))
    if command == COMMAND.COM_STMT_EXECUTE and prepared is not None:
        # The text is proxyd's from the prepare; the re-run prepares it again if needed.
        return is_read_only(prepared)
    return False


def cannot_commit(payload: bytes, prepared: bytes | None) -> bool:
    """A command that cannot end a transaction with a commit (explicit or implicit), so a
    transaction lost while it ran was certainly rolled back."""
    command = payload[0]
    if command == COMMAND.COM_QUERY:
        sql = payload[1:]
    elif command == COMMAND.COM_STMT_EXECUTE and prepared is not None:
        sql = prepared
    else:
        return command in (
            COMMAND.COM_PING,
            COMMAND.COM_INIT_DB,
            COMMAND.COM_STMT_PREPARE,
            COMMAND.COM_STMT_FETCH,
            COMMAND.COM_FIELD_LIST,
            COMMAND.COM_STATISTICS,
        )
    whole = words(sql)
    return whole.lstrip(b" \t\r\n(").startswith(_NEVER_COMMITS) and _one_statement(whole)


def uses_tables(command: int, payload: bytes) -> bool:
    """Whether a statement may use tables, which is when MariaDB clears the diagnostics
    area; `SELECT 'x'`, `SET ...` and `DO ...` leave the previous warnings readable."""
    if command != COMMAND.COM_QUERY:
        return True
    whole = words(payload[1:])
    return not (whole.lstrip(b" \t\r\n(").startswith(_TABLELESS) and not _TABLE_WORDS.search(whole))


def is_plain_rollback(payload: bytes) -> bool:
    return payload[0] == COMMAND.COM_QUERY and bool(_PLAIN_ROLLBACK.match(words(payload[1:])))
