"""Short SQLite transactions run on the event loop's thread (store.sqlite_inline); the rest,
and any that would wait for another process's write lock, on aiosqlite's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.database import Database
from junctionbox.store.sqlite_inline import (
    AUTOCHECKPOINT_PAGES,
    INLINE_AUTOCHECKPOINT_PAGES,
    InlineConnection,
)

pytestmark = pytest.mark.usefixtures("sqlite_only")


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("inline calls are SQLite's: asyncpg has no thread to hand over to")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'jb.db'}", busy_timeout_ms=5000)
    async with database.write() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield database
    await database.dispose()


async def _driver(conn: AsyncConnection) -> Any:
    return (await conn.get_raw_connection()).driver_connection


async def _thread_of_statement(conn: AsyncConnection) -> int:
    """The thread that ran a statement of this transaction."""
    driver = await _driver(conn)
    seen: list[int] = []
    driver._conn.create_function("whoami", 0, lambda: seen.append(threading.get_ident()) or 0)
    await conn.execute(text("SELECT whoami()"))
    return seen[0]


async def test_an_inline_transaction_runs_on_the_loops_thread_and_others_do_not(
    db: Database,
) -> None:
    here = threading.get_ident()
    async with db.write(inline=True) as conn:
        assert await _thread_of_statement(conn) == here
        await conn.execute(text("INSERT INTO t VALUES (1)"))
    async with db.read(inline=True) as conn:
        assert await _thread_of_statement(conn) == here
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
    async with db.write() as conn:
        assert await _thread_of_statement(conn) != here
    async with db.read() as conn:
        assert await _thread_of_statement(conn) != here


async def test_an_inline_write_rolled_back_leaves_nothing(db: Database) -> None:
    async def failing_write() -> None:
        async with db.write(inline=True) as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await failing_write()
    async with db.read(inline=True) as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_a_write_lock_held_by_another_process_is_waited_for_off_the_loop(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "jb.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def write() -> int:
        async with db.write(inline=True) as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
            return await _thread_of_statement(conn)

    running = asyncio.create_task(ticker())
    try:
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the lock...
        assert ticks >= 10  # ...while the loop goes on
        other.execute("COMMIT")
        assert await asyncio.wait_for(writing, 5) != threading.get_ident()
    finally:
        running.cancel()
        other.close()
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1


async def test_a_connection_with_a_call_still_running_on_its_thread_is_not_used_inline(
    db: Database,
) -> None:
    async with db.read() as conn:
        driver = await _driver(conn)
        assert isinstance(driver, InlineConnection)
        slow = asyncio.create_task(driver._execute(time.sleep, 0.3))
        await asyncio.sleep(0.05)
        slow.cancel()  # the await ends; the call goes on on the thread
        assert not driver.idle
        for _ in range(100):
            if driver.idle:
                break
            await asyncio.sleep(0.01)
        assert driver.idle


async def test_an_in_memory_database_keeps_aiosqlites_connections() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    try:
        async with db.write(inline=True) as conn:
            driver = await _driver(conn)
            assert not isinstance(driver, InlineConnection)
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_an_inline_write_leaves_the_wal_checkpoint_to_commits_on_the_thread(
    db: Database,
) -> None:
    """A checkpoint copies pages and syncs the file: inside an inline commit it would stop
    the loop. An inline write raises its checkpoint threshold; the connection gets SQLite's
    default back when it returns to the pool."""

    async def threshold(conn: AsyncConnection) -> int:
        return int((await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one())

    async with db.write(inline=True) as conn:
        assert await threshold(conn) == INLINE_AUTOCHECKPOINT_PAGES
    async with db.write() as conn:
        assert await threshold(conn) == AUTOCHECKPOINT_PAGES
