"""Event sources that poll (the SQL table source): configuration, checkpoint and lease.

The lease (``lease_owner``, ``lease_expires_at``) makes one node the poller of a source: it is
taken and renewed by conditional UPDATEs, and every change a poller makes (checkpoint, error)
is fenced by it, so a node that lost its lease cannot move the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import entities, event_sources


@dataclass(frozen=True)
class SourceRecord:
    id: str
    org_id: int
    name: str
    kind: str
    is_active: bool
    connection_secret: str
    config: dict[str, Any]
    checkpoint: str | None
    events_ingested: int
    last_polled_at: datetime | None
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DueCandidate:
    id: str
    config: dict[str, Any]
    last_polled_at: datetime | None


async def create(conn: AsyncConnection, values: dict[str, Any]) -> SourceRecord:
    await conn.execute(insert(event_sources).values(**values))
    created = await get(conn, values["id"])
    assert created is not None
    return created


async def get(
    conn: AsyncConnection, source_id: str, *, org_id: int | None = None
) -> SourceRecord | None:
    """The source; with ``org_id``, only if it belongs to that tenant."""
    query = select(event_sources).where(event_sources.c.id == source_id)
    if org_id is not None:
        query = query.where(event_sources.c.org_id == org_id)
    row = (await conn.execute(query)).mappings().first()
    return record_of(SourceRecord, row) if row else None


async def list_page(
    conn: AsyncConnection, page: PageRequest, *, org_id: int, is_active: bool | None = None
) -> tuple[list[SourceRecord], int]:
    query = select(event_sources).where(event_sources.c.org_id == org_id)
    if is_active is not None:
        query = query.where(event_sources.c.is_active == is_active)
    rows, total = await fetch_page(conn, query, page, event_sources.c.name, event_sources.c.id)
    return [record_of(SourceRecord, r) for r in rows], total


async def name_taken(
    conn: AsyncConnection, org_id: int, name: str, except_id: str | None = None
) -> bool:
    query = select(event_sources.c.id).where(
        event_sources.c.org_id == org_id, event_sources.c.name == name
    )
    if except_id is not None:
        query = query.where(event_sources.c.id != except_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def update_source(
    conn: AsyncConnection, source_id: str, values: dict[str, Any]
) -> SourceRecord | None:
    await conn.execute(
        update(event_sources).where(event_sources.c.id == source_id).values(**values)
    )
    return await get(conn, source_id)


async def delete_source(conn: AsyncConnection, source_id: str) -> None:
    await conn.execute(delete(event_sources).where(event_sources.c.id == source_id))


# --- the lease and the poller's writes ---


def _lease_available(owner: str, now: datetime) -> Any:
    return or_(
        event_sources.c.lease_owner.is_(None),
        event_sources.c.lease_owner == owner,
        event_sources.c.lease_expires_at < now,
    )


async def claim(
    conn: AsyncConnection, source_id: str, owner: str, now: datetime, until: datetime
) -> bool:
    """Take or renew the lease of an active source: only if it is free, expired or ours."""
    result = await conn.execute(
        update(event_sources)
        .where(
            event_sources.c.id == source_id,
            event_sources.c.is_active.is_(True),
            _lease_available(owner, now),
        )
        .values(lease_owner=owner, lease_expires_at=until)
    )
    return bool(result.rowcount)


async def release(
    conn: AsyncConnection, owner: str, source_ids: Iterable[str] | None = None
) -> int:
    """Give up ``owner``'s leases (all of them, or of ``source_ids``)."""
    query = update(event_sources).where(event_sources.c.lease_owner == owner)
    if source_ids is not None:
        query = query.where(event_sources.c.id.in_(list(source_ids)))
    result = await conn.execute(query.values(lease_owner=None, lease_expires_at=None))
    return int(result.rowcount or 0)


async def advance(
    conn: AsyncConnection,
    source_id: str,
    owner: str,
    *,
    expected: str | None,
    checkpoint: str | None,
    ingested: int,
    now: datetime,
    until: datetime,
) -> bool:
    """Move the checkpoint from ``expected`` (fenced: still ours, nobody reset it meanwhile),
    count what was ingested, clear the error and renew the lease. False: nothing changed."""
    result = await conn.execute(
        update(event_sources)
        .where(
            event_sources.c.id == source_id,
            event_sources.c.lease_owner == owner,
            event_sources.c.checkpoint.is_not_distinct_from(expected),
        )
        .values(
            checkpoint=checkpoint,
            events_ingested=event_sources.c.events_ingested + ingested,
            last_polled_at=now,
            last_error=None,
            lease_expires_at=until,
        )
    )
    return bool(result.rowcount)


async def record_failure(
    conn: AsyncConnection, source_id: str, owner: str, error: str, now: datetime, until: datetime
) -> bool:
    result = await conn.execute(
        update(event_sources)
        .where(event_sources.c.id == source_id, event_sources.c.lease_owner == owner)
        .values(last_error=error, last_polled_at=now, lease_expires_at=until)
    )
    return bool(result.rowcount)


async def make_due(conn: AsyncConnection, source_id: str) -> None:
    """Have the source polled at the next tick of whichever node holds its lease."""
    await conn.execute(
        update(event_sources).where(event_sources.c.id == source_id).values(last_polled_at=None)
    )


async def due_candidates(conn: AsyncConnection, owner: str, now: datetime) -> list[DueCandidate]:
    """Active sources ``owner`` could poll (lease free, expired or its own); the caller
    decides which are due from their interval."""
    query = select(
        event_sources.c.id, event_sources.c.config, event_sources.c.last_polled_at
    ).where(event_sources.c.is_active.is_(True), _lease_available(owner, now))
    rows = await conn.execute(query.order_by(event_sources.c.last_polled_at, event_sources.c.id))
    return [record_of(DueCandidate, row) for row in rows.mappings()]


# --- tenants of rows ---


async def entity_parents(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, int | None]:
    """``{entity id: parent id}`` of the entities that exist among ``ids``."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(entities.c.id, entities.c.parent_id).where(entities.c.id.in_(wanted))
    return {int(i): (None if p is None else int(p)) for i, p in (await conn.execute(query)).all()}
