"""Writes the audit trail of admin and configuration changes, secrets masked."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.identity import Principal
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.redaction import redact
from junctionbox.observability import context
from junctionbox.store.database import Database
from junctionbox.store.queries import audit as queries
from junctionbox.store.queries.audit import AuditRecord
from junctionbox.store.types import utcnow

_NEVER_AUDITED = {"password_hash", "key_hash"}


def snapshot(value: Any) -> dict[str, Any] | None:
    """A JSON-safe, secret-free picture of a record for the before/after columns."""
    if value is None:
        return None
    data = asdict(value) if is_dataclass(value) and not isinstance(value, type) else dict(value)
    plain = {k: _jsonable(v) for k, v in data.items() if k not in _NEVER_AUDITED}
    masked: dict[str, Any] = redact(plain)
    return masked


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def record(
    conn: AsyncConnection,
    actor: Principal | None,
    action: str,
    resource_type: str,
    resource_id: str | int | None,
    *,
    org_id: int | None = None,
    before: Any = None,
    after: Any = None,
) -> None:
    """Append one entry in the caller's transaction: no change without its audit record."""
    await queries.insert_entry(
        conn,
        {
            "id": new_id("aud"),
            "actor_kind": actor.kind.value if actor else "system",
            "actor_id": actor.id if actor else None,
            "actor_email": actor.email if actor else None,
            "org_id": org_id,
            "action": action,
            "resource_type": resource_type,
            "resource_id": None if resource_id is None else str(resource_id),
            "before": snapshot(before),
            "after": snapshot(after),
            "request_id": context.current().request_id,
            "created_at": utcnow(),
        },
    )


class AuditService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(
        self,
        page: PageRequest,
        *,
        org_ids: list[int] | None = None,
        action: str | None = None,
        resource_type: str | None = None,
        actor_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Page[AuditRecord]:
        async with self.db.read() as conn:
            items, total = await queries.list_page(
                conn,
                page,
                org_ids=org_ids,
                action=action,
                resource_type=resource_type,
                actor_id=actor_id,
                since=since,
                until=until,
            )
        return Page(items, total, page)
