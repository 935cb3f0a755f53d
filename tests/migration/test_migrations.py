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
