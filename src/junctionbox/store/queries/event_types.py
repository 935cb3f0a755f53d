"""Event types and their schema versions (the schema registry).

A tenant sees the types of its own entity and, for an org unit, those of its organization
that the unit does not override: ``chain`` is ``(entity_id,)`` or ``(unit_id, org_id)``,
nearest first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import event_type_schemas, event_types

Chain = Sequence[int]


@dataclass(frozen=True)
class EventTypeRecord:
    id: str
    org_id: int
    name: str
    description: str | None
    example: Any
    compatibility: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SchemaVersionRecord:
    event_type_id: str
    version: int
    schema: Any
    fingerprint: str
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class VersionSummary:
    version: int
    fingerprint: str
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class LatestRef:
    """What the publish path needs to find a compiled validator: no schema document."""

    id: str
    org_id: int
    name: str
    latest_version: int


def _visible(chain: Chain) -> Any:
    """The types ``chain[0]`` sees: its own, then its parent's that it does not override."""
    own = event_types.c.org_id == chain[0]
    if len(chain) == 1:
        return own
    mine = event_types.alias("mine")
    overridden = exists().where(mine.c.org_id == chain[0], mine.c.name == event_types.c.name)
    return or_(own, and_(event_types.c.org_id == chain[1], ~overridden))


def _nearest(rows: Sequence[Any], chain: Chain) -> dict[str, Any]:
    """One row per name, the one of the nearest entity in the chain."""
    rank = {org_id: i for i, org_id in enumerate(chain)}
    best: dict[str, Any] = {}
    for row in rows:
        current = best.get(row["name"])
        if current is None or rank[row["org_id"]] < rank[current["org_id"]]:
            best[row["name"]] = row
    return best


async def find_visible(conn: AsyncConnection, chain: Chain, name: str) -> EventTypeRecord | None:
    query = select(event_types).where(
        event_types.c.org_id.in_(list(chain)), event_types.c.name == name
    )
    row = _nearest(list((await conn.execute(query)).mappings()), chain).get(name)
    return record_of(EventTypeRecord, row) if row else None


async def get_own(
    conn: AsyncConnection, org_id: int, name: str, *, for_update: bool = False
) -> EventTypeRecord | None:
    query = select(event_types).where(event_types.c.org_id == org_id, event_types.c.name == name)
    if for_update:  # PostgreSQL: concurrent registrations of one type take turns
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return record_of(EventTypeRecord, row) if row else None


async def get_by_id(conn: AsyncConnection, type_id: str) -> EventTypeRecord | None:
    query = select(event_types).where(event_types.c.id == type_id)
    row = (await conn.execute(query)).mappings().first()
    return record_of(EventTypeRecord, row) if row else None


async def list_page(
    conn: AsyncConnection, chain: Chain, page: PageRequest, *, search: str | None
) -> tuple[list[EventTypeRecord], int]:
    query: Select[Any] = select(event_types).where(_visible(chain))
    if search:
        pattern = (
            "%" + search.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
        )
        query = query.where(
            or_(
                func.lower(event_types.c.name).like(pattern, escape="\\"),
                func.lower(event_types.c.description).like(pattern, escape="\\"),
            )
        )
    rows, total = await fetch_page(conn, query, page, event_types.c.name, event_types.c.org_id)
    return [record_of(EventTypeRecord, r) for r in rows], total


async def create_type(conn: AsyncConnection, values: dict[str, Any]) -> EventTypeRecord:
    await conn.execute(insert(event_types).values(**values))
    created = await get_by_id(conn, values["id"])
    assert created is not None
    return created


async def update_type(
    conn: AsyncConnection, type_id: str, values: dict[str, Any]
) -> EventTypeRecord:
    await conn.execute(update(event_types).where(event_types.c.id == type_id).values(**values))
    updated = await get_by_id(conn, type_id)
    assert updated is not None
    return updated


