"""API keys, stored as SHA-256 hashes of the key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import api_keys


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    org_id: int
    name: str
    prefix: str
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


async def create(conn: AsyncConnection, values: dict[str, Any]) -> ApiKeyRecord:
    await conn.execute(insert(api_keys).values(**values))
    created = await get(conn, values["id"])
    assert created is not None
    return created


async def get(conn: AsyncConnection, key_id: str) -> ApiKeyRecord | None:
    row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
    return record_of(ApiKeyRecord, row) if row else None


async def find_by_hash(conn: AsyncConnection, key_hash: str) -> ApiKeyRecord | None:
    query = select(api_keys).where(api_keys.c.key_hash == key_hash)
    row = (await conn.execute(query)).mappings().first()
    return record_of(ApiKeyRecord, row) if row else None


async def touch(conn: AsyncConnection, key_id: str, when: datetime) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=when))


async def revoke(conn: AsyncConnection, key_id: str, when: datetime) -> None:
    await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=when))


async def list_page(
    conn: AsyncConnection, page: PageRequest, *, org_id: int | None, include_revoked: bool
) -> tuple[list[ApiKeyRecord], int]:
    query = select(api_keys)
    if org_id is not None:
        query = query.where(api_keys.c.org_id == org_id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    rows, total = await fetch_page(conn, query, page, api_keys.c.created_at, api_keys.c.id)
    return [record_of(ApiKeyRecord, r) for r in rows], total
