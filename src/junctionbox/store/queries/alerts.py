"""Operator alerts: an integration auto-disabled, a DLQ entry abandoned, ..."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.ids import new_id
from junctionbox.store.tables import alerts


async def raise_alert(
    conn: AsyncConnection,
    *,
    org_id: int,
    kind: str,
    message: str,
    now: datetime,
    severity: str = "WARNING",
    subject_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
    alert_id = new_id("alt")
    await conn.execute(
        insert(alerts).values(
            id=alert_id,
            org_id=org_id,
            kind=kind,
            severity=severity,
            subject_id=subject_id,
            message=message,
            details=dict(details) if details else None,
            created_at=now,
        )
    )
    return alert_id


async def alerts_of(
    conn: AsyncConnection, org_ids: Collection[int], *, limit: int = 100
) -> list[RowMapping]:
    query = (
        select(alerts)
        .where(alerts.c.org_id.in_(list(org_ids)))
        .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings().all())