async def delete_type(conn: AsyncConnection, type_id: str) -> None:
    # Explicitly, rather than trusting every connection to enforce ON DELETE CASCADE.
    await conn.execute(
        delete(event_type_schemas).where(event_type_schemas.c.event_type_id == type_id)
    )
    await conn.execute(delete(event_types).where(event_types.c.id == type_id))


async def insert_version(conn: AsyncConnection, values: dict[str, Any]) -> SchemaVersionRecord:
    await conn.execute(insert(event_type_schemas).values(**values))
    created = await get_version(conn, values["event_type_id"], values["version"])
    assert created is not None
    return created


async def get_version(
    conn: AsyncConnection, type_id: str, version: int
) -> SchemaVersionRecord | None:
    query = select(event_type_schemas).where(
        event_type_schemas.c.event_type_id == type_id, event_type_schemas.c.version == version
    )
    row = (await conn.execute(query)).mappings().first()
    return record_of(SchemaVersionRecord, row) if row else None


async def schemas(
    conn: AsyncConnection, type_id: str, versions: Collection[int] | None = None
) -> list[SchemaVersionRecord]:
    """Schema versions of a type, oldest first (all of them without ``versions``)."""
    query = select(event_type_schemas).where(event_type_schemas.c.event_type_id == type_id)
    if versions is not None:
        query = query.where(event_type_schemas.c.version.in_(list(versions)))
    rows = await conn.execute(query.order_by(event_type_schemas.c.version))
    return [record_of(SchemaVersionRecord, r) for r in rows.mappings()]


async def version_summaries(conn: AsyncConnection, type_id: str) -> list[VersionSummary]:
    columns = [event_type_schemas.c[n] for n in VersionSummary.__dataclass_fields__]
    query = (
        select(*columns)
        .where(event_type_schemas.c.event_type_id == type_id)
        .order_by(event_type_schemas.c.version)
    )
    return [record_of(VersionSummary, r) for r in (await conn.execute(query)).mappings()]


async def latest_refs(
    conn: AsyncConnection, chain: Chain, names: Collection[str]
) -> dict[str, LatestRef]:
    """Per name, the visible type's id and latest version, in one query."""
    query = select(
        event_types.c.id, event_types.c.org_id, event_types.c.name, event_types.c.latest_version
    ).where(event_types.c.org_id.in_(list(chain)), event_types.c.name.in_(list(names)))
    rows = list((await conn.execute(query)).mappings())
    return {name: record_of(LatestRef, row) for name, row in _nearest(rows, chain).items()}


async def schema_documents(
    conn: AsyncConnection, keys: Collection[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    """The schema documents of (type id, version) pairs, in one query."""
    if not keys:
        return {}
    columns = event_type_schemas.c
    query = select(columns.event_type_id, columns.version, columns.schema).where(
        or_(*(and_(columns.event_type_id == t, columns.version == v) for t, v in keys))
    )
    rows = await conn.execute(query)
    return {(r.event_type_id, r.version): r.schema for r in rows}


async def latest_with_schemas(
    conn: AsyncConnection, chain: Chain, name: str | None = None
) -> list[tuple[EventTypeRecord, SchemaVersionRecord]]:
    """The visible types (or the one named) with their latest schema, by name."""
    joined = event_types.join(
        event_type_schemas,
        and_(
            event_type_schemas.c.event_type_id == event_types.c.id,
            event_type_schemas.c.version == event_types.c.latest_version,
        ),
    )
    schema_columns = [
        event_type_schemas.c[n].label(f"s_{n}") for n in SchemaVersionRecord.__dataclass_fields__
    ]
    query = select(event_types, *schema_columns).select_from(joined).where(_visible(chain))
    if name is not None:
        query = query.where(event_types.c.name == name)
    rows = await conn.execute(query.order_by(event_types.c.name))
    found = []
    for row in rows.mappings():
        version = {n: row[f"s_{n}"] for n in SchemaVersionRecord.__dataclass_fields__}
        found.append((record_of(EventTypeRecord, row), SchemaVersionRecord(**version)))
    return found
