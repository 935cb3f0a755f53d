"""Inbound integrations and their versions. Both sets of credentials (outgoing and inbound)
are sealed together with the SecretBox, bound to the integration id, and opened only here.
Versions share ``integration_versions`` with outbound integrations."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.inbound import (
    InboundIntegration,
    inbound_document,
    parse_inbound,
    with_inbound_secrets,
)
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import ConflictError
from junctionbox.store.queries.common import fetch_page
from junctionbox.store.queries.integrations import record_version
from junctionbox.store.tables import inbound_integrations, integration_versions

INBOUND_ID_PREFIX = "inb"
_table = inbound_integrations


@dataclass(frozen=True)
class StoredInbound:
    """An inbound integration as stored; its credentials are opened."""

    id: str
    org_id: int
    version: int
    integration: InboundIntegration
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.integration.is_active


def _seal(box: SecretBox, integration_id: str, integration: InboundIntegration) -> str:
    document = {
        "auth": dict(integration.auth.secrets),
        "inbound": dict(integration.inbound_auth.secrets),
    }
    return box.seal(orjson.dumps(document).decode(), integration_id)


def open_secrets(
    box: SecretBox, integration_id: str, sealed: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(outgoing, inbound) credentials."""
    if not sealed:
        return {}, {}
    document = orjson.loads(box.open(sealed, integration_id))
    return dict(document.get("auth") or {}), dict(document.get("inbound") or {})


def stored_inbound(box: SecretBox, row: RowMapping) -> StoredInbound:
    outgoing, inbound = open_secrets(box, row["id"], row["sealed_secrets"])
    integration = parse_inbound(with_inbound_secrets(row["config"], outgoing, inbound))
    return StoredInbound(
        id=row["id"],
        org_id=row["org_id"],
        version=row["version"],
        integration=integration,
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_inbound(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    integration_id: str,
    org_id: int,
    integration: InboundIntegration,
    created_by: str | None,
    now: datetime,
) -> StoredInbound:
    sealed = _seal(box, integration_id, integration)
    document = inbound_document(integration)
    await conn.execute(
        insert(_table).values(
            id=integration_id,
            org_id=org_id,
            name=integration.name,
            type=integration.type,
            is_active=integration.is_active,
            version=1,
            config=document,
            sealed_secrets=sealed,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    await record_version(
        conn, integration_id, org_id, 1, "CREATED", document, sealed, created_by, now
    )
    loaded = await load_inbound(conn, box, integration_id)
    assert loaded is not None
    return loaded


async def save_inbound(
    conn: AsyncConnection,
    box: SecretBox,
    current: StoredInbound,
    integration: InboundIntegration,
    *,
    change: str,
    actor: str | None,
    now: datetime,
) -> StoredInbound:
    """Write a new version, conditional on the version read (a concurrent change: 409)."""
    sealed = _seal(box, current.id, integration)
    document = inbound_document(integration)
    version = current.version + 1
    result = await conn.execute(
        update(_table)
        .where(_table.c.id == current.id, _table.c.version == current.version)
        .values(
            name=integration.name,
            type=integration.type,
            is_active=integration.is_active,
            version=version,
            config=document,
            sealed_secrets=sealed,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        raise ConflictError("the integration was changed concurrently; read it again and retry")
    await record_version(
        conn, current.id, current.org_id, version, change, document, sealed, actor, now
    )
    loaded = await load_inbound(conn, box, current.id)
    assert loaded is not None
    return loaded


async def load_inbound(
    conn: AsyncConnection,
    box: SecretBox,
    integration_id: str,
    org_ids: Collection[int] | None = None,
) -> StoredInbound | None:
    query = select(_table).where(_table.c.id == integration_id)
    if org_ids is not None:
        query = query.where(_table.c.org_id.in_(list(org_ids)))
    row = (await conn.execute(query)).mappings().first()
    return stored_inbound(box, row) if row is not None else None


async def find_by_type(
    conn: AsyncConnection, box: SecretBox, org_ids: Collection[int], kind: str
) -> list[StoredInbound]:
    """The integrations of ``kind`` owned by any of ``org_ids`` (the proxy picks one)."""
    query = select(_table).where(_table.c.org_id.in_(list(org_ids)), _table.c.type == kind)
    rows = (await conn.execute(query)).mappings().all()
    return [stored_inbound(box, row) for row in rows]


async def type_taken(
    conn: AsyncConnection, org_id: int, kind: str, except_id: str | None = None
) -> bool:
    query = select(_table.c.id).where(_table.c.org_id == org_id, _table.c.type == kind)
    if except_id is not None:
        query = query.where(_table.c.id != except_id)
    return (await conn.execute(query.limit(1))).first() is not None


async def list_inbound(
    conn: AsyncConnection,
    box: SecretBox,
    page: PageRequest,
    *,
    org_id: int,
    is_active: bool | None = None,
    kind: str | None = None,
    search: str | None = None,
) -> tuple[list[StoredInbound], int]:
    query: Select[Any] = select(_table).where(_table.c.org_id == org_id)
    if is_active is not None:
        query = query.where(_table.c.is_active.is_(is_active))
    if kind:
        query = query.where(_table.c.type == kind)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        pattern = f"%{escaped}%"
        query = query.where(
            func.lower(_table.c.name).like(pattern, escape="\\")
            | func.lower(_table.c.type).like(pattern, escape="\\")
        )
    rows, total = await fetch_page(conn, query, page, _table.c.type, _table.c.id)
    return [stored_inbound(box, row) for row in rows], total


async def delete_inbound(conn: AsyncConnection, integration_id: str, org_id: int) -> bool:
    result = await conn.execute(
        delete(_table).where(_table.c.id == integration_id, _table.c.org_id == org_id)
    )
    if result.rowcount != 1:
        return False
    await conn.execute(
        delete(integration_versions).where(integration_versions.c.integration_id == integration_id)
    )
    return True
