"""The README's compatibility table, generated from what tests/compat exercises.

    .venv/bin/python -m tests.compat.table            # print the table, with installed versions
    .venv/bin/python -m tests.compat.table --write    # put it into README.md

Each row names the test that proves it; tests/compat/test_table.py checks that those tests
exist and that the README's table says what this one does (versions aside: they are the
ones scripts/setup installed when it was written).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BEGIN, END = "<!-- compat table: begin -->", "<!-- compat table: end -->"


@dataclass(frozen=True)
class Row:
    driver: str
    version: tuple[str, ...]  # ("pypi", name) or a command whose first line is the version
    exercised: str
    test: str  # module::function under tests/compat/ (or tests/integration/)


ROWS = (
    Row(
        "PyMySQL",
        ("pypi", "PyMySQL"),
        "text and binary protocol, every test of the suite",
        "integration/test_transaction_pooling.py::test_forty_clients_keep_their_own_session_on_eight_backends",
    ),
    Row(
        "mysqlclient",
        ("pypi", "mysqlclient"),
        "Django's backend: migrate, atomic, CONN_MAX_AGE",
        "compat/test_python.py::test_django_orm_migrate_transactions_and_persistent_connections",
    ),
    Row(
        "mysql-connector-python",
        ("pypi", "mysql-connector-python"),
        "C extension and pure Python, prepared cursors, transactions",
        "compat/test_python.py::test_mysql_connector_prepared_cursors",
    ),
    Row(
        "aiomysql",
        ("pypi", "aiomysql"),
        "pool under 40 tasks, transactions, unbuffered streaming",
        "compat/test_python.py::test_aiomysql_pool_transactions_and_a_streamed_result",
    ),
    Row(
        "asyncmy",
        ("pypi", "asyncmy"),
        "pool under 40 tasks, transactions, utf8mb4 and binary",
        "compat/test_python.py::test_asyncmy_pool_and_transactions",
    ),
    Row(
        "SQLAlchemy",
        ("pypi", "SQLAlchemy"),
        "its pool idle past wait_timeout, as the seed program does",
        "integration/test_idle_disconnects.py::test_server_wait_timeout_never_reaches_any_driver",
    ),
    Row(
        "Django",
        ("pypi", "Django"),
        "ORM: migrate on a fresh database, bulk_create, atomic",
        "compat/test_python.py::test_django_orm_migrate_transactions_and_persistent_connections",
    ),
    Row(
        "mariadb client",
        ("mariadb", "--version"),
        "a script with source and \\G, as direct",
        "compat/test_cli.py::test_a_script_with_source_and_vertical_output_reads_the_same",
    ),
    Row(
        "mariadb-dump",
        ("mariadb-dump", "--version"),
        "dump and restore through proxyd: tables, view, trigger, procedure",
        "compat/test_cli.py::test_dump_and_restore_through_proxyd",
    ),
    Row(
        "mariadb-slap",
        ("mariadb-slap", "--version"),
        "mixed load from 16 clients",
        "compat/test_cli.py::test_mariadb_slap_concurrent_load",
    ),
    Row(
        "Node.js mysql2",
        ("node", "-p", "require('./tests/compat/node/node_modules/mysql2/package.json').version"),
        "pool, execute(), 17 MiB packets, transaction, multiple statements, changeUser, streaming,"
        " LOAD DATA LOCAL",
        "compat/test_node.py::test_node_mysql2_through_transaction_pooling",
    ),
    Row(
        "Java MariaDB Connector/J",
        ("dpkg-query", "-W", "-f=${Version}", "libmariadb-java"),
        "useServerPrepStmts, batch insert, transaction, Statement.cancel(), LOAD DATA LOCAL",
        "compat/test_java.py::test_connector_j_through_transaction_pooling",
    ),
    Row(
        "Go go-sql-driver/mysql",
        ("dpkg-query", "-W", "-f=${Version}", "golang-github-go-sql-driver-mysql-dev"),
        "database/sql pool, prepared statements, transactions, context cancellation,"
        " LOAD DATA LOCAL",
        "compat/test_go.py::test_go_sql_driver_through_transaction_pooling",
    ),
    Row(
        "PHP mysqli and PDO (mysqlnd)",
        ("php", "-r", "echo PHP_VERSION;"),
        "connect per request, persistent connections, prepared with long data, a cursor"
        " (COM_STMT_FETCH), LOAD DATA LOCAL, multi-query; compression declined with an error",
        "compat/test_php.py::test_php_mysqli_and_pdo_through_transaction_pooling",
    ),
)


def version(row: Row) -> str:
    if row.version[0] == "pypi":
        return importlib.metadata.version(row.version[1])
    try:
        out = subprocess.run(row.version, capture_output=True, text=True, timeout=30, cwd=REPO)
    except OSError:
        return "not installed"
    text = (out.stdout or out.stderr).strip().splitlines()
    found = re.search(r"\d+\.\d+[\w.+~-]*", text[0]) if text else None
    return found.group(0) if found else "?"


def table(versions: bool = True) -> str:
    lines = ["| driver | version | exercised through transaction pooling |", "|---|---|---|"]
    for row in ROWS:
        lines.append(f"| {row.driver} | {version(row) if versions else '-'} | {row.exercised} |")
    return "\n".join(lines)


def readme_table() -> str:
    text = README.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def main(argv: list[str]) -> int:
    generated = table()
    if "--write" in argv:
        text = README.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        README.write_text(text[:start] + "\n" + generated + "\n" + text[end:])
    else:
        print(generated)
    if "--json" in argv:
        print(json.dumps([row.__dict__ for row in ROWS]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
