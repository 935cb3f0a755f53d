"""The migrations produce exactly the schema of the table definitions, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
        async with db.read() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("jobs"))
        assert _ordering_index(indexes)["column_names"] == ["ordering_key", "state"]
        where = _predicate(_ordering_index(indexes))
        assert where.replace("(", "").replace(")", "") == "ordering_key IS NOT NULL"
        await migrate.downgrade(db, "0011")
        async with db.read() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("jobs"))
        assert _predicate(_ordering_index(indexes)) == ""
    finally:
        await db.dispose()


def _ordering_index(indexes: list[Any]) -> Any:
    [index] = [i for i in indexes if i["name"] == "ix_jobs_ordering_key_state"]
    return index


def _predicate(index: Any) -> str:
    """The partial index's WHERE as reflected (each dialect names it its own way)."""
    options = index["dialect_options"]
    where = options.get("sqlite_where", options.get("postgresql_where"))
    return "" if where is None else str(where)
