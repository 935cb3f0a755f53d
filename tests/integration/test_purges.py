"""Housekeeping deletes in short transactions: expired idempotency keys, as an example of
``store.queries.common.purge``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from junctionbox.store.database import Database
from junctionbox.store.queries import common, idempotency
from junctionbox.store.tables import idempotency_keys

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


async def _keys(db: Database, count: int, expires: datetime, prefix: str) -> None:
    async with db.write() as conn:
        for n in range(count):
            assert await idempotency.claim(conn, 1, f"{prefix}-{n}", "hash", T0, expires)


async def _left(db: Database) -> int:
    async with db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(idempotency_keys))).scalar_one()
        )


async def test_expired_keys_are_deleted_a_batch_per_transaction(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _keys(db, 7, T0 + timedelta(hours=1), "old")
    await _keys(db, 2, T0 + timedelta(days=2), "fresh")
    monkeypatch.setattr(common, "PURGE_BATCH", 3)
    batches: list[int] = []
    real = common.delete_some

    async def counted(*args: Any) -> int:
        batches.append(deleted := await real(*args))
        return deleted

    monkeypatch.setattr(common, "delete_some", counted)

    assert await idempotency.purge_expired(db, T0 + timedelta(days=1)) == 7

    assert batches == [3, 3, 1]
    assert await _left(db) == 2
