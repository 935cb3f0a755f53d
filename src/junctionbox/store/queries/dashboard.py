"""Reads behind the console's dashboard: recent delivery attempts and events of a tenant.

Rows are returned raw and aggregated in Python (``console.viewmodel``) so that one query
serves every chart on SQLite and PostgreSQL alike; the window and a row cap bound the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.queries.delivery_logs import LogScope
from junctionbox.store.tables import delivery_logs, entities, events


@dataclass(frozen=True)
class AttemptPoint:
    created_at: datetime
    status: str
    response_time_ms: int | None
    integration_id: str | None
    integration_name: str | None


async def attempts_since(
    conn: AsyncConnection, scope: LogScope, since: datetime, limit: int
) -> list[AttemptPoint]:
    log = delivery_logs.c
    query = (
        select(
            log.created_at,
            log.status,
            log.response_time_ms,
            log.integration_id,
            log.integration_name,
        )
        .where(scope.condition(), log.created_at >= since)
        .order_by(log.created_at.desc())
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    return [AttemptPoint(*row) for row in rows]


async def events_since(conn: AsyncConnection, scope: LogScope, since: datetime) -> int:
    owner: ColumnElement[bool]
    if scope.with_units:
        family = select(entities.c.id).where(
            or_(entities.c.id == scope.org_id, entities.c.parent_id == scope.org_id)
        )
        owner = events.c.org_id.in_(family.scalar_subquery())
    else:
        owner = events.c.org_id == scope.org_id
    query = select(func.count()).select_from(events).where(owner, events.c.received_at >= since)
    return int((await conn.execute(query)).scalar_one())
