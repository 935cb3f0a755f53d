"""The migrations produce exactly the schema of the table definitions, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from junctionbox.store import migrate
from junctionbox.store.database import Database
from junctionbox.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/m.db"
    return str(request.getfixturevalue("fresh_pg_database"))


async def _diff(db: Database) -> list[object]:
    async with db.read() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )


async def _tables(db: Database) -> set[str]:
    async with db.read() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_migrations_match_the_table_definitions(empty_url: str) -> None:
    db = Database(empty_url)
    try:
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert await _diff(db) == []
        await migrate.upgrade(db)  # a second run is a no-op
        await migrate.downgrade(db, "base")
        assert await _tables(db) <= {"alembic_version"}
        await migrate.upgrade(db)
        assert await _diff(db) == []
    finally:
        await db.dispose()


async def test_only_jobs_with_an_ordering_key_are_in_its_index(empty_url: str) -> None:
    """Jobs without a key (most) stay out of the FIFO lookup's index: their inserts, claims
    and completions do not move an entry there (migration 0012)."""
    db = Database(empty_url)
    try:
        await migrate.upgrade(db)
        columns, where = await _ordering_index(db)
        assert columns == ["ordering_key", "state"]
        assert where.replace("(", "").replace(")", "") == "ordering_key IS NOT NULL"
        await migrate.downgrade(db, "0011")
        assert await _ordering_index(db) == (["ordering_key", "state"], "")
    finally:
        await db.dispose()


async def _ordering_index(db: Database) -> tuple[list[str], str]:
    """The FIFO lookup's index as reflected: its columns and its WHERE ("" for none; each
    dialect names the option its own way)."""
    async with db.read() as conn:
        indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("jobs"))
    [index] = [i for i in indexes if i["name"] == "ix_jobs_ordering_key_state"]
    options = index["dialect_options"]
    where = options.get("sqlite_where", options.get("postgresql_where"))
    return list(index["column_names"]), "" if where is None else str(where)
