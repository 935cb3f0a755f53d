"""Migration 0010 adds the service registry's table and its downgrade removes only that."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from junctionbox.store import migrate
from junctionbox.store.database import Database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/m.db"
    return str(request.getfixturevalue("fresh_pg_database"))


async def _columns(db: Database) -> dict[str, set[str]]:
    async with db.read() as conn:
        return await conn.run_sync(
            lambda sync: {
                name: {c["name"] for c in inspect(sync).get_columns(name)}
                for name in inspect(sync).get_table_names()
            }
        )


async def test_0010_up_and_down(empty_url: str) -> None:
    db = Database(empty_url)
    try:
        await migrate.upgrade(db, "0009")
        before = await _columns(db)
        assert "gateway_services" not in before
        await migrate.upgrade(db, "0010")
        after = await _columns(db)
        assert {"id", "org_id", "name", "endpoints", "health", "last_heartbeat"} <= after[
            "gateway_services"
        ]
        await migrate.downgrade(db, "0009")
        assert await migrate.current_revision(db) == "0009"
        assert await _columns(db) == before
    finally:
        await db.dispose()
