"""Gateway routes, tenant gateway settings and per-route hourly rollups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page
from junctionbox.store.tables import (
    entities,
    gateway_route_stats,
    gateway_routes,
    gateway_settings,
)

_r = gateway_routes.c
_s = gateway_settings.c
_st = gateway_route_stats.c


@dataclass(frozen=True)
class RouteRecord:
    id: str
    org_id: int
    name: str
    path: str
    version: str | None
    status: str
    config: dict[str, Any]
    sealed_secrets: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SettingsRecord:
    org_id: int
    security: dict[str, Any]
    rate_limits: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class StatsRow:
    route_id: str
    bucket_start: datetime
    org_id: int
    requests: int
    errors: int
    client_errors: int
    latency_ms_sum: int
    latency_histogram: list[int]
    clients: dict[str, int]


async def list_routes(conn: AsyncConnection, org_id: int) -> list[RouteRecord]:
    rows = await conn.execute(
        select(gateway_routes).where(_r.org_id == org_id).order_by(_r.path, _r.id)
    )
    return [RouteRecord(**row._mapping) for row in rows]


async def route_page(
    conn: AsyncConnection, org_id: int, page: PageRequest, status: str | None
) -> tuple[list[RouteRecord], int]:
    query = select(gateway_routes).where(_r.org_id == org_id)
    if status is not None:
        query = query.where(_r.status == status)
    rows, total = await fetch_page(conn, query, page, _r.path, _r.id)
    return [RouteRecord(**row) for row in rows], total


async def get_route(conn: AsyncConnection, org_id: int, route_id: str) -> RouteRecord | None:
    row = (
        await conn.execute(select(gateway_routes).where(_r.org_id == org_id, _r.id == route_id))
    ).first()
    return None if row is None else RouteRecord(**row._mapping)


async def insert_route(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(gateway_routes).values(**values))


async def update_route(
    conn: AsyncConnection, org_id: int, route_id: str, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(gateway_routes).where(_r.org_id == org_id, _r.id == route_id).values(**values)
    )


async def delete_route(conn: AsyncConnection, org_id: int, route_id: str) -> int:
    result = await conn.execute(
        delete(gateway_routes).where(_r.org_id == org_id, _r.id == route_id)
    )
    await conn.execute(
        delete(gateway_route_stats).where(_st.org_id == org_id, _st.route_id == route_id)
    )
    return int(result.rowcount or 0)


async def root_of(conn: AsyncConnection, entity_id: int) -> int | None:
    """The organization an entity belongs to (itself for an organization); None if unknown."""
    row = (
        await conn.execute(
            select(entities.c.id, entities.c.parent_id).where(entities.c.id == entity_id)
        )
    ).first()
    return None if row is None else int(row.parent_id or row.id)


async def get_settings(conn: AsyncConnection, org_id: int) -> SettingsRecord | None:
    row = (await conn.execute(select(gateway_settings).where(_s.org_id == org_id))).first()
    return None if row is None else SettingsRecord(**row._mapping)


async def save_settings(conn: AsyncConnection, record: SettingsRecord) -> None:
    values = {
        "security": record.security,
        "rate_limits": record.rate_limits,
        "updated_at": record.updated_at,
    }
    result = await conn.execute(
        update(gateway_settings).where(_s.org_id == record.org_id).values(**values)
    )
    if not result.rowcount:
        await conn.execute(insert(gateway_settings).values(org_id=record.org_id, **values))


async def get_stats_row(
    conn: AsyncConnection, route_id: str, bucket_start: datetime
) -> StatsRow | None:
    row = (
        await conn.execute(
            select(gateway_route_stats)
            .where(_st.route_id == route_id, _st.bucket_start == bucket_start)
            # PostgreSQL: two nodes adding to one rollup take turns (SQLite has one writer).
            .with_for_update()
        )
    ).first()
    return None if row is None else StatsRow(**row._mapping)


async def put_stats_row(conn: AsyncConnection, row: StatsRow, *, exists: bool) -> None:
    values = {
        "org_id": row.org_id,
        "requests": row.requests,
        "errors": row.errors,
        "client_errors": row.client_errors,
        "latency_ms_sum": row.latency_ms_sum,
        "latency_histogram": row.latency_histogram,
        "clients": row.clients,
    }
    if exists:
        await conn.execute(
            update(gateway_route_stats)
            .where(_st.route_id == row.route_id, _st.bucket_start == row.bucket_start)
            .values(**values)
        )
    else:
        await conn.execute(
            insert(gateway_route_stats).values(
                route_id=row.route_id, bucket_start=row.bucket_start, **values
            )
        )


async def stats_since(
    conn: AsyncConnection, org_id: int, since: datetime, route_id: str | None
) -> list[StatsRow]:
    query = select(gateway_route_stats).where(_st.org_id == org_id, _st.bucket_start >= since)
    if route_id is not None:
        query = query.where(_st.route_id == route_id)
    return [StatsRow(**row._mapping) for row in await conn.execute(query)]
