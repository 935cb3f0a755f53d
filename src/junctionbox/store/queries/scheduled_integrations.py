"""DELAYED and RECURRING deliveries (``scheduled_integrations``), one row per occurrence."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import jobs, scheduled_integrations

table = scheduled_integrations
# Bound parameters per look-up statement: far below SQLite's and asyncpg's limits.
_CHUNK = 500


@dataclass(frozen=True)
class ScheduledRecord:
    id: str
    org_id: int
    integration_id: str
    integration_name: str | None
    original_event_id: str | None
    event_type: str | None
    mode: str
    scheduled_for: datetime
    status: str
    occurrence: int
    job: dict[str, Any]
    job_id: str | None
    target_url: str | None
    http_method: str | None
    recurring_config: dict[str, Any] | None
    cancellation_info: dict[str, Any] | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ScheduledFilter:
    org_ids: Collection[int]
    status: str | None = None
    integration_id: str | None = None
    event_type: str | None = None
    since: datetime | None = None  # scheduled_for bounds, inclusive
    until: datetime | None = None

    def conditions(self) -> list[Any]:
        found: list[Any] = [table.c.org_id.in_(sorted(self.org_ids))]
        if self.status is not None:
            found.append(table.c.status == self.status)
        if self.integration_id is not None:
            found.append(table.c.integration_id == self.integration_id)
        if self.event_type is not None:
            found.append(table.c.event_type == self.event_type)
        if self.since is not None:
            found.append(table.c.scheduled_for >= self.since)
        if self.until is not None:
            found.append(table.c.scheduled_for <= self.until)
        return found


async def insert_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(table), list(rows))


async def with_jobs(conn: AsyncConnection, job_ids: Collection[str]) -> set[str]:
    """Which of these job ids already have their occurrence row."""
    ordered = sorted(set(job_ids))
    found: set[str] = set()
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(table.c.job_id).where(table.c.job_id.in_(chunk))
        found.update(str(v) for v in (await conn.execute(query)).scalars())
    return found


async def get(
    conn: AsyncConnection, scheduled_id: str, org_ids: Collection[int]
) -> ScheduledRecord | None:
    query = select(table).where(table.c.id == scheduled_id, table.c.org_id.in_(sorted(org_ids)))
    row = (await conn.execute(query)).mappings().first()
    return record_of(ScheduledRecord, row) if row else None


async def list_page(
    conn: AsyncConnection, where: ScheduledFilter, page: PageRequest
) -> tuple[list[ScheduledRecord], int]:
    """Soonest first (then by id, so pages are stable)."""
    query = select(table).where(*where.conditions())
    rows, total = await fetch_page(conn, query, page, table.c.scheduled_for, table.c.id)
    return [record_of(ScheduledRecord, r) for r in rows], total


async def pending(
    conn: AsyncConnection, where: ScheduledFilter, limit: int
) -> list[ScheduledRecord]:
    query = (
        select(table)
        .where(*where.conditions(), table.c.status == "PENDING")
        .order_by(table.c.scheduled_for, table.c.id)
        .limit(limit)
    )
    return [record_of(ScheduledRecord, r) for r in (await conn.execute(query)).mappings()]


async def transition(
    conn: AsyncConnection,
    scheduled_id: str,
    org_id: int,
    *,
    from_statuses: Collection[str],
    values: dict[str, Any],
) -> bool:
    """Change a row only if it is still in one of ``from_statuses``: two writers deciding an
    occurrence's fate at once (a cancel and the worker's final outcome) cannot both win."""
    statement = (
        update(table)
        .where(
            table.c.id == scheduled_id,
            table.c.org_id == org_id,
            table.c.status.in_(list(from_statuses)),
        )
        .values(**values)
    )
    return (await conn.execute(statement)).rowcount == 1


async def job_states(conn: AsyncConnection, job_ids: Collection[str]) -> dict[str, str]:
    """The queue state of each job still present (purged jobs are absent)."""
    ordered = sorted(set(job_ids))
    found: dict[str, str] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(chunk))
        found.update({str(row.id): str(row.state) for row in await conn.execute(query)})
    return found
