"""Webhook sources (per tenant) and the replay store of received message ids.

Every read of a source by the API takes the tenant; the receiver alone reads a source by
its id (the id in the receiving URL is the address the partner was given; the sender is
then verified by the source's scheme).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.database import Database
from junctionbox.store.queries.common import fetch_page, purge, record_of
from junctionbox.store.queries.events import insert_ignoring_conflicts
from junctionbox.store.tables import entities, webhook_receipts, webhook_sources

_src = webhook_sources.c
_rcpt = webhook_receipts.c


@dataclass(frozen=True)
class SourceRow:
    """A stored source; ``secrets`` still sealed."""

    id: str
    org_id: int
    name: str
    description: str | None
    is_active: bool
    config: dict[str, Any]
    secrets: list[dict[str, Any]]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Receipt:
    event_id: str
    body_sha256: str
    expires_at: datetime


async def insert_source(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(webhook_sources.insert().values(**values))


async def get_source(conn: AsyncConnection, org_id: int, source_id: str) -> SourceRow | None:
    query = select(webhook_sources).where(_src.id == source_id, _src.org_id == org_id)
    row = (await conn.execute(query)).mappings().first()
    return record_of(SourceRow, row) if row else None


async def source_for_receipt(
    conn: AsyncConnection, source_id: str
) -> tuple[SourceRow, int | None] | None:
    """The source and its entity's parent (for the schema lookup), for the receiver."""
    query = (
        select(webhook_sources, entities.c.parent_id)
        .join(entities, entities.c.id == _src.org_id)
        .where(_src.id == source_id)
    )
    row = (await conn.execute(query)).mappings().first()
    return (record_of(SourceRow, row), row["parent_id"]) if row else None


async def name_taken(
    conn: AsyncConnection, org_id: int, name: str, except_id: str | None = None
) -> bool:
    query = select(_src.id).where(_src.org_id == org_id, _src.name == name)
    if except_id is not None:
        query = query.where(_src.id != except_id)
    return (await conn.execute(query)).first() is not None


async def list_sources(
    conn: AsyncConnection, org_id: int, page: PageRequest, *, is_active: bool | None
) -> tuple[list[SourceRow], int]:
    query = select(webhook_sources).where(_src.org_id == org_id)
    if is_active is not None:
        query = query.where(_src.is_active == is_active)
    rows, total = await fetch_page(conn, query, page, _src.created_at, _src.id)
    return [record_of(SourceRow, row) for row in rows], total


async def update_source(
    conn: AsyncConnection, org_id: int, source_id: str, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(webhook_sources).where(_src.id == source_id, _src.org_id == org_id).values(**values)
    )


async def delete_source(conn: AsyncConnection, org_id: int, source_id: str) -> bool:
    deleted = await conn.execute(
        delete(webhook_sources).where(_src.id == source_id, _src.org_id == org_id)
    )
    await conn.execute(delete(webhook_receipts).where(_rcpt.source_id == source_id))
    return bool(deleted.rowcount)


# ---------------------------------------------------------------- the replay store


async def claim_message(
    conn: AsyncConnection,
    *,
    source_id: str,
    message_id: str,
    org_id: int,
    event_id: str,
    body_sha256: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Record the message for this transaction; False when it is already recorded.

    On PostgreSQL a concurrent transaction recording the same message makes this wait for
    it to commit (then False) or roll back (then True): one of them stores the event.
    """
    statement = (
        insert_ignoring_conflicts(conn, webhook_receipts)
        .values(
            source_id=source_id,
            message_id=message_id,
            org_id=org_id,
            event_id=event_id,
            body_sha256=body_sha256,
            received_at=now,
            expires_at=expires_at,
        )
        .returning(_rcpt.message_id)
    )
    return (await conn.execute(statement)).first() is not None


async def get_receipt(conn: AsyncConnection, source_id: str, message_id: str) -> Receipt | None:
    query = select(_rcpt.event_id, _rcpt.body_sha256, _rcpt.expires_at).where(
        _rcpt.source_id == source_id, _rcpt.message_id == message_id
    )
    row = (await conn.execute(query)).mappings().first()
    return record_of(Receipt, row) if row else None


async def forget_receipt(conn: AsyncConnection, source_id: str, message_id: str) -> None:
    await conn.execute(
        delete(webhook_receipts).where(_rcpt.source_id == source_id, _rcpt.message_id == message_id)
    )


async def purge_expired(db: Database, now: datetime) -> int:
    """Delete the receipts expired by ``now``, in short transactions."""
    return await purge(db, webhook_receipts, _rcpt.expires_at <= now)
