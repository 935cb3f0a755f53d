"""Logged-out login tokens, kept until they would have expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.tables import revoked_tokens


async def revoke(conn: AsyncConnection, jti: str, expires_at: datetime) -> None:
    if not await is_revoked(conn, jti):
        await conn.execute(insert(revoked_tokens).values(jti=jti, expires_at=expires_at))


async def is_revoked(conn: AsyncConnection, jti: str) -> bool:
    return bool((await conn.execute(select(exists().where(revoked_tokens.c.jti == jti)))).scalar())


async def purge_expired(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < now))
    return int(result.rowcount or 0)
