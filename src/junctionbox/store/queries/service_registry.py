"""The service registry's rows (``gateway_services``), always scoped to a tenant except for
the health checker's sweep, which probes every tenant's services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page
from junctionbox.store.tables import gateway_services

_c = gateway_services.c


@dataclass(frozen=True)
class ServiceRecord:
    id: str
    org_id: int
    name: str
    version: str
    service_type: str
    status: str
    endpoints: list[dict[str, Any]]
    health_check_url: str | None
    heartbeat_ttl_seconds: int | None
    dependencies: list[Any]
    capabilities: list[Any]
    configuration: dict[str, Any]
    service_metadata: dict[str, Any]
    health: dict[str, Any]
    registered_at: datetime
    last_heartbeat: datetime | None
    updated_at: datetime


async def list_services(conn: AsyncConnection, org_id: int) -> list[ServiceRecord]:
    rows = await conn.execute(select(gateway_services).where(_c.org_id == org_id).order_by(_c.name))
    return [ServiceRecord(**row._mapping) for row in rows]


async def service_page(
    conn: AsyncConnection, org_id: int, page: PageRequest, service_type: str | None
) -> tuple[list[ServiceRecord], int]:
    query = select(gateway_services).where(_c.org_id == org_id)
    if service_type is not None:
        query = query.where(_c.service_type == service_type)
    rows, total = await fetch_page(conn, query, page, _c.name, _c.id)
    return [ServiceRecord(**row) for row in rows], total


async def find_service(conn: AsyncConnection, org_id: int, id_or_name: str) -> ServiceRecord | None:
    row = (
        await conn.execute(
            select(gateway_services).where(
                _c.org_id == org_id, or_(_c.id == id_or_name, _c.name == id_or_name)
            )
        )
    ).first()
    return None if row is None else ServiceRecord(**row._mapping)


async def insert_service(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(gateway_services).values(**values))


async def update_service(
    conn: AsyncConnection, org_id: int, service_id: str, values: dict[str, Any]
) -> int:
    result = await conn.execute(
        update(gateway_services).where(_c.org_id == org_id, _c.id == service_id).values(**values)
    )
    return int(result.rowcount or 0)


async def delete_service(conn: AsyncConnection, org_id: int, service_id: str) -> int:
    result = await conn.execute(
        delete(gateway_services).where(_c.org_id == org_id, _c.id == service_id)
    )
    return int(result.rowcount or 0)


async def services_with_health_checks(conn: AsyncConnection) -> list[ServiceRecord]:
    """Every tenant's services that have a health check: the checker's sweep (a system loop
    with no tenant of its own; what it writes goes back to each row's own tenant)."""
    rows = await conn.execute(
        select(gateway_services)
        .where(_c.health_check_url.is_not(None), _c.status == "ACTIVE")
        .order_by(_c.org_id, _c.id)
    )
    return [ServiceRecord(**row._mapping) for row in rows]


async def save_health(
    conn: AsyncConnection, org_id: int, service_id: str, health: dict[str, Any]
) -> None:
    await conn.execute(
        update(gateway_services)
        .where(_c.org_id == org_id, _c.id == service_id)
        .values(health=health)
    )
