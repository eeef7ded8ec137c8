"""The real client drivers the tests talk through, behind one tiny interface.

Each driver opens a connection to host:port as app/apppw on database `test`
and runs one statement, returning its rows as a list of tuples. Errors are the
driver's own exceptions; `error_code` pulls the MySQL error number out of any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mysql.connector
import MySQLdb
import pymysql
import sqlalchemy


class Client:
    name = "?"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PyMySQLClient(Client):
    name = "pymysql"

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        self.conn = pymysql.connect(
            host=host,
            port=port,
            user="app",
            password="apppw",
            database="test",
            autocommit=True,
            read_timeout=30,
            write_timeout=30,
            **kw,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def close(self) -> None:
        self.conn.close()


class MySQLdbClient(Client):
    name = "mysqlclient"

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        self.conn = MySQLdb.connect(
            host=host,
            port=port,
            user="app",
            password="apppw",
            database="test",
            autocommit=True,
            read_timeout=30,
            **kw,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()


class ConnectorClient(Client):
    name = "mysql-connector"

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        self.conn = mysql.connector.connect(
            host=host,
            port=port,
            user="app",
            password="apppw",
            database="test",
            autocommit=True,
            use_pure=kw.pop("use_pure", True),
            **kw,
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.with_rows else []
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()


class SQLAlchemyClient(Client):
    """An Engine with its default pool: no pool_recycle, no pool_pre_ping."""

    name = "sqlalchemy"

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        self.engine = sqlalchemy.create_engine(
            f"mysql+pymysql://app:apppw@{host}:{port}/test", **kw
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            result = conn.execute(sqlalchemy.text(sql))
            rows = [tuple(r) for r in result] if result.returns_rows else []
            conn.commit()
            return rows

    def close(self) -> None:
        self.engine.dispose()


def connector(host: str, port: int, **kw: Any) -> Any:
    """A raw mysql-connector-python connection as app/apppw on `test` (pure Python)."""
    params: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": "app",
        "password": "apppw",
        "database": "test",
        "use_pure": True,
    }
    params.update(kw)
    return mysql.connector.connect(**params)


def scalar(conn: Any, sql: str) -> Any:
    """The first column of the first row of `sql` on a DB-API connection (None if no row)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    finally:
        cur.close()
    return rows[0][0] if rows else None


DRIVERS: dict[str, Callable[..., Client]] = {
    "pymysql": PyMySQLClient,
    "mysqlclient": MySQLdbClient,
    "mysql-connector": ConnectorClient,
    "sqlalchemy": SQLAlchemyClient,
}


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of any driver's exception (SQLAlchemy wraps the DBAPI's)."""
    orig = getattr(exc, "orig", None)
    if orig is not None:
        exc = orig
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return errno
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None
