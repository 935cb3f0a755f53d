"""The audit log of admin and configuration changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import audit_logs


@dataclass(frozen=True)
class AuditRecord:
    id: str
    actor_kind: str
    actor_id: str | None
    actor_email: str | None
    org_id: int | None
    action: str
    resource_type: str
    resource_id: str | None
    before: Any
    after: Any
    request_id: str | None
    created_at: datetime


async def insert_entry(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(audit_logs).values(**values))


async def list_page(
    conn: AsyncConnection,
    page: PageRequest,
    *,
    org_ids: list[int] | None,
    action: str | None,
    resource_type: str | None,
    actor_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[AuditRecord], int]:
    query = select(audit_logs)
    conditions = [
        audit_logs.c.org_id.in_(org_ids) if org_ids is not None else None,
        audit_logs.c.action == action if action else None,
        audit_logs.c.resource_type == resource_type if resource_type else None,
        audit_logs.c.actor_id == actor_id if actor_id else None,
        audit_logs.c.created_at >= since if since else None,
        audit_logs.c.created_at < until if until else None,
    ]
    query = query.where(*[c for c in conditions if c is not None])
    rows, total = await fetch_page(
        conn, query, page, audit_logs.c.created_at.desc(), audit_logs.c.id.desc()
    )
    return [record_of(AuditRecord, r) for r in rows], total
