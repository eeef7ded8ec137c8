"""Python drivers beyond tests/integration's: aiomysql, asyncmy, mysql-connector-python's
C extension and prepared cursors, and the Django ORM, through transaction pooling."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomysql
import asyncmy
import mysql.connector
import pytest

from tests.support.proxy import ProxydProcess

SITE = Path(__file__).parent / "django_site"


@pytest.fixture
def proxy(proxyd: Callable[..., ProxydProcess]) -> ProxydProcess:
    return proxyd({"pool": {"max_size": 4}})


def _params(proxy: ProxydProcess) -> dict[str, Any]:
    return {"host": proxy.host, "port": proxy.port, "user": "app", "password": "apppw"}


def test_aiomysql_pool_transactions_and_a_streamed_result(proxy: ProxydProcess) -> None:
    async def run() -> dict[str, Any]:
        pool = await aiomysql.create_pool(**_params(proxy), db="test", maxsize=8, autocommit=True)
        seen: dict[str, Any] = {}

        async def one(i: int) -> int:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT %s + 1", (i,))
                row = await cur.fetchone()
                return int(row[0])

        seen["concurrent"] = sum(await asyncio.gather(*(one(i) for i in range(40))))
        async with pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute("DROP TABLE IF EXISTS aiomysql_compat")
                await cur.execute("CREATE TABLE aiomysql_compat (v INT) ENGINE=InnoDB")
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO aiomysql_compat VALUES (1)")
            await conn.rollback()
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute("INSERT INTO aiomysql_compat VALUES (2)")
            await conn.commit()
            async with conn.cursor() as cur:
                await cur.execute("SELECT GROUP_CONCAT(v) FROM aiomysql_compat")
                seen["transaction"] = (await cur.fetchone())[0]
                await cur.execute("DROP TABLE aiomysql_compat")
            async with conn.cursor(aiomysql.SSCursor) as cur:  # unbuffered: streamed
                await cur.execute("SELECT seq FROM seq_1_to_20000")
                total = 0
                while rows := await cur.fetchmany(1000):
                    total += len(rows)
                seen["streamed"] = total
        pool.close()
        await pool.wait_closed()
        return seen

    assert asyncio.run(run()) == {
        "concurrent": sum(range(1, 41)),
        "transaction": "2",
        "streamed": 20000,
    }


def test_asyncmy_pool_and_transactions(proxy: ProxydProcess) -> None:
    async def run() -> dict[str, Any]:
        pool = await asyncmy.create_pool(**_params(proxy), db="test", maxsize=8, autocommit=True)
        seen: dict[str, Any] = {}

        async def one(i: int) -> int:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT %s + 1", (i,))
                row = await cur.fetchone()
                return int(row[0])

        seen["concurrent"] = sum(await asyncio.gather(*(one(i) for i in range(40))))
        async with pool.acquire() as conn:
            await conn.begin()
            async with conn.cursor() as cur:
                await cur.execute("SELECT @@in_transaction")
                seen["in_transaction"] = (await cur.fetchone())[0]
            await conn.commit()
            async with conn.cursor() as cur:
                await cur.execute("SELECT 'Zoë 🐘', x'00ff'")
                seen["types"] = list(await cur.fetchone())
        pool.close()
        await pool.wait_closed()
        return seen

    assert asyncio.run(run()) == {
        "concurrent": sum(range(1, 41)),
        "in_transaction": 1,
        "types": ["Zoë 🐘", b"\x00\xff"],
    }


@pytest.mark.parametrize("use_pure", [False, True], ids=["C extension", "pure Python"])
def test_mysql_connector_prepared_cursors(proxy: ProxydProcess, use_pure: bool) -> None:
    conn = mysql.connector.connect(**_params(proxy), database="test", use_pure=use_pure)
    try:
        if not use_pure:
            assert type(conn).__name__ == "CMySQLConnection", type(conn)
        cur = conn.cursor(prepared=True)  # COM_STMT_PREPARE / EXECUTE
        rows = []
        for i in range(5):
            cur.execute("SELECT ?, CAST(? AS DECIMAL(10,2)), ?", (i, "1.50", "Zoë 🐘"))
            rows.append(cur.fetchall())
        assert rows == [[(i, Decimal("1.50"), "Zoë 🐘")] for i in range(5)]
        cur.close()
        conn.start_transaction()
        cur = conn.cursor()
        cur.execute("SELECT @@in_transaction")
        assert cur.fetchall() == [(1,)]
        conn.rollback()
        cur.close()
    finally:
        conn.close()


def test_django_orm_migrate_transactions_and_persistent_connections(
    proxy: ProxydProcess, mariadb: Any
) -> None:
    mariadb.execute("DROP DATABASE IF EXISTS django_compat")
    mariadb.execute("CREATE DATABASE django_compat")
    mariadb.execute("GRANT ALL ON django_compat.* TO 'app'@'%'")
    env = {
        **os.environ,
        "DB_HOST": proxy.host,
        "DB_PORT": str(proxy.port),
        "PYTHONPATH": str(SITE),
    }
    done = subprocess.run(
        [sys.executable, str(SITE / "run.py")], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "migrated": True,
        "created": 20,
        "atomic_rolled_back": 20,
        "atomic_committed": 21,
        "one_connection": True,  # CONN_MAX_AGE: Django kept its connection through proxyd
        "aggregate": "315.00",
    }
