"""Inbound integrations: CRUD, versions, enable/disable (seed 003 INBOUND).

Saving validates more than the shapes ``parse_inbound`` checks, the same way outbound
integrations are saved: transformations are compiled, literal addresses are checked against
the SSRF rules, and outgoing auth options are checked (``validate_auth``). Every change
writes a version (``integration_versions``) and is audited, and tells the proxy to drop what
it cached of the tenant's integration (``on_change``), so the next call uses the new config.

Credentials (outgoing and inbound) are write-only: responses mask them; a masked value sent
back, or a credential left out while the auth type stays the same, keeps the stored one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.inbound import (
    InboundIntegration,
    inbound_document,
    masked_inbound_config,
    parse_inbound,
    restore_masked_inbound,
    with_inbound_secrets,
)
from junctionbox.domain.netguard import parse_allowlist
from junctionbox.domain.outbound import (
    OutboundIntegration,
    Transformation,
    masked_auth_config,
    restore_masked,
)
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.secretbox import SecretBox
from junctionbox.errors import (
    ConflictError,
    ExpressionCompileError,
    FieldProblem,
    NotFoundError,
    ValidationError,
)
from junctionbox.expr import compile_transformer
from junctionbox.services import audit
from junctionbox.services.integrations import (
    VersionInfo,
    address_problems,
    merge_patch,
    raise_problems,
    upper_name,
)
from junctionbox.services.outgoing_auth import validate_auth
from junctionbox.settings import Settings
from junctionbox.store.database import Database
from junctionbox.store.queries import inbound as queries
from junctionbox.store.queries import integrations as versions
from junctionbox.store.queries.inbound import StoredInbound
from junctionbox.store.types import utcnow

RESOURCE: Final = "inbound_integration"
READ_ONLY_FIELDS: Final = frozenset(
    {"id", "orgId", "version", "createdAt", "updatedAt", "createdBy", "direction", "proxyUrl"}
)

ChangeListener = Callable[[int, str], None]  # (org_id, type) whose cached config is stale


def inbound_view(stored: StoredInbound) -> dict[str, Any]:
    """The API form: the document with credentials masked, plus the store's fields."""
    document = inbound_document(stored.integration)
    document["outgoingAuthConfig"] = masked_auth_config(stored.integration.auth)
    document["inboundAuthConfig"] = masked_inbound_config(stored.integration.inbound_auth)
    return {
        "id": stored.id,
        "orgId": stored.org_id,
        "version": stored.version,
        **document,
        "proxyUrl": f"/api/v1/integrations/{stored.integration.type}?orgId={stored.org_id}",
        "createdBy": stored.created_by,
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
    }


def expression_problems(integration: InboundIntegration) -> list[FieldProblem]:
    """Compile both transformations (SIMPLE ``lookup`` resolves at call time)."""
    problems: list[FieldProblem] = []
    for side, transformation in (
        ("request", integration.request_transformation),
        ("response", integration.response_transformation),
    ):
        if transformation.mode is None:
            continue
        simple = transformation.mode == "SIMPLE"
        config: Any = list(transformation.field_mappings) if simple else transformation.script
        where = ("body", f"{side}FieldMappings" if simple else f"{side}TransformScript")
        try:
            compile_transformer(transformation.mode, config or "", lookups=None, loc=where)
        except ExpressionCompileError as exc:
            problems.extend(exc.problems)
    return problems


def _as_outbound(integration: InboundIntegration) -> OutboundIntegration:
    """The fields the outbound address check reads (target URL, OAuth2 token URL)."""
    return OutboundIntegration(
        name=integration.name,
        event_type="*",
        target_url=integration.target_url,
        auth=integration.auth,
        transformation=Transformation(),
    )


def _full_document(stored: StoredInbound) -> dict[str, Any]:
    i = stored.integration
    return with_inbound_secrets(inbound_document(i), i.auth.secrets, i.inbound_auth.secrets)


