"""Outbound integrations and their version history. Credentials and signing keys are sealed
with the SecretBox, bound to the integration id, and opened only here."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.outbound import (
    OutboundIntegration,
    SigningKey,
    StoredIntegration,
    integration_document,
    parse_integration,
    with_secrets,
)
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import ConflictError
from junctionbox.store.queries.common import fetch_page
from junctionbox.store.tables import integration_versions, outbound_integrations

INTEGRATION_ID_PREFIX = "int"


def seal_secrets(
    box: SecretBox,
    integration_id: str,
    auth_secrets: Mapping[str, Any],
    signing_keys: Sequence[SigningKey],
) -> str:
    document = {
        "auth": dict(auth_secrets),
        "signingKeys": [
            {
                "key": k.key,
                "createdAt": k.created_at.isoformat(),
                "expiresAt": k.expires_at.isoformat() if k.expires_at else None,
            }
            for k in signing_keys
        ],
    }
    return box.seal(orjson.dumps(document).decode(), integration_id)


def open_secrets(
    box: SecretBox, integration_id: str, sealed: str | None
) -> tuple[dict[str, Any], tuple[SigningKey, ...]]:
    if not sealed:
        return {}, ()
    document = orjson.loads(box.open(sealed, integration_id))
    keys = tuple(
        SigningKey(
            k["key"],
            datetime.fromisoformat(k["createdAt"]),
            datetime.fromisoformat(k["expiresAt"]) if k.get("expiresAt") else None,
        )
        for k in document.get("signingKeys", ())
    )
    return dict(document.get("auth") or {}), keys


def stored_integration(box: SecretBox, row: RowMapping) -> StoredIntegration:
    auth_secrets, keys = open_secrets(box, row["id"], row["sealed_secrets"])
    integration = parse_integration(with_secrets(row["config"], auth_secrets))
    return StoredIntegration(
        id=row["id"],
        org_id=row["org_id"],
        version=row["version"],
        integration=integration,
        signing_keys=keys,
        consecutive_failures=row["consecutive_failures"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def insert_integration(
    conn: AsyncConnection,
    box: SecretBox,
    *,
    integration_id: str,
    org_id: int,
    integration: OutboundIntegration,
    signing_keys: Sequence[SigningKey],
    created_by: str | None,
    now: datetime,
) -> StoredIntegration:
    """Insert version 1 and its history row."""
    sealed = seal_secrets(box, integration_id, integration.auth.secrets, signing_keys)
    document = integration_document(integration)
    await conn.execute(
        insert(outbound_integrations).values(
            id=integration_id,
            org_id=org_id,
            name=integration.name,
            event_type=integration.event_type,
            is_active=integration.is_active,
            version=1,
            config=document,
            sealed_secrets=sealed,
            consecutive_failures=0,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    await record_version(
        conn, integration_id, org_id, 1, "CREATED", document, sealed, created_by, now
    )
    loaded = await load_integration(conn, box, integration_id)
    assert loaded is not None
    return loaded


async def save_integration(
    conn: AsyncConnection,
    box: SecretBox,
    current: StoredIntegration,
    integration: OutboundIntegration,
    *,
    signing_keys: Sequence[SigningKey] | None = None,
    change: str,
    actor: str | None,
    now: datetime,
    reset_failures: bool = False,
    disabled_reason: str | None = None,
) -> StoredIntegration:
    """Write a new version (``change``: UPDATED, RESTORED, ENABLED, DISABLED, ROTATED ...).

    The write is conditional on ``current`` (its version and active state): a concurrent
    change in between raises ``ConflictError`` instead of two writers both producing the next
    version, or a save undoing an auto-disable it did not see. Switching an
    integration off records ``disabled_reason`` (default: by a user) and the time.
    """
    keys = current.signing_keys if signing_keys is None else tuple(signing_keys)
    sealed = seal_secrets(box, current.id, integration.auth.secrets, keys)
    document = integration_document(integration)
    version = current.version + 1
    values: dict[str, Any] = {
        "name": integration.name,
        "event_type": integration.event_type,
        "is_active": integration.is_active,
        "version": version,
        "config": document,
        "sealed_secrets": sealed,
        "updated_at": now,
    }
    if reset_failures or (integration.is_active and not current.is_active):
        # Re-enabling resets the auto-disable streak (seed 003).
        values.update(consecutive_failures=0, disabled_reason=None, disabled_at=None)
    elif current.is_active and not integration.is_active:
        values.update(disabled_reason=(disabled_reason or "disabled by a user")[:200])
        values.update(disabled_at=now)
    table = outbound_integrations
    # is_active too: the engine switches integrations off (auto-disable, 410) without a new
    # version, and a save based on the earlier state must not silently undo that.
    result = await conn.execute(
        update(table)
        .where(
            table.c.id == current.id,
            table.c.version == current.version,
            table.c.is_active.is_(current.is_active),
        )
        .values(**values)
    )
    if result.rowcount != 1:
        raise ConflictError("the integration was changed concurrently; read it again and retry")
    await record_version(
        conn, current.id, current.org_id, version, change, document, sealed, actor, now
    )
    loaded = await load_integration(conn, box, current.id)
    assert loaded is not None
    return loaded


async def record_version(
    conn: AsyncConnection,
    integration_id: str,
    org_id: int,
    version: int,
    change: str,
    document: Mapping[str, Any],
    sealed: str | None,
    actor: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        insert(integration_versions).values(
            integration_id=integration_id,
            version=version,
            org_id=org_id,
            change=change,
            config=dict(document),
            sealed_secrets=sealed,
            created_by=actor,
            created_at=now,
        )
    )


async def load_integration(
    conn: AsyncConnection,
    box: SecretBox,
    integration_id: str,
    org_ids: Collection[int] | None = None,
) -> StoredIntegration | None:
    """One integration; with ``org_ids``, only if it belongs to one of them."""
    query = select(outbound_integrations).where(outbound_integrations.c.id == integration_id)
    if org_ids is not None:
        query = query.where(outbound_integrations.c.org_id.in_(list(org_ids)))
    row = (await conn.execute(query)).mappings().first()
    return stored_integration(box, row) if row is not None else None


async def integrations_of(
    conn: AsyncConnection,
    box: SecretBox,
    org_ids: Collection[int],
    *,
    active_only: bool = False,
) -> list[StoredIntegration]:
    """The integrations owned by any of ``org_ids`` (oldest first)."""
    query = select(outbound_integrations).where(outbound_integrations.c.org_id.in_(list(org_ids)))
    if active_only:
        query = query.where(outbound_integrations.c.is_active.is_(True))
    rows = (await conn.execute(query.order_by(outbound_integrations.c.id))).mappings().all()
    return [stored_integration(box, row) for row in rows]


async def versions_of(conn: AsyncConnection, integration_id: str, org_id: int) -> list[RowMapping]:
    query = (
        select(integration_versions)
        .where(
            integration_versions.c.integration_id == integration_id,
            integration_versions.c.org_id == org_id,
        )
        .order_by(integration_versions.c.version.desc())
    )
    return list((await conn.execute(query)).mappings().all())


async def record_outcome(
    conn: AsyncConnection,
    integration_id: str,
    *,
    failed: bool,
    disable_after: int,
    now: datetime,
) -> bool:
    """Count a delivery's final outcome toward the auto-disable streak; True when this
    failure disabled the integration (seed 003: after N consecutive failures)."""
    table = outbound_integrations
    if not failed:
        await conn.execute(
            update(table)
            .where(table.c.id == integration_id, table.c.consecutive_failures != 0)
            .values(consecutive_failures=0)
        )
        return False
    row = (
        await conn.execute(
            update(table)
            .where(table.c.id == integration_id)
            .values(consecutive_failures=table.c.consecutive_failures + 1)
            .returning(table.c.consecutive_failures, table.c.is_active)
        )
    ).first()
    if row is None or not row.is_active or disable_after < 1:
        return False
    if row.consecutive_failures < disable_after:
        return False
    await disable_integration(
        conn, integration_id, f"{row.consecutive_failures} consecutive failures", now
    )
    return True


async def disable_integration(
    conn: AsyncConnection, integration_id: str, reason: str, now: datetime
) -> None:
    """Switch an integration off by the engine (auto-disable, 410 Gone). The config document's
    ``isActive`` follows so that versions and the API agree; no new version is written."""
    table = outbound_integrations
    row = (await conn.execute(select(table.c.config).where(table.c.id == integration_id))).first()
    if row is None:
        return
    document = {**row.config, "isActive": False}
    await conn.execute(
        update(table)
        .where(table.c.id == integration_id)
        .values(
            is_active=False,
            config=document,
            disabled_reason=reason[:200],
            disabled_at=now,
            updated_at=now,
        )
    )


async def count_integrations(conn: AsyncConnection, org_ids: Collection[int]) -> int:
    query = select(func.count()).where(outbound_integrations.c.org_id.in_(list(org_ids)))
    return int((await conn.execute(query)).scalar_one())


# ---------------------------------------------------------------- the API's reads and writes


async def name_taken(
    conn: AsyncConnection, org_id: int, name: str, except_id: str | None = None
) -> bool:
    table = outbound_integrations
    query = select(table.c.id).where(table.c.org_id == org_id, table.c.name == name)
    if except_id is not None:
        query = query.where(table.c.id != except_id)
    return (await conn.execute(query.limit(1))).first() is not None


def event_type_patterns(event_type: str) -> list[str]:
    """The stored ``eventType`` values that match ``event_type`` (see
    ``domain.outbound.event_type_matches``): itself, ``*`` and each ``prefix.*`` above it."""
    parts = event_type.split(".")
    prefixes = [".".join(parts[:n]) + ".*" for n in range(1, len(parts))]
    return [event_type, "*", *prefixes]


async def list_integrations(
    conn: AsyncConnection,
    box: SecretBox,
    page: PageRequest,
    *,
    org_id: int,
    is_active: bool | None = None,
    event_type: str | None = None,
    search: str | None = None,
) -> tuple[list[StoredIntegration], int]:
    """One page of a tenant's integrations by name; ``event_type`` keeps those an event of
    that type would match, ``search`` is a case-insensitive substring of the name."""
    table = outbound_integrations
    query: Select[Any] = select(table).where(table.c.org_id == org_id)
    if is_active is not None:
        query = query.where(table.c.is_active.is_(is_active))
    if event_type:
        query = query.where(table.c.event_type.in_(event_type_patterns(event_type)))
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        query = query.where(func.lower(table.c.name).like(f"%{escaped}%", escape="\\"))
    rows, total = await fetch_page(conn, query, page, table.c.name, table.c.id)
    return [stored_integration(box, row) for row in rows], total


async def load_version(
    conn: AsyncConnection, integration_id: str, org_id: int, version: int
) -> RowMapping | None:
    query = select(integration_versions).where(
        integration_versions.c.integration_id == integration_id,
        integration_versions.c.org_id == org_id,
        integration_versions.c.version == version,
    )
    return (await conn.execute(query)).mappings().first()


def version_secrets(
    box: SecretBox, row: RowMapping
) -> tuple[dict[str, Any], tuple[SigningKey, ...]]:
    """The credentials and signing keys a version row was saved with."""
    return open_secrets(box, row["integration_id"], row["sealed_secrets"])


async def delete_integration(conn: AsyncConnection, integration_id: str, org_id: int) -> bool:
    """Delete the integration and its history; False when it was not there."""
    table = outbound_integrations
    result = await conn.execute(
        delete(table).where(table.c.id == integration_id, table.c.org_id == org_id)
    )
    if result.rowcount != 1:
        return False
    await conn.execute(
        delete(integration_versions).where(integration_versions.c.integration_id == integration_id)
    )
    return True
