"""Queries of scheduled jobs and their runs (``scheduled_job_logs``). Every read of tenant
data takes the organizations it may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import jobs, scheduled_job_logs, scheduled_jobs

UNFINISHED = ("QUEUED", "RUNNING")


@dataclass(frozen=True)
class JobRecord:
    id: str
    org_id: int
    name: str
    is_active: bool
    config: dict[str, Any]
    secrets: str | None
    timezone: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_status: str | None
    version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RunRecord:
    id: str
    job_id: str
    org_id: int
    run_key: str
    trigger: str
    scheduled_for: datetime
    status: str
    stage: str | None
    queue_job_id: str | None
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    data_fetch_stage: str | None
    records_fetched: int | None
    data_fetched: Any
    data_truncated: bool
    transformation_stage: str | None
    transformed_payload: Any
    delivery_stage: str | None
    http_request: dict[str, Any] | None
    curl_command: str | None
    response_status: int | None
    response_headers: dict[str, Any] | None
    response_body: str | None
    delivery_attempts: int
    error_context: dict[str, Any] | None
    created_at: datetime
    trace_id: str | None = None


# --- jobs ---


async def insert_job(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(scheduled_jobs).values(**values))


async def get_job(conn: AsyncConnection, job_id: str, org_ids: Sequence[int]) -> JobRecord | None:
    row = (
        (
            await conn.execute(
                select(scheduled_jobs).where(
                    scheduled_jobs.c.id == job_id, scheduled_jobs.c.org_id.in_(org_ids)
                )
            )
        )
        .mappings()
        .first()
    )
    return record_of(JobRecord, row) if row else None


async def name_taken(conn: AsyncConnection, org_id: int, name: str, except_id: str | None) -> bool:
    query = select(scheduled_jobs.c.id).where(
        scheduled_jobs.c.org_id == org_id, scheduled_jobs.c.name == name
    )
    if except_id is not None:
        query = query.where(scheduled_jobs.c.id != except_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def list_jobs(
    conn: AsyncConnection, org_ids: Sequence[int], is_active: bool | None, page: PageRequest
) -> tuple[list[JobRecord], int]:
    query = select(scheduled_jobs).where(scheduled_jobs.c.org_id.in_(org_ids))
    if is_active is not None:
        query = query.where(scheduled_jobs.c.is_active == is_active)
    rows, total = await fetch_page(
        conn, query, page, scheduled_jobs.c.created_at.desc(), scheduled_jobs.c.id
    )
    return [record_of(JobRecord, r) for r in rows], total


async def update_job(
    conn: AsyncConnection, job_id: str, org_id: int, version: int, values: dict[str, Any]
) -> bool:
    """Change a job if it is still at ``version`` (a concurrent edit makes this False)."""
    result = await conn.execute(
        update(scheduled_jobs)
        .where(
            scheduled_jobs.c.id == job_id,
            scheduled_jobs.c.org_id == org_id,
            scheduled_jobs.c.version == version,
        )
        .values(**values, version=version + 1)
    )
    return result.rowcount == 1


async def delete_job(conn: AsyncConnection, job_id: str, org_id: int) -> bool:
    await conn.execute(
        delete(scheduled_job_logs).where(
            scheduled_job_logs.c.job_id == job_id, scheduled_job_logs.c.org_id == org_id
        )
    )
    result = await conn.execute(
        delete(scheduled_jobs).where(
            scheduled_jobs.c.id == job_id, scheduled_jobs.c.org_id == org_id
        )
    )
    return result.rowcount == 1


async def due_jobs(conn: AsyncConnection, now: datetime, limit: int) -> list[JobRecord]:
    """Active jobs whose first unclaimed tick is due, most overdue first (every tenant: the
    scheduler is a system loop)."""
    rows = await conn.execute(
        select(scheduled_jobs)
        .where(scheduled_jobs.c.is_active.is_(True), scheduled_jobs.c.next_run_at <= now)
        .order_by(scheduled_jobs.c.next_run_at)
        .limit(limit)
    )
    return [record_of(JobRecord, r) for r in rows.mappings()]


async def advance(
    conn: AsyncConnection, job_id: str, expected: datetime, next_run_at: datetime
) -> bool:
    """Claim the tick(s) up to ``next_run_at``: a compare-and-set on ``next_run_at``, so of
    several schedulers that read the same due tick exactly one moves it."""
    result = await conn.execute(
        update(scheduled_jobs)
        .where(
            scheduled_jobs.c.id == job_id,
            scheduled_jobs.c.next_run_at == expected,
            scheduled_jobs.c.is_active.is_(True),
        )
        .values(next_run_at=next_run_at)
    )
    return result.rowcount == 1


async def mark_last_run(
    conn: AsyncConnection, job_id: str, at: datetime, status: str | None
) -> None:
    await conn.execute(
        update(scheduled_jobs)
        .where(scheduled_jobs.c.id == job_id)
        .values(last_run_at=at, last_status=status)
    )


# --- runs ---


async def insert_run(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(scheduled_job_logs).values(**values))


async def run_key_taken(conn: AsyncConnection, job_id: str, run_key: str) -> bool:
    query = select(scheduled_job_logs.c.id).where(
        scheduled_job_logs.c.job_id == job_id, scheduled_job_logs.c.run_key == run_key
    )
    return (await conn.execute(query)).first() is not None


async def get_run(
    conn: AsyncConnection, run_id: str, org_ids: Sequence[int] | None
) -> RunRecord | None:
    query = select(scheduled_job_logs).where(scheduled_job_logs.c.id == run_id)
    if org_ids is not None:
        query = query.where(scheduled_job_logs.c.org_id.in_(org_ids))
    row = (await conn.execute(query)).mappings().first()
    return record_of(RunRecord, row) if row else None


async def list_runs(
    conn: AsyncConnection, org_id: int, job_id: str, status: str | None, page: PageRequest
) -> tuple[list[RunRecord], int]:
    query = select(scheduled_job_logs).where(
        scheduled_job_logs.c.org_id == org_id, scheduled_job_logs.c.job_id == job_id
    )
    if status is not None:
        query = query.where(scheduled_job_logs.c.status == status)
    rows, total = await fetch_page(
        conn, query, page, scheduled_job_logs.c.created_at.desc(), scheduled_job_logs.c.id.desc()
    )
    return [record_of(RunRecord, r) for r in rows], total


async def update_run(
    conn: AsyncConnection, run_id: str, values: dict[str, Any], *, attempt: int | None = None
) -> bool:
    """Change a run; with ``attempt``, only while it is still that attempt's (fencing: a
    worker whose lease expired must not overwrite the run of the worker that took over)."""
    query = update(scheduled_job_logs).where(scheduled_job_logs.c.id == run_id)
    if attempt is not None:
        query = query.where(scheduled_job_logs.c.attempt == attempt)
    result = await conn.execute(query.values(**values))
    return result.rowcount == 1


async def orphaned_runs(conn: AsyncConnection, limit: int) -> list[RunRecord]:
    """Unfinished runs whose queue job is finished, dead, cancelled or gone: they can never
    be picked up again and are to be marked failed."""
    job_state = select(jobs.c.state).where(jobs.c.id == scheduled_job_logs.c.queue_job_id)
    rows = await conn.execute(
        select(scheduled_job_logs)
        .where(
            scheduled_job_logs.c.status.in_(UNFINISHED),
            or_(
                scheduled_job_logs.c.queue_job_id.is_(None),
                ~job_state.exists(),
                and_(
                    job_state.exists(),
                    job_state.scalar_subquery().in_(("done", "dead", "cancelled")),
                ),
            ),
        )
        .limit(limit)
    )
    return [record_of(RunRecord, r) for r in rows.mappings()]
