"""The connection pool's hand-back and hand-out checks, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from junctionbox.errors import ServiceUnavailableError
from junctionbox.store.database import Database


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, pool_size=1)
    yield database
    await database.dispose()


async def test_a_sqlite_connection_handed_back_inside_a_transaction_is_rolled_back(
    backend: str, db: Database
) -> None:
    """SQLite's pool skips the rollback after a finished transaction; one left open (here
    begun behind SQLAlchemy's back) is still rolled back before the next use."""
    if backend == "postgres":
        pytest.skip("PostgreSQL keeps the pool's usual reset")
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute("BEGIN IMMEDIATE")
        assert raw.driver_connection.in_transaction
    for _ in range(3):  # BEGIN IMMEDIATE would fail inside a transaction left open
        async with db.write() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert not raw.driver_connection.in_transaction


async def _kill_other_backends(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


@asynccontextmanager
async def _with_a_killer(db_url: str, **options: Any) -> AsyncIterator[tuple[Database, Database]]:
    """The database under test (``options``), and another to kill its connections from."""
    db = Database(db_url, **options)
    other = Database(db_url, pool_size=1)
    try:
        yield db, other
    finally:
        await db.dispose()
        await other.dispose()


async def test_an_idle_postgresql_connection_is_checked_and_replaced(
    backend: str, db_url: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite connections are files, not sessions a server can drop")
    # Every hand-out is checked.
    async with _with_a_killer(db_url, pool_size=1, ping_after_idle=0.0) as (db, other):
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
        await _kill_other_backends(other)  # the server drops the pooled connection
        async with db.read() as conn:  # the ping finds it dead: a new one is used
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_postgresql_connection_in_steady_use_is_not_pinged(
    backend: str, db_url: str
) -> None:
    """The cost of skipping the ping: a connection lost within the idle time fails one
    transaction (503, not 500), and the pool's next connection works."""
    if backend == "sqlite":
        pytest.skip("SQLite connections are files, not sessions a server can drop")
    async with _with_a_killer(db_url, pool_size=1, ping_after_idle=3600.0) as (db, other):
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
        await _kill_other_backends(other)
        with pytest.raises(ServiceUnavailableError):
            async with db.read() as conn:
                await conn.execute(text("SELECT 1"))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_sqlite_write_that_cannot_get_the_lock_is_unavailable_not_a_crash(
    backend: str, db_url: str
) -> None:
    """BEGIN IMMEDIATE goes straight to the driver; its failure is still translated."""
    if backend == "postgres":
        pytest.skip("SQLite's write lock")
    import sqlite3

    from sqlalchemy.engine import make_url

    db = Database(db_url, busy_timeout_ms=50)
    holder = sqlite3.connect(str(make_url(db_url).database), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        with pytest.raises(ServiceUnavailableError):
            async with db.write() as conn:
                await conn.execute(text("SELECT 1"))
        holder.execute("ROLLBACK")
        async with db.write() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        holder.close()
        await db.dispose()


async def test_a_write_that_may_be_redone_skips_only_its_own_commit_flush(
    backend: str, db: Database
) -> None:
    """``durable=False`` turns off the WAL flush wait for that transaction alone: the
    connection goes back to the pool with PostgreSQL's default (SQLite never waits)."""
    async with db.write(durable=False) as conn:
        await conn.execute(text("CREATE TABLE redone (n INTEGER)"))
        await conn.execute(text("INSERT INTO redone VALUES (1)"))
        if backend == "postgres":
            setting = await conn.execute(text("SELECT current_setting('synchronous_commit')"))
            assert setting.scalar_one() == "off"
    async with db.write() as conn:  # the same (only) pooled connection
        assert (await conn.execute(text("SELECT n FROM redone"))).scalar_one() == 1
        if backend == "postgres":
            setting = await conn.execute(text("SELECT current_setting('synchronous_commit')"))
            assert setting.scalar_one() == "on"
        await conn.execute(text("DROP TABLE redone"))


async def test_a_driver_connection_is_kept_for_the_next_unit_of_work(db: Database) -> None:
    """``driver()`` keeps the connection of a unit of work that ended its transaction,
    instead of handing it back to the pool and checking it out again."""
    checkouts: list[object] = []
    event.listen(db.engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
    async with db.driver() as first:
        pass
    async with db.driver() as second:
        assert second is first
    assert len(checkouts) == 1


async def test_a_transaction_a_driver_unit_of_work_left_open_is_rolled_back(
    backend: str, db: Database
) -> None:
    """A unit of work must end its transaction; one left open is rolled back before the
    connection is used again."""

    def in_transaction(driver: Any) -> bool:
        return bool(driver.in_transaction if backend == "sqlite" else driver.is_in_transaction())

    async with db.driver() as first:
        await first.execute("BEGIN IMMEDIATE" if backend == "sqlite" else "BEGIN")
    async with db.driver() as second:
        assert not in_transaction(second)


async def test_a_held_driver_connection_that_idled_is_checked_by_the_pool(
    backend: str, db_url: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite connections are files, not sessions a server can drop")
    async with _with_a_killer(db_url, pool_size=2, ping_after_idle=0.2) as (db, other):
        async with db.driver() as first:
            await first.fetchval("SELECT 1")
        await asyncio.sleep(0.3)  # idle long enough to be checked
        await _kill_other_backends(other)  # the server drops the held connection
        async with db.driver() as second:  # back to the pool, whose ping replaces it
            assert second is not first
            assert await second.fetchval("SELECT 1") == 1


async def test_a_lost_driver_connection_takes_the_other_held_ones_with_it(
    backend: str, db_url: str
) -> None:
    """A connection lost while held fails one unit of work (as a pooled one lost within
    the idle time fails one transaction); the others held are closed with it (a server
    that dropped one has likely dropped them all), so the next unit of work succeeds."""
    if backend == "sqlite":
        pytest.skip("SQLite connections are files, not sessions a server can drop")
    async with _with_a_killer(db_url, pool_size=4, ping_after_idle=3600.0) as (db, other):
        async with db.driver() as one, db.driver() as two:  # two held from now on
            assert one is not two
        await _kill_other_backends(other)
        with pytest.raises(Exception):  # noqa: B017, PT011 (the driver's own error)
            async with db.driver() as driver:
                await driver.fetchval("SELECT 1")
        async with db.driver() as driver:
            assert await driver.fetchval("SELECT 1") == 1


async def test_dispose_closes_the_held_driver_connections(backend: str, db: Database) -> None:
    async with db.driver() as driver:
        pass
    await db.dispose()
    assert driver.is_closed() if backend == "postgres" else driver._connection is None


async def test_a_small_pool_keeps_most_of_its_connections_for_transactions(
    backend: str, db_url: str
) -> None:
    """Up to four held, at most half the pool."""
    if backend == "sqlite":
        pytest.skip("one SQLite unit of work at a time (the write lock): one is held")
    db = Database(db_url, pool_size=4)
    try:
        async with db.driver(), db.driver(), db.driver():
            pass
        checkouts: list[object] = []
        event.listen(db.engine.sync_engine, "checkout", lambda *args: checkouts.append(args))
        async with db.driver(), db.driver(), db.driver():  # two held, one from the pool
            pass
        assert len(checkouts) == 1
    finally:
        await db.dispose()
