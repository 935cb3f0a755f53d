"""Webhook sources of a tenant: create, read, change, delete, rotate their secrets.

Secrets are sealed with the ``SecretBox`` (bound to the source id) and never returned,
except a secret the server generated, once, in the response that generated it. Every change
is audited in its own transaction, secrets masked.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.secretbox import SecretBox
from junctionbox.domain.webhook_sources import (
    DEFAULT_ROTATION_OVERLAP,
    MAX_ROTATION_OVERLAP,
    SecretEntry,
    WebhookSourceConfig,
    config_from_json,
    rotate,
    secret_hint,
)
from junctionbox.domain.webhook_verification import check_secret, generate_secret
from junctionbox.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import webhook_sources as queries
from junctionbox.store.queries.webhook_sources import SourceRow
from junctionbox.store.types import utcnow

ID_PREFIX = "whsrc"
MAX_NAME = 200


@dataclass(frozen=True)
class SecretInfo:
    hint: str
    created_at: datetime
    expires_at: datetime | None
    current: bool


@dataclass(frozen=True)
class WebhookSource:
    """A source as the API shows it (secrets as hints only)."""

    id: str
    org_id: int
    name: str
    description: str | None
    is_active: bool
    config: WebhookSourceConfig
    secrets: list[SecretInfo]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Revealed:
    """A source with the secret just generated for it (None when the caller gave one)."""

    source: WebhookSource
    secret: str | None


class WebhookSourceService:
    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        *,
        max_body_limit: int,
        clock: Callable[[], datetime] = utcnow,
        token_bytes: Callable[[int], bytes] = _secrets.token_bytes,
    ) -> None:
        self.db = db
        self.secretbox = secretbox
        self.max_body_limit = max_body_limit
        self.clock = clock
        self.token_bytes = token_bytes

    # --- reading ---

    async def get(self, tenant: TenantContext, source_id: str) -> WebhookSource:
        async with self.db.read() as conn:
            return self._view(await self._existing(conn, tenant, source_id))

    async def page(
        self, tenant: TenantContext, page: PageRequest, *, is_active: bool | None = None
    ) -> Page[WebhookSource]:
        async with self.db.read() as conn:
            rows, total = await queries.list_sources(conn, tenant.org_id, page, is_active=is_active)
        return Page([self._view(row) for row in rows], total, page)

    # --- writing ---

    async def create(
        self,
        tenant: TenantContext,
        *,
        name: str,
        description: str | None,
        is_active: bool,
        config: Mapping[str, Any],
        secret: str | None,
    ) -> Revealed:
        name = _check_name(name)
        parsed = config_from_json(config, max_body_limit=self.max_body_limit)
        plain, generated = self._secret_for(parsed, secret)
        source_id = new_id(ID_PREFIX)
        now = self.clock()
        values = {
            "id": source_id,
            "org_id": tenant.org_id,
            "name": name,
            "description": description,
            "is_active": is_active,
            "config": parsed.to_json(),
            "secrets": self._seal(source_id, [SecretEntry(plain, now)]),
            "created_by": tenant.principal.id,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as conn:
            await self._require_free_name(conn, tenant.org_id, name, None)
            await queries.insert_source(conn, values)
            view = self._view(SourceRow(**values))  # type: ignore[arg-type]
            await self._audit(conn, tenant, "webhook_source.create", source_id, None, view)
        return Revealed(view, generated)

    async def update(
        self, tenant: TenantContext, source_id: str, changes: Mapping[str, Any]
    ) -> Revealed:
        """Apply a PATCH: top-level fields replace, ``verification`` merges field by field
        (or starts afresh when the scheme changes); a ``verification.secret`` replaces every
        secret (no overlap: use rotate for that)."""
        changes = dict(changes)
        verification = dict(changes.pop("verification", None) or {})
        new_secret = verification.pop("secret", None)
        async with self.db.write() as conn:
            row = await self._existing(conn, tenant, source_id)
            before = self._view(row)
            document = {**row.config, **{k: v for k, v in changes.items() if k in _CONFIG_KEYS}}
            stored = row.config.get("verification", {})
            if verification.get("scheme", stored.get("scheme")) != stored.get("scheme"):
                stored = {}  # another scheme: its options start afresh
            document["verification"] = {**stored, **verification}
            parsed = config_from_json(document, max_body_limit=self.max_body_limit)
            now = self.clock()
            values: dict[str, Any] = {"config": parsed.to_json(), "updated_at": now}
            if "name" in changes:
                values["name"] = _check_name(changes["name"])
                await self._require_free_name(conn, tenant.org_id, values["name"], source_id)
            for key, column in (("description", "description"), ("isActive", "is_active")):
                if key in changes:
                    values[column] = changes[key]
            if new_secret is not None:
                _require_secret(parsed, new_secret)
                values["secrets"] = self._seal(source_id, [SecretEntry(new_secret, now)])
            else:
                for entry in self._open(row):
                    _require_secret(parsed, entry.value, field="verification.scheme")
            await queries.update_source(conn, tenant.org_id, source_id, values)
            view = self._view(replace(row, **values))
            await self._audit(conn, tenant, "webhook_source.update", source_id, before, view)
        return Revealed(view, None)

    async def rotate(
        self,
        tenant: TenantContext,
        source_id: str,
        *,
        secret: str | None = None,
        overlap: timedelta | None = None,
    ) -> Revealed:
        """Make a new secret current; the old one keeps verifying for ``overlap``."""
        overlap = DEFAULT_ROTATION_OVERLAP if overlap is None else overlap
        if not timedelta(0) <= overlap <= MAX_ROTATION_OVERLAP:
            message = f"overlapSeconds must be 0-{int(MAX_ROTATION_OVERLAP.total_seconds())}"
            raise ValidationError(
                message, problems=[FieldProblem(("body", "overlapSeconds"), message)]
            )
        async with self.db.write() as conn:
            row = await self._existing(conn, tenant, source_id)
            config = config_from_json(row.config, max_body_limit=self.max_body_limit)
            plain, generated = self._secret_for(config, secret)
            now = self.clock()
            entries = [e for e in self._open(row) if e.active(now)]
            values: dict[str, Any] = {
                "secrets": self._seal(source_id, rotate(entries, plain, now, overlap)),
                "updated_at": now,
            }
            await queries.update_source(conn, tenant.org_id, source_id, values)
            view = self._view(replace(row, **values))
            await self._audit(conn, tenant, "webhook_source.rotate", source_id, None, view)
        return Revealed(view, generated)

    async def delete(self, tenant: TenantContext, source_id: str) -> None:
        async with self.db.write() as conn:
            row = await self._existing(conn, tenant, source_id)
            await queries.delete_source(conn, tenant.org_id, source_id)
            await self._audit(
                conn, tenant, "webhook_source.delete", source_id, self._view(row), None
            )

    # --- secrets ---

    def _secret_for(self, config: WebhookSourceConfig, given: str | None) -> tuple[str, str | None]:
        """(the secret to store, the same if generated here else None)."""
        if given is not None:
            _require_secret(config, given)
            return given, None
        made = generate_secret(config.scheme, self.token_bytes)
        return made, made

    def _seal(self, source_id: str, entries: list[SecretEntry]) -> list[dict[str, Any]]:
        return [
            {
                "value": self.secretbox.seal(e.value, source_id),
                "createdAt": e.created_at.isoformat(),
                "expiresAt": e.expires_at.isoformat() if e.expires_at else None,
            }
            for e in entries
        ]

    def _open(self, row: SourceRow) -> list[SecretEntry]:
        return [
            SecretEntry(
                self.secretbox.open(item["value"], row.id),
                datetime.fromisoformat(item["createdAt"]),
                datetime.fromisoformat(item["expiresAt"]) if item.get("expiresAt") else None,
            )
            for item in row.secrets
        ]

    def open_secrets(self, row: SourceRow) -> list[SecretEntry]:
        return self._open(row)

    # --- helpers ---

    def _view(self, row: SourceRow) -> WebhookSource:
        now = self.clock()
        infos = [
            SecretInfo(secret_hint(e.value), e.created_at, e.expires_at, e.expires_at is None)
            for e in self._open(row)
            if e.active(now)
        ]
        config = config_from_json(row.config, max_body_limit=max(self.max_body_limit, 1 << 40))
        return WebhookSource(
            row.id,
            row.org_id,
            row.name,
            row.description,
            row.is_active,
            config,
            infos,
            row.created_by,
            row.created_at,
            row.updated_at,
        )

    async def _existing(self, conn: Any, tenant: TenantContext, source_id: str) -> SourceRow:
        row = await queries.get_source(conn, tenant.org_id, source_id)
        if row is None:
            raise NotFoundError("webhook source not found")
        return row

    async def _require_free_name(
        self, conn: Any, org_id: int, name: str, except_id: str | None
    ) -> None:
        if await queries.name_taken(conn, org_id, name, except_id):
            raise ConflictError(f"a webhook source named {name!r} already exists")

    async def _audit(
        self,
        conn: Any,
        tenant: TenantContext,
        action: str,
        source_id: str,
        before: WebhookSource | None,
        after: WebhookSource | None,
    ) -> None:
        await audit.record(
            conn,
            tenant.principal,
            action,
            "webhook_source",
            source_id,
            org_id=tenant.org_id,
            before=_audited(before),
            after=_audited(after),
        )


_CONFIG_KEYS = frozenset(
    {
        "stream",
        "eventTypeFrom",
        "eventType",
        "eventTypePrefix",
        "toleranceSeconds",
        "messageIdHeader",
        "messageIdPath",
        "maxBodyBytes",
        "rejectDuplicates",
    }
)


def _audited(view: WebhookSource | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "name": view.name,
        "isActive": view.is_active,
        **view.config.to_json(),
        "secrets": [{"hint": s.hint, "current": s.current} for s in view.secrets],
    }


def _check_name(name: str) -> str:
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME:
        message = f"name must have 1-{MAX_NAME} characters"
        raise ValidationError(message, problems=[FieldProblem(("body", "name"), message)])
    return name


def _require_secret(
    config: WebhookSourceConfig, secret: str, *, field: str = "verification.secret"
) -> None:
    problem = check_secret(config.scheme, secret)
    if problem:
        message = f"{field}: {problem}" if field != "verification.secret" else problem
        raise ValidationError(
            message, problems=[FieldProblem(("body", *field.split(".")), problem)]
        )
