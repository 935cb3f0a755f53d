"""User accounts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.queries.common import fetch_page, record_of
from junctionbox.store.tables import users


@dataclass(frozen=True)
class UserRecord:
    id: str
    email: str
    password_hash: str
    role: str
    org_id: int | None
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


async def _one(conn: AsyncConnection, condition: Any) -> UserRecord | None:
    row = (await conn.execute(select(users).where(condition))).mappings().first()
    return record_of(UserRecord, row) if row else None


async def get(conn: AsyncConnection, user_id: str) -> UserRecord | None:
    return await _one(conn, users.c.id == user_id)


async def get_by_email(conn: AsyncConnection, email: str) -> UserRecord | None:
    return await _one(conn, users.c.email == email.lower())


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(users))).scalar_one())


async def create(conn: AsyncConnection, values: dict[str, Any]) -> UserRecord:
    await conn.execute(insert(users).values(**values))
    created = await get(conn, values["id"])
    assert created is not None
    return created


async def update_user(conn: AsyncConnection, user_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def delete_user(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(delete(users).where(users.c.id == user_id))


async def list_page(
    conn: AsyncConnection,
    page: PageRequest,
    *,
    org_id: int | None,
    role: str | None,
    search: str | None,
) -> tuple[list[UserRecord], int]:
    query = select(users)
    if org_id is not None:
        query = query.where(users.c.org_id == org_id)
    if role:
        query = query.where(users.c.role == role)
    if search:
        query = query.where(users.c.email.like(f"%{search.lower()}%"))
    rows, total = await fetch_page(conn, query, page, users.c.created_at, users.c.id)
    return [record_of(UserRecord, r) for r in rows], total
