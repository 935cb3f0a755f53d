"""Operator figures read from the store (metrics at scrape time, health checks) and the
processes' heartbeats. None of these is tenant data except where ``org_ids`` is given."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.queries.dispatch import lagging_partitions
from junctionbox.store.tables import destination_breakers, dlq_entries, jobs, node_heartbeats

LIVE_JOB_STATES = ("ready", "running", "dead")


async def queue_depth(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    query = (
        select(jobs.c.queue, jobs.c.state, func.count())
        .where(jobs.c.state.in_(LIVE_JOB_STATES))
        .group_by(jobs.c.queue, jobs.c.state)
    )
    return {(q, s): int(n) for q, s, n in (await conn.execute(query)).all()}


async def oldest_due(
    conn: AsyncConnection, now: datetime, org_ids: Collection[int] | None = None
) -> dict[str, datetime]:
    """Per queue, the due time of the oldest job that is due and not claimed."""
    query = (
        select(jobs.c.queue, func.min(jobs.c.run_at))
        .where(jobs.c.state == "ready", jobs.c.run_at <= now)
        .group_by(jobs.c.queue)
    )
    if org_ids is not None:
        query = query.where(jobs.c.org_id.in_(list(org_ids)))
    rows = (await conn.execute(query)).all()
    return {q: when for q, when in rows if when is not None}


async def dispatcher_lag(
    conn: AsyncConnection, group: str, org_ids: Collection[int] | None = None
) -> dict[str, int]:
    """Events ``group`` has not committed, per stream name (summed over tenants and
    partitions)."""
    lag: dict[str, int] = {}
    for p in await lagging_partitions(conn, group):
        if org_ids is None or p.org_id in org_ids:
            lag[p.stream] = lag.get(p.stream, 0) + max(0, p.next_offset - p.start)
    return lag


async def dlq_size(conn: AsyncConnection, org_ids: Collection[int] | None = None) -> dict[str, int]:
    query = select(dlq_entries.c.status, func.count()).group_by(dlq_entries.c.status)
    if org_ids is not None:
        query = query.where(dlq_entries.c.org_id.in_(list(org_ids)))
    return {s: int(n) for s, n in (await conn.execute(query)).all()}


async def dlq_size_by_org(conn: AsyncConnection) -> dict[int, int]:
    query = (
        select(dlq_entries.c.org_id, func.count())
        .where(dlq_entries.c.status != "ABANDONED")
        .group_by(dlq_entries.c.org_id)
    )
    return {int(o): int(n) for o, n in (await conn.execute(query)).all()}


async def open_circuits(
    conn: AsyncConnection, org_ids: Collection[int] | None = None
) -> list[RowMapping]:
    query = select(destination_breakers).where(destination_breakers.c.state == "OPEN")
    if org_ids is not None:
        query = query.where(destination_breakers.c.org_id.in_(list(org_ids)))
    return list((await conn.execute(query)).mappings().all())


# ---------------------------------------------------------------------- heartbeats


async def beat(
    conn: AsyncConnection,
    *,
    node_id: str,
    roles: str,
    version: str,
    started_at: datetime,
    now: datetime,
    details: dict[str, Any],
) -> None:
    dialect_insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    statement = dialect_insert(node_heartbeats).values(
        node_id=node_id,
        roles=roles,
        version=version,
        started_at=started_at,
        last_seen=now,
        stopped_at=None,
        details=details,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["node_id"],
        set_={"last_seen": now, "details": statement.excluded.details, "stopped_at": None},
    )
    await conn.execute(statement)


async def stopped(conn: AsyncConnection, node_id: str, now: datetime) -> None:
    await conn.execute(
        update(node_heartbeats).where(node_heartbeats.c.node_id == node_id).values(stopped_at=now)
    )


async def nodes(conn: AsyncConnection, since: datetime) -> list[RowMapping]:
    """Every node seen since ``since`` (stopped or not), newest first."""
    query = (
        select(node_heartbeats)
        .where(node_heartbeats.c.last_seen >= since)
        .order_by(node_heartbeats.c.last_seen.desc())
    )
    return list((await conn.execute(query)).mappings().all())
