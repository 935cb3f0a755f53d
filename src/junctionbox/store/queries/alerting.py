"""Alert rules, channels, firings (dedupe and cool-down) and routing of alert center rows."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.tables import (
    alert_channels,
    alert_firings,
    alert_notifications,
    alert_rules,
    alerts,
    entities,
)


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)


async def insert_row(conn: AsyncConnection, table: Any, values: dict[str, Any]) -> None:
    await conn.execute(insert(table).values(**values))


async def rows_of(conn: AsyncConnection, table: Any, org_ids: Collection[int]) -> list[RowMapping]:
    query = select(table).where(table.c.org_id.in_(list(org_ids))).order_by(table.c.id)
    return list((await conn.execute(query)).mappings().all())


async def row_of(
    conn: AsyncConnection, table: Any, row_id: str, org_ids: Collection[int]
) -> RowMapping | None:
    query = select(table).where(table.c.id == row_id, table.c.org_id.in_(list(org_ids)))
    return (await conn.execute(query)).mappings().first()


async def update_row(
    conn: AsyncConnection, table: Any, row_id: str, values: dict[str, Any]
) -> None:
    await conn.execute(update(table).where(table.c.id == row_id).values(**values))


async def delete_row(conn: AsyncConnection, table: Any, row_id: str) -> None:
    await conn.execute(delete(table).where(table.c.id == row_id))


async def enabled_rules(conn: AsyncConnection) -> list[RowMapping]:
    query = select(alert_rules).where(alert_rules.c.enabled.is_(True)).order_by(alert_rules.c.id)
    return list((await conn.execute(query)).mappings().all())


async def channels_by_id(conn: AsyncConnection, ids: Collection[str]) -> dict[str, RowMapping]:
    if not ids:
        return {}
    query = select(alert_channels).where(alert_channels.c.id.in_(list(ids)))
    return {r["id"]: r for r in (await conn.execute(query)).mappings().all()}


async def parents(conn: AsyncConnection) -> dict[int, int | None]:
    query = select(entities.c.id, entities.c.parent_id)
    return {
        int(i): (int(p) if p is not None else None) for i, p in (await conn.execute(query)).all()
    }


async def claim_firing(
    conn: AsyncConnection, key: str, org_id: int, now: datetime, cooled_before: datetime
) -> bool:
    """True when the condition ``key`` may fire now (first time, or its last firing is
    older than the cool-down); the row is updated in the same statement, so two nodes
    evaluating at once fire it once."""
    result = await conn.execute(
        update(alert_firings)
        .where(alert_firings.c.dedupe_key == key, alert_firings.c.last_fired_at < cooled_before)
        .values(last_fired_at=now, count=alert_firings.c.count + 1)
    )
    if result.rowcount:
        return True
    exists = await conn.execute(select(func.count()).where(alert_firings.c.dedupe_key == key))
    if exists.scalar_one():
        return False
    statement = _insert(conn, alert_firings).values(
        dedupe_key=key, org_id=org_id, last_fired_at=now, count=1
    )
    result = await conn.execute(statement.on_conflict_do_nothing())
    return bool(result.rowcount)


async def set_firing_alert(conn: AsyncConnection, key: str, alert_id: str) -> None:
    await conn.execute(
        update(alert_firings)
        .where(alert_firings.c.dedupe_key == key)
        .values(last_alert_id=alert_id)
    )


async def unrouted(conn: AsyncConnection, since: datetime, limit: int = 200) -> list[RowMapping]:
    query = (
        select(alerts)
        .outerjoin(alert_notifications, alert_notifications.c.alert_id == alerts.c.id)
        .where(alerts.c.created_at >= since, alert_notifications.c.alert_id.is_(None))
        .order_by(alerts.c.created_at, alerts.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings().all())


async def claim_routing(conn: AsyncConnection, alert_id: str, org_id: int, now: datetime) -> bool:
    statement = _insert(conn, alert_notifications).values(
        alert_id=alert_id, org_id=org_id, routed_at=now
    )
    result = await conn.execute(statement.on_conflict_do_nothing())
    return bool(result.rowcount)


async def routed(conn: AsyncConnection, alert_id: str, results: list[dict[str, Any]]) -> None:
    await conn.execute(
        update(alert_notifications)
        .where(alert_notifications.c.alert_id == alert_id)
        .values(results=results)
    )


async def alerts_page(
    conn: AsyncConnection,
    org_ids: Collection[int] | None,
    *,
    offset: int,
    limit: int,
    acknowledged: bool | None,
    kind: str | None,
) -> tuple[list[RowMapping], int]:
    where: list[Any] = []
    if org_ids is not None:
        where.append(alerts.c.org_id.in_(list(org_ids)))
    if acknowledged is not None:
        column = alerts.c.acknowledged_at
        where.append(column.is_not(None) if acknowledged else column.is_(None))
    if kind:
        where.append(alerts.c.kind == kind)
    total = (
        await conn.execute(select(func.count()).select_from(alerts).where(*where))
    ).scalar_one()
    query = (
        select(alerts, alert_notifications.c.results)
        .outerjoin(alert_notifications, alert_notifications.c.alert_id == alerts.c.id)
        .where(*where)
        .order_by(alerts.c.created_at.desc(), alerts.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings().all()), int(total)


async def acknowledge(
    conn: AsyncConnection, alert_id: str, org_ids: Collection[int] | None, now: datetime
) -> RowMapping | None:
    where: list[Any] = [alerts.c.id == alert_id]
    if org_ids is not None:
        where.append(alerts.c.org_id.in_(list(org_ids)))
    found = (await conn.execute(select(alerts).where(*where))).mappings().first()
    if found is None:
        return None
    if found["acknowledged_at"] is None:
        await conn.execute(
            update(alerts).where(alerts.c.id == alert_id).values(acknowledged_at=now)
        )
    return (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).mappings().first()