class InboundIntegrationService:
    """Tenant-scoped configuration of inbound integrations (audited, versioned)."""

    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        settings: Settings,
        *,
        on_change: ChangeListener | None = None,
        clock: Any = utcnow,
    ) -> None:
        self.db = db
        self.secretbox = secretbox
        self.allowlist = parse_allowlist(settings.ssrf_allowlist)
        self.on_change = on_change
        self.clock = clock

    def validate(self, body: Mapping[str, Any]) -> InboundIntegration:
        if not isinstance(body, Mapping):
            raise ValidationError("the body must be a JSON object")
        integration = parse_inbound({k: v for k, v in body.items() if k not in READ_ONLY_FIELDS})
        raise_problems(
            expression_problems(integration)
            + address_problems(_as_outbound(integration), self.allowlist)
            + validate_auth(integration.auth)
        )
        return integration

    async def create(self, tenant: TenantContext, body: Mapping[str, Any]) -> StoredInbound:
        integration = self.validate(body)
        async with self.db.write() as conn:
            await self._require_free_type(conn, tenant.org_id, integration.type, None)
            stored = await queries.insert_inbound(
                conn,
                self.secretbox,
                integration_id=new_id(queries.INBOUND_ID_PREFIX),
                org_id=tenant.org_id,
                integration=integration,
                created_by=tenant.principal.id,
                now=self.clock(),
            )
            await self._audit(conn, tenant, "create", stored, after=stored)
        self._changed(stored.org_id, stored.integration.type)
        return stored

    async def get(self, tenant: TenantContext, integration_id: str) -> StoredInbound:
        async with self.db.read() as conn:
            return await self._existing(conn, tenant, integration_id)

    async def replace(
        self, tenant: TenantContext, integration_id: str, body: Mapping[str, Any]
    ) -> StoredInbound:
        """A full update (PUT): omitted ``isActive`` keeps the state; omitted or masked
        credentials keep the stored ones while their auth type stays the same."""

        def build(current: StoredInbound) -> InboundIntegration:
            document = dict(body)
            if document.get("isActive") is None:
                document["isActive"] = current.is_active
            return self.validate(self._restored(document, body, current))

        return await self._change(tenant, integration_id, build, "UPDATED")

    async def patch(
        self, tenant: TenantContext, integration_id: str, changes: Mapping[str, Any]
    ) -> StoredInbound:
        """``changes`` merged into the current document (RFC 7396 for the option objects)."""

        def build(current: StoredInbound) -> InboundIntegration:
            full = _full_document(current)
            merged = merge_patch(full, {k: v for k, v in changes.items() if k != "direction"})
            if "inboundAuthConfig" in changes and isinstance(changes["inboundAuthConfig"], Mapping):
                merged["inboundAuthConfig"] = {
                    **(full.get("inboundAuthConfig") or {}),
                    **changes["inboundAuthConfig"],
                }
            kind = changes.get("inboundAuthType")
            if kind is not None and upper_name(kind) != upper_name(full.get("inboundAuthType")):
                merged["inboundAuthConfig"] = changes.get("inboundAuthConfig")
            return self.validate(self._restored(merged, merged, current))

        return await self._change(tenant, integration_id, build, "UPDATED")

    def _restored(
        self, document: dict[str, Any], body: Mapping[str, Any], current: StoredInbound
    ) -> dict[str, Any]:
        i = current.integration
        outgoing_type = upper_name(body.get("outgoingAuthType") or "NONE")
        document["outgoingAuthConfig"] = restore_masked(
            body.get("outgoingAuthConfig"),
            i.auth.secrets,
            keep_omitted=outgoing_type == i.auth.type.value,
        )
        inbound_type = upper_name(body.get("inboundAuthType") or "NONE")
        restored, problems = restore_masked_inbound(
            body.get("inboundAuthConfig"),
            i.inbound_auth.secrets,
            keep_omitted=inbound_type == i.inbound_auth.type.value,
        )
        raise_problems(problems)
        document["inboundAuthConfig"] = restored
        return document

    async def set_active(
        self, tenant: TenantContext, integration_id: str, active: bool
    ) -> StoredInbound:
        async with self.db.write() as conn:
            current = await self._existing(conn, tenant, integration_id)
            if current.is_active == active:
                return current
            changed = replace(current.integration, is_active=active)
            stored = await self._save(
                conn, tenant, current, changed, "ENABLED" if active else "DISABLED"
            )
        self._changed(stored.org_id, stored.integration.type)
        return stored

    async def delete(self, tenant: TenantContext, integration_id: str) -> None:
        async with self.db.write() as conn:
            current = await self._existing(conn, tenant, integration_id)
            await queries.delete_inbound(conn, current.id, current.org_id)
            await self._audit(conn, tenant, "delete", current, before=current)
        self._changed(current.org_id, current.integration.type)

    async def versions(self, tenant: TenantContext, integration_id: str) -> list[VersionInfo]:
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            rows = await versions.versions_of(conn, current.id, current.org_id)
        return [
            VersionInfo(r["version"], r["change"], r["created_at"], r["created_by"]) for r in rows
        ]

    async def version(
        self, tenant: TenantContext, integration_id: str, version: int
    ) -> tuple[VersionInfo, dict[str, Any]]:
        """One version's info and document (credentials masked)."""
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            row = await versions.load_version(conn, current.id, current.org_id, version)
        if row is None:
            raise NotFoundError(f"version {version} of this integration not found")
        outgoing, inbound = queries.open_secrets(self.secretbox, current.id, row["sealed_secrets"])
        old = parse_inbound(with_inbound_secrets(row["config"], outgoing, inbound))
        document = inbound_document(old)
        document["outgoingAuthConfig"] = masked_auth_config(old.auth)
        document["inboundAuthConfig"] = masked_inbound_config(old.inbound_auth)
        info = VersionInfo(row["version"], row["change"], row["created_at"], row["created_by"])
        return info, document

    async def restore(
        self, tenant: TenantContext, integration_id: str, version: int
    ) -> StoredInbound:
        """A new version with an old configuration and the credentials it had then (as the
        outbound integrations' restore). The active switch stays as it is now."""
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            row = await versions.load_version(conn, current.id, current.org_id, version)
        if row is None:
            raise NotFoundError(f"version {version} of this integration not found")
        outgoing, inbound = queries.open_secrets(self.secretbox, current.id, row["sealed_secrets"])
        document = with_inbound_secrets(dict(row["config"]), outgoing, inbound)

        def build(now: StoredInbound) -> InboundIntegration:
            return self.validate({**document, "isActive": now.integration.is_active})

        return await self._change(tenant, integration_id, build, f"RESTORED:{version}")

    # --- helpers ---

    async def _change(
        self,
        tenant: TenantContext,
        integration_id: str,
        build: Callable[[StoredInbound], InboundIntegration],
        change: str,
    ) -> StoredInbound:
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
        integration = build(current)
        async with self.db.write() as conn:
            stored = await self._save(conn, tenant, current, integration, change)
        self._changed(current.org_id, current.integration.type)
        self._changed(stored.org_id, stored.integration.type)
        return stored

    async def _save(
        self,
        conn: Any,
        tenant: TenantContext,
        current: StoredInbound,
        integration: InboundIntegration,
        change: str,
    ) -> StoredInbound:
        if integration.type != current.integration.type:
            await self._require_free_type(conn, current.org_id, integration.type, current.id)
        stored = await queries.save_inbound(
            conn,
            self.secretbox,
            current,
            integration,
            change=change,
            actor=tenant.principal.id,
            now=self.clock(),
        )
        action = {"ENABLED": "enable", "DISABLED": "disable"}.get(change, "update")
        if change.startswith("RESTORED"):
            action = "restore"
        await self._audit(conn, tenant, action, stored, before=current, after=stored)
        return stored

    async def _existing(
        self, conn: Any, tenant: TenantContext, integration_id: str
    ) -> StoredInbound:
        found = await queries.load_inbound(
            conn, self.secretbox, integration_id, org_ids=(tenant.org_id,)
        )
        if found is None:
            raise NotFoundError("inbound integration not found")
        return found

    async def _require_free_type(
        self, conn: Any, org_id: int, kind: str, integration_id: str | None
    ) -> None:
        if await queries.type_taken(conn, org_id, kind, integration_id):
            raise ConflictError(f"an inbound integration of type {kind!r} already exists")

    async def _audit(
        self,
        conn: Any,
        tenant: TenantContext,
        action: str,
        subject: StoredInbound,
        *,
        before: StoredInbound | None = None,
        after: StoredInbound | None = None,
    ) -> None:
        await audit.record(
            conn,
            tenant.principal,
            f"inbound_integration.{action}",
            RESOURCE,
            subject.id,
            org_id=subject.org_id,
            before=_audit_view(before),
            after=_audit_view(after),
        )

    def _changed(self, org_id: int, kind: str) -> None:
        if self.on_change is not None:
            self.on_change(org_id, kind)

    # Last in the class: a method named ``list`` would shadow the builtin in annotations.
    async def list(
        self,
        tenant: TenantContext,
        page: PageRequest,
        *,
        is_active: bool | None = None,
        kind: str | None = None,
        search: str | None = None,
    ) -> Page[StoredInbound]:
        async with self.db.read() as conn:
            items, total = await queries.list_inbound(
                conn,
                self.secretbox,
                page,
                org_id=tenant.org_id,
                is_active=is_active,
                kind=kind,
                search=search,
            )
        return Page(items, total, page)


def _audit_view(stored: StoredInbound | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    view = inbound_view(stored)
    return {k: v for k, v in view.items() if k not in ("createdAt", "updatedAt")}
