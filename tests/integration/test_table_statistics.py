"""Planner statistics kept up with a log that grows faster than autovacuum looks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.engine.table_statistics import TableStatistics
from junctionbox.store.database import Database
from junctionbox.store.queries import table_statistics as queries
from junctionbox.store.queries.table_statistics import MIN_ROWS

# The dispatcher's read of one partition after an offset (store.queries.events).
_PARTITION_READ = text(
    "EXPLAIN SELECT * FROM events WHERE org_id = 1 AND stream = 'default' AND partition = 0"
    " AND log_offset > 900 ORDER BY log_offset LIMIT 100"
)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


async def _log_events(db: Database, count: int) -> None:
    """``count`` events of 1 KiB in four partitions of one stream, and this session's
    statistics sent to the server at once (they are otherwise flushed up to a second later)."""
    async with db.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO events (org_id, stream, partition, log_offset, event_id, source,"
                " type, received_at, payload, size) SELECT 1, 'default', n % 4, n, 'evt_' || n,"
                " 'test', 'order.created', now(), convert_to(repeat('x', 1024), 'UTF8'), 1024"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        await conn.execute(text("SELECT pg_stat_force_next_flush()"))


async def _analysed_when_stale(keeper: TableStatistics) -> list[str]:
    """The keeper's first round that finds stale tables (statistics arrive asynchronously)."""
    for _ in range(100):
        analysed = await keeper.run_once()
        if analysed:
            return analysed
        await asyncio.sleep(0.05)
    return []


async def _plan(db: Database) -> str:
    async with db.read() as conn:
        return "\n".join(str(row[0]) for row in await conn.execute(_PARTITION_READ))


async def test_a_log_grown_from_nothing_is_analysed_and_read_by_its_key(
    backend: str, db: Database
) -> None:
    """Before it is analysed, PostgreSQL 15 plans this read on (org_id, stream,
    received_at), filtering every event of the stream."""
    if backend == "sqlite":
        assert await TableStatistics(db).run_once() == []  # nothing to keep on SQLite
        return
    await _log_events(db, 20 * MIN_ROWS)
    keeper = TableStatistics(db)

    assert "events" in await _analysed_when_stale(keeper)

    assert "pk_events" in await _plan(db)
    assert "events" not in await keeper.run_once()  # analysed: no longer stale


async def test_a_small_table_is_left_to_autovacuum(backend: str, db: Database) -> None:
    if backend == "sqlite":
        pytest.skip("PostgreSQL's statistics")
    await _log_events(db, MIN_ROWS // 2)
    await asyncio.sleep(0.2)

    assert "events" not in await TableStatistics(db).run_once()


async def test_analysing_pauses_as_autovacuum_does(backend: str, db: Database) -> None:
    """The settings that make ANALYZE pause hold for the statement, and end with its
    transaction."""
    if backend == "sqlite":
        pytest.skip("PostgreSQL's statistics")
    await _log_events(db, MIN_ROWS)
    async with db.write() as conn:
        assert await queries.analyze(conn, ["events"])
        during = {name: await _setting(conn, name) for name in queries.THROTTLE}
    assert during == queries.THROTTLE
    async with db.read() as conn:
        assert await _setting(conn, "vacuum_cost_delay") == "0"


async def test_the_keeper_samples_a_tenth_of_what_a_plain_analyze_would(
    backend: str, db: Database
) -> None:
    """Statistics target 10 instead of 100: histograms of at most 11 bounds."""
    if backend == "sqlite":
        pytest.skip("PostgreSQL's statistics")
    await _log_events(db, 20 * MIN_ROWS)
    async with db.write() as conn:
        assert await queries.analyze(conn, ["events"])
    async with db.read() as conn:
        bounds = (
            await conn.execute(
                text(
                    "SELECT cardinality(histogram_bounds::text::text[]) FROM pg_stats"
                    " WHERE tablename = 'events' AND attname = 'log_offset'"
                    " AND schemaname = current_schema()"
                )
            )
        ).scalar_one()
        assert await _setting(conn, "default_statistics_target") == "100"  # its transaction's
    assert 2 <= bounds <= 11


async def _setting(conn: AsyncConnection, name: str) -> str:
    return str(
        (await conn.execute(text("SELECT current_setting(:name)"), {"name": name})).scalar_one()
    )
