"""Which statements may read on a replica (proxyd/session/routing.py): only what proxyd can
tell reads and changes nothing; everything else stays on the primary."""

from __future__ import annotations

import pytest

from proxyd.session.routing import is_replica_read


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT c FROM sbtest1 WHERE id = 42",
        "select sum(k) from sbtest1 where id between 1 and 100",
        "SELECT DISTINCT c FROM t ORDER BY c LIMIT 10",
        "  /* app: list */ SELECT COUNT(*), MAX(id) FROM t WHERE name LIKE 'a%'",
        "(SELECT 1) UNION (SELECT 2)",
        "SELECT @@server_id, NOW(), CONCAT('x', id) FROM t",
        "SELECT * FROM t WHERE id IN (1, 2, 3) AND EXISTS (SELECT 1 FROM u)",
        "SELECT CAST(x AS DECIMAL(10, 2)), JSON_EXTRACT(doc, '$.a') FROM t",
        "SELECT 'FOR UPDATE', 'GET_LOCK(1)', '@x' FROM t",  # words inside literals
        "SHOW TABLES",
        "SHOW CREATE TABLE t",
        "DESCRIBE t",
        "EXPLAIN SELECT * FROM t",
        "SELECT 1;",
    ],
)
def test_reads_that_may_go_to_a_replica(sql: str) -> None:
    assert is_replica_read(sql.encode())


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT * FROM t FOR SHARE",
        "SELECT a INTO @x FROM t",
        "SELECT a FROM t INTO OUTFILE '/tmp/x'",
        "SELECT @x := 1",
        "SELECT @x",
        "SELECT GET_LOCK('l', 1)",
        "SELECT RELEASE_LOCK('l')",
        "SELECT NEXTVAL(s)",
        "SELECT NEXT VALUE FOR s",
        "SELECT LAST_INSERT_ID()",
        "SELECT FOUND_ROWS()",
        "SELECT my_function(1) FROM t",  # a stored function may write
        "SELECT db.f(1)",
        "SELECT `f`(1)",
        "SELECT 1; DELETE FROM t",
        "/* proxyd:primary */ SELECT * FROM t",
        "SELECT * FROM t /* proxyd:primary */",
        "SHOW MASTER STATUS",
        "SHOW SLAVE STATUS",
        "SHOW WARNINGS",
        "SHOW FULL PROCESSLIST",
        "SHOW GLOBAL STATUS",
        "SET @a = 1",
        "BEGIN",
        "CALL p()",
        "WITH c AS (SELECT 1) DELETE FROM t",
        "DO RELEASE_LOCK('x')",
        "",
    ],
)
def test_everything_else_stays_on_the_primary(sql: str) -> None:
    assert not is_replica_read(sql.encode())
