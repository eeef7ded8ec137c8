"""The statements that would show a client server thread ids, rewritten to client ids: on
bytes, no server. What the server makes of the rewritten text is tested against a real one
in tests/integration/test_identity.py."""

from __future__ import annotations

import pytest

from proxyd.session.hints import NO_HINTS, analyse
from proxyd.session.identity import Client, ProcessView, rewrite_ids

ALICE = Client(2147483647, "app", "10.0.0.5:40000")
BOB = Client(2147483646, "app", "10.0.0.6:40001", b"shop", 12.5)


def _view(**kw: object) -> ProcessView:
    view = ProcessView(held={31: ALICE}, hidden=[28, 29], idle=[BOB], own_thread=31)
    view.own_info = b"the client's text"
    for key, value in kw.items():
        setattr(view, key, value)
    return view


@pytest.mark.parametrize(
    "sql",
    [
        b"SHOW PROCESSLIST",
        b"show full processlist;",
        b"SELECT * FROM information_schema.PROCESSLIST",
        b"select id from `information_schema`.`processlist` where id = 5",
        b"SELECT IS_USED_LOCK('x')",
        b"SELECT PROCESSLIST_ID FROM performance_schema.threads",
    ],
)
def test_statements_that_show_server_ids_are_noticed_with_their_text(sql: bytes) -> None:
    assert analyse(sql).server_ids == sql


@pytest.mark.parametrize("sql", [b"SELECT 1", b"SELECT * FROM threads", b"SELECT GET_LOCK('x', 0)"])
def test_other_statements_are_not(sql: bytes) -> None:
    hints = analyse(sql)
    assert hints is NO_HINTS or hints.server_ids is None


def test_show_processlist_becomes_a_select_of_its_columns_over_the_mapped_table() -> None:
    sql = rewrite_ids(b"SHOW PROCESSLIST", _view())
    assert sql.startswith(b"SELECT ID AS Id, USER AS User, HOST AS Host, DB AS db,")
    assert b"LEFT(INFO, 100) AS Info" in sql
    assert b"Progress" not in sql  # only where the server's table has that column
    full = rewrite_ids(b"SHOW FULL PROCESSLIST", _view(processlist_columns=("ID", "PROGRESS")))
    assert b"INFO AS Info" in full and b"LEFT(INFO" not in full
    assert b"PROGRESS AS Progress" in full


def test_the_process_list_maps_held_rows_hides_the_idle_pool_and_adds_idle_clients() -> None:
    sql = rewrite_ids(b"SELECT * FROM information_schema.PROCESSLIST", _view())
    assert b"CASE `ID` WHEN 31 THEN 2147483647 ELSE `ID` END AS `ID`" in sql
    assert b"WHERE ID NOT IN (28, 29)" in sql
    # Bob has no server connection now: a row of his own, as an idle connection.
    assert b"SELECT 2147483646 AS `ID`" in sql
    assert b"%s AS `HOST`" % _literal(b"10.0.0.6:40001") in sql
    assert b"%s AS `DB`" % _literal(b"shop") in sql
    assert b"12 AS `TIME`" in sql
    # The asking client's own row shows the statement it wrote, not this rewrite.
    assert b"WHEN 31 THEN %s ELSE `INFO` END" % _literal(b"the client's text") in sql
    # Columns the client qualifies keep working: the derived table takes the table's name.
    assert sql.endswith(b") AS `PROCESSLIST`")


def test_a_clients_own_alias_is_kept() -> None:
    sql = rewrite_ids(b"SELECT p.ID FROM information_schema.PROCESSLIST p WHERE p.ID = 5", _view())
    assert sql.startswith(b"SELECT p.ID FROM (SELECT ")
    assert sql.endswith(b") p WHERE p.ID = 5")
    aliased = rewrite_ids(b"SELECT * FROM information_schema.processlist AS q", _view())
    assert aliased.endswith(b") AS q")


def test_lock_owners_are_mapped_and_keep_their_column_name() -> None:
    sql = rewrite_ids(b"SELECT IS_USED_LOCK('a(b'), 1", _view())
    assert sql == (
        b"SELECT (CASE IS_USED_LOCK('a(b') WHEN 31 THEN 2147483647 ELSE IS_USED_LOCK('a(b')"
        b" END) AS `IS_USED_LOCK('a(b')`, 1"
    )
    where = rewrite_ids(b"SELECT 1 FROM t WHERE IS_USED_LOCK('x') = 7", _view())
    assert where.endswith(b"WHERE (CASE IS_USED_LOCK('x') WHEN 31 THEN 2147483647 ELSE"
                          b" IS_USED_LOCK('x') END) = 7")  # fmt: skip


def test_an_unbalanced_call_is_left_for_the_server_to_refuse() -> None:
    assert rewrite_ids(b"SELECT IS_USED_LOCK('x'", _view()) == b"SELECT IS_USED_LOCK('x'"


def test_threads_map_their_processlist_columns_and_keep_background_threads() -> None:
    sql = rewrite_ids(b"SELECT * FROM performance_schema.threads", _view())
    assert b"CASE `PROCESSLIST_ID` WHEN 31 THEN 2147483647" in sql
    assert b"WHERE PROCESSLIST_ID NOT IN (28, 29) OR PROCESSLIST_ID IS NULL" in sql
    assert b"2147483646" not in sql  # idle clients have no thread row


def test_nothing_held_nothing_hidden_leaves_the_table_as_the_server_has_it() -> None:
    view = ProcessView()
    sql = rewrite_ids(b"SELECT ID FROM information_schema.PROCESSLIST", view)
    assert b"CASE" not in sql and b"NOT IN" not in sql
    assert rewrite_ids(b"SELECT IS_USED_LOCK('x')", view) == b"SELECT IS_USED_LOCK('x')"


def _literal(text: bytes) -> bytes:
    return b"CONVERT(X'" + text.hex().encode() + b"' USING utf8mb4)"


def test_tables_naming_connections_by_id_map_it_where_the_server_has_them() -> None:
    view = _view(other_columns={"INNODB_TRX": ("trx_id", "trx_mysql_thread_id")})
    sql = rewrite_ids(b"SELECT trx_mysql_thread_id FROM information_schema.innodb_trx", view)
    assert sql == (
        b"SELECT trx_mysql_thread_id FROM (SELECT `trx_id`, CASE `trx_mysql_thread_id`"
        b" WHEN 31 THEN 2147483647 ELSE `trx_mysql_thread_id` END AS `trx_mysql_thread_id`"
        b" FROM information_schema.INNODB_TRX) AS `innodb_trx`"
    )
    # A plugin's table the server does not have is left for the server to refuse.
    missing = b"SELECT * FROM information_schema.METADATA_LOCK_INFO"
    assert rewrite_ids(missing, view) == missing
