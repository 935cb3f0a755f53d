"""Delivery rollups: added to as attempts are recorded, read by the dashboard, analytics
and alert rules (see :mod:`junctionbox.domain.rollups`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.rollups import RollupKey
from junctionbox.store.tables import delivery_rollups

_KEY = ("org_id", "integration_id", "bucket_start", "metric", "key")


async def add_rollups(conn: AsyncConnection, counts: Mapping[RollupKey, tuple[int, int]]) -> None:
    """Add ``counts`` in one statement; keys in a fixed order, so that two workers adding
    to the same rows lock them in the same order (no deadlock)."""
    if not counts:
        return
    dialect_insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    statement = dialect_insert(delivery_rollups)
    statement = statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "count": delivery_rollups.c.count + statement.excluded["count"],
            "total_ms": delivery_rollups.c.total_ms + statement.excluded["total_ms"],
        },
    )
    rows = [
        {**dict(zip(_KEY, key, strict=True)), "count": count, "total_ms": total}
        for key, (count, total) in sorted(counts.items())
    ]
    await conn.execute(statement, rows)


async def rollups_between(
    conn: AsyncConnection,
    org_ids: Collection[int],
    since: datetime,
    until: datetime,
    *,
    integration_id: str | None = None,
) -> list[RowMapping]:
    """Rollup rows of the tenants in ``org_ids`` in buckets starting in [since, until)."""
    c = delivery_rollups.c
    query = select(
        c.org_id, c.integration_id, c.bucket_start, c.metric, c.key, c.count, c.total_ms
    ).where(c.org_id.in_(list(org_ids)), c.bucket_start >= since, c.bucket_start < until)
    if integration_id is not None:
        query = query.where(c.integration_id == integration_id)
    return list((await conn.execute(query)).mappings().all())


async def error_rates(
    conn: AsyncConnection, since: datetime, org_ids: Collection[int] | None = None
) -> list[RowMapping]:
    """(org, integration, status, count) since ``since``: what the error-rate rule reads."""
    c = delivery_rollups.c
    query = (
        select(c.org_id, c.integration_id, c.key, func.sum(c.count).label("count"))
        .where(c.metric == "status", c.bucket_start >= since)
        .group_by(c.org_id, c.integration_id, c.key)
    )
    if org_ids is not None:
        query = query.where(c.org_id.in_(list(org_ids)))
    return list((await conn.execute(query)).mappings().all())


async def purge_rollups(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(
        delete(delivery_rollups).where(delivery_rollups.c.bucket_start < before)
    )
    return int(result.rowcount or 0)
