"""The loss path's reading of statement text (proxyd/session/statements.py), bytes only."""

from __future__ import annotations

import pytest
from pymysql.constants import COMMAND

from proxyd.session.statements import cannot_commit, is_plain_rollback, is_retry_safe, uses_tables


def q(sql: str) -> bytes:
    return bytes((COMMAND.COM_QUERY,)) + sql.encode()


EXECUTE = bytes((COMMAND.COM_STMT_EXECUTE,)) + bytes(9)


@pytest.mark.parametrize(
    ("sql", "safe"),
    [
        ("SELECT c FROM sbtest1 WHERE id = 5", True),
        ("  (SELECT 1) UNION (SELECT 2)", True),
        ("SHOW WARNINGS", True),
        ("SET time_zone = '+01:00'", True),
        ("BEGIN", True),
        ("begin work;", True),
        ("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT", True),
        ("SELECT 'select into the dark' AS a", True),  # words in literals say nothing
        ("BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", False),  # a compound statement
        ("SELECT * FROM t FOR UPDATE", False),
        ("SELECT a INTO @x FROM t", False),
        ("SELECT GET_LOCK('l', 1)", False),
        ("SET @x = 1", False),
        ("INSERT INTO t VALUES (1)", False),
        ("SELECT 1; DELETE FROM t", False),
        ("COMMIT", False),
    ],
)
def test_what_may_run_again_after_a_loss(sql: str, safe: bool) -> None:
    assert is_retry_safe(q(sql), None) is safe


def test_a_prepared_execution_is_judged_by_its_prepared_text() -> None:
    assert is_retry_safe(EXECUTE, b"SELECT val FROM t WHERE id = ?")
    assert not is_retry_safe(EXECUTE, b"UPDATE t SET val = ? WHERE id = 1")
    assert not is_retry_safe(EXECUTE, None)
    assert is_retry_safe(bytes((COMMAND.COM_PING,)), None)


@pytest.mark.parametrize(
    ("sql", "rolled_back"),
    [
        ("UPDATE acct SET val = val - 1 WHERE id = 3", True),
        ("INSERT INTO tlog (id) VALUES (7)", True),
        ("SELECT val FROM acct WHERE id = 3 FOR UPDATE", True),
        ("ROLLBACK TO SAVEPOINT s1", True),
        ("COMMIT", False),
        ("commit work", False),
        ("CREATE TABLE x (a INT)", False),  # DDL commits implicitly
        ("SET autocommit = 1", False),
        ("BEGIN", False),  # inside a transaction, BEGIN commits it first
        ("CALL p()", False),
        ("INSERT INTO t VALUES (1); COMMIT", False),
    ],
)
def test_what_a_lost_transaction_statement_may_have_committed(
    sql: str, rolled_back: bool
) -> None:
    assert cannot_commit(q(sql), None) is rolled_back


def test_plain_rollback() -> None:
    assert is_plain_rollback(q("ROLLBACK"))
    assert is_plain_rollback(q(" rollback work ;"))
    assert not is_plain_rollback(q("ROLLBACK TO SAVEPOINT s1"))
    assert not is_plain_rollback(q("ROLLBACK AND CHAIN"))


@pytest.mark.parametrize(
    ("sql", "clears"),
    [
        ("SELECT 'no warnings here'", False),
        ("SET sql_mode = ''", False),
        ("DO 1", False),
        ("SELECT @@warning_count", False),
        ("SELECT c FROM t", True),
        ("INSERT INTO t VALUES (1)", True),
        ("SELECT (SELECT 1 FROM t)", True),
    ],
)
def test_which_statements_clear_the_diagnostics_area(sql: str, clears: bool) -> None:
    assert uses_tables(COMMAND.COM_QUERY, q(sql)) is clears
    assert uses_tables(COMMAND.COM_STMT_EXECUTE, EXECUTE)
