"""Idempotency keys: the first response to a (tenant, key), replayed until it expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.database import Database
from junctionbox.store.queries.common import purge
from junctionbox.store.queries.events import insert_ignoring_conflicts
from junctionbox.store.tables import idempotency_keys


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    response_status: int
    response_body: bytes
    expires_at: datetime


def _key(org_id: int, key: str) -> list[ColumnElement[bool]]:
    return [idempotency_keys.c.org_id == org_id, idempotency_keys.c.key == key]


async def claim(
    conn: AsyncConnection,
    org_id: int,
    key: str,
    request_hash: str,
    now: datetime,
    expires: datetime,
) -> bool:
    """Take the key for this transaction; False if it is already taken.

    On PostgreSQL a concurrent transaction holding the same key makes this wait until that
    one commits (then False) or rolls back (then True): exactly one request executes.
    """
    statement = (
        insert_ignoring_conflicts(conn, idempotency_keys)
        .values(
            org_id=org_id,
            key=key,
            request_hash=request_hash,
            response_status=0,
            response_body=b"",
            created_at=now,
            expires_at=expires,
        )
        .returning(idempotency_keys.c.key)
    )
    return (await conn.execute(statement)).first() is not None


async def get(conn: AsyncConnection, org_id: int, key: str) -> StoredResponse | None:
    query = select(
        idempotency_keys.c.request_hash,
        idempotency_keys.c.response_status,
        idempotency_keys.c.response_body,
        idempotency_keys.c.expires_at,
    ).where(*_key(org_id, key))
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    return StoredResponse(
        row["request_hash"], row["response_status"], bytes(row["response_body"]), row["expires_at"]
    )


async def forget(conn: AsyncConnection, org_id: int, key: str) -> None:
    await conn.execute(delete(idempotency_keys).where(*_key(org_id, key)))


async def save_response(
    conn: AsyncConnection, org_id: int, key: str, status: int, body: bytes
) -> None:
    await conn.execute(
        update(idempotency_keys)
        .where(*_key(org_id, key))
        .values(response_status=status, response_body=body)
    )


async def purge_expired(db: Database, now: datetime) -> int:
    """Delete the keys expired before ``now``, in short transactions."""
    return await purge(db, idempotency_keys, idempotency_keys.c.expires_at < now)
