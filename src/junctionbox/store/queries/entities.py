"""Organizations and org units (both rows of ``entities``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import (
    api_keys,
    entities,
    event_sources,
    event_streams,
    event_types,
    users,
)

PROFILE_FIELDS = ("name", "code", "email", "phone", "address", "tags", "region", "timezone")


@dataclass(frozen=True)
class EntityRecord:
    id: int
    parent_id: int | None
    name: str
    code: str | None
    email: str | None
    phone: str | None
    address: str | None
    tags: list[str]
    region: str | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime


async def get(conn: AsyncConnection, entity_id: int) -> EntityRecord | None:
    row = (await conn.execute(select(entities).where(entities.c.id == entity_id))).mappings()
    found = row.first()
    return record_of(EntityRecord, found) if found else None


async def next_id(conn: AsyncConnection) -> int:
    current = (await conn.execute(select(func.max(entities.c.id)))).scalar()
    return int(current or 0) + 1


async def create(conn: AsyncConnection, values: dict[str, Any]) -> EntityRecord:
    await conn.execute(insert(entities).values(**values))
    created = await get(conn, values["id"])
    assert created is not None
    return created


async def update_profile(
    conn: AsyncConnection, entity_id: int, values: dict[str, Any]
) -> EntityRecord | None:
    await conn.execute(update(entities).where(entities.c.id == entity_id).values(**values))
    return await get(conn, entity_id)


async def delete_entity(conn: AsyncConnection, entity_id: int) -> None:
    await conn.execute(delete(entities).where(entities.c.id == entity_id))


async def is_referenced(conn: AsyncConnection, entity_id: int) -> bool:
    """Whether units, users or API keys still belong to the entity."""
    checks = [
        exists().where(entities.c.parent_id == entity_id),
        exists().where(users.c.org_id == entity_id),
        exists().where(api_keys.c.org_id == entity_id),
        exists().where(event_types.c.org_id == entity_id),
        exists().where(event_streams.c.org_id == entity_id),
        exists().where(event_sources.c.org_id == entity_id),
    ]
    return bool((await conn.execute(select(or_(*checks)))).scalar())


async def list_page(
    conn: AsyncConnection, page: PageRequest, *, parent_id: int | None, search: str | None
) -> tuple[list[EntityRecord], int]:
    query = select(entities).where(
        entities.c.parent_id.is_(None) if parent_id is None else entities.c.parent_id == parent_id
    )
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            or_(
                func.lower(entities.c.name).like(pattern), func.lower(entities.c.code).like(pattern)
            )
        )
    rows, total = await fetch_page(conn, query, page, entities.c.id)
    return [record_of(EntityRecord, r) for r in rows], total


async def unit_ids(conn: AsyncConnection, org_id: int) -> list[int]:
    rows = await conn.execute(select(entities.c.id).where(entities.c.parent_id == org_id))
    return [int(r) for r in rows.scalars()]
