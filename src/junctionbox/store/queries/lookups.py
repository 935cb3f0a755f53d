"""Lookup tables: ``(org_id, type, key) -> value`` entries, their types, and the cheap
signature a cache compares to notice changes made by other nodes."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import entities, lookups

_lk = lookups.c
_TICK = timedelta(microseconds=1)

# Per entity: how many entries and the newest ``updated_at``. Writers stamp ``updated_at``
# past the tenant's current newest (see ``next_stamp``), so any insert or update raises the
# maximum and any delete lowers the count: a changed table always changes its signature.
Signature = tuple[tuple[int, int, datetime | None], ...]


@dataclass(frozen=True)
class LookupRecord:
    id: str
    org_id: int
    type: str
    key: str
    value: str
    description: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TypeCount:
    type: str
    count: int
    updated_at: datetime


def _search(term: str) -> ColumnElement[bool]:
    return or_(
        _lk.key.icontains(term, autoescape=True),
        _lk.value.icontains(term, autoescape=True),
        _lk.description.icontains(term, autoescape=True),
    )


async def list_page(
    conn: AsyncConnection,
    org_id: int,
    page: PageRequest,
    *,
    lookup_type: str | None = None,
    search: str | None = None,
) -> tuple[list[LookupRecord], int]:
    query = select(lookups).where(_lk.org_id == org_id)
    if lookup_type:
        query = query.where(_lk.type == lookup_type)
    if search:
        query = query.where(_search(search))
    rows, total = await fetch_page(conn, query, page, _lk.type, _lk.key)
    return [record_of(LookupRecord, r) for r in rows], total


async def types(conn: AsyncConnection, org_id: int) -> list[TypeCount]:
    query = (
        select(_lk.type, func.count(), func.max(_lk.updated_at))
        .where(_lk.org_id == org_id)
        .group_by(_lk.type)
        .order_by(_lk.type)
    )
    return [TypeCount(t, int(n), u) for t, n, u in (await conn.execute(query)).all()]


async def get(conn: AsyncConnection, org_id: int, lookup_id: str) -> LookupRecord | None:
    query = select(lookups).where(_lk.org_id == org_id, _lk.id == lookup_id)
    row = (await conn.execute(query)).mappings().first()
    return record_of(LookupRecord, row) if row else None


async def find(
    conn: AsyncConnection, org_id: int, lookup_type: str, key: str
) -> LookupRecord | None:
    query = select(lookups).where(_lk.org_id == org_id, _lk.type == lookup_type, _lk.key == key)
    row = (await conn.execute(query)).mappings().first()
    return record_of(LookupRecord, row) if row else None


async def of_types(
    conn: AsyncConnection, org_id: int, lookup_types: Collection[str] | None
) -> list[LookupRecord]:
    """Every entry of these types (all types: None), ordered by type and key."""
    query = select(lookups).where(_lk.org_id == org_id)
    if lookup_types is not None:
        query = query.where(_lk.type.in_(list(lookup_types)))
    rows = await conn.execute(query.order_by(_lk.type, _lk.key))
    return [record_of(LookupRecord, r) for r in rows.mappings()]


async def keys_of(
    conn: AsyncConnection, org_id: int, lookup_types: Collection[str]
) -> dict[tuple[str, str], str]:
    """``(type, key) -> id`` of the entries of these types."""
    query = select(_lk.type, _lk.key, _lk.id).where(
        _lk.org_id == org_id, _lk.type.in_(list(lookup_types))
    )
    return {(t, k): i for t, k, i in (await conn.execute(query)).all()}


async def next_stamp(conn: AsyncConnection, org_id: int, now: datetime) -> datetime:
    """``now``, or just past the tenant's newest ``updated_at`` if that is later (a clock
    behind another node's must still move the signature)."""
    newest = (
        await conn.execute(select(func.max(_lk.updated_at)).where(_lk.org_id == org_id))
    ).scalar_one()
    return now if newest is None or newest < now else newest + _TICK


async def insert_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(lookups), list(rows))


async def update_many(
    conn: AsyncConnection, rows: Sequence[dict[str, Any]], *, descriptions: bool = True
) -> None:
    """Update value, updated_at and (with ``descriptions``) description of entries by id
    (parameters ``b_id``, ``b_value``, ``b_updated_at``, ``b_description``)."""
    if not rows:
        return
    values: dict[str, Any] = {
        "value": bindparam("b_value"),
        "updated_at": bindparam("b_updated_at"),
    }
    if descriptions:
        values["description"] = bindparam("b_description")
    statement = update(lookups).where(_lk.id == bindparam("b_id")).values(**values)
    await conn.execute(statement, list(rows))


async def update_entry(
    conn: AsyncConnection, org_id: int, lookup_id: str, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(lookups).where(_lk.org_id == org_id, _lk.id == lookup_id).values(**values)
    )


async def delete_entry(conn: AsyncConnection, org_id: int, lookup_id: str) -> int:
    result = await conn.execute(delete(lookups).where(_lk.org_id == org_id, _lk.id == lookup_id))
    return int(result.rowcount or 0)


async def delete_types(conn: AsyncConnection, org_id: int, lookup_types: Collection[str]) -> int:
    result = await conn.execute(
        delete(lookups).where(_lk.org_id == org_id, _lk.type.in_(list(lookup_types)))
    )
    return int(result.rowcount or 0)


# --- what the resolver cache reads ---


async def lineage(conn: AsyncConnection, org_id: int) -> tuple[int, ...]:
    """``(organization, unit)`` for a unit, ``(org_id,)`` otherwise: whose tables apply,
    most general first."""
    query = select(entities.c.parent_id).where(entities.c.id == org_id)
    parent = (await conn.execute(query)).scalar_one_or_none()
    return (org_id,) if parent is None else (int(parent), org_id)


async def entries(conn: AsyncConnection, org_ids: Sequence[int]) -> list[tuple[int, str, str, str]]:
    """``(org_id, type, key, value)`` of every entry of these entities."""
    query = select(_lk.org_id, _lk.type, _lk.key, _lk.value).where(_lk.org_id.in_(list(org_ids)))
    return [(int(o), t, k, v) for o, t, k, v in (await conn.execute(query)).all()]


async def signature(conn: AsyncConnection, org_ids: Sequence[int]) -> Signature:
    query = (
        select(_lk.org_id, func.count(), func.max(_lk.updated_at))
        .where(_lk.org_id.in_(list(org_ids)))
        .group_by(_lk.org_id)
        .order_by(_lk.org_id)
    )
    return tuple((int(o), int(n), u) for o, n, u in (await conn.execute(query)).all())
