"""Organizations, their units, and the resolution of a request's tenant.

Access to an entity a caller may not act for answers NOT_FOUND, never FORBIDDEN, so that ids
of other tenants cannot be probed.

Resolving a request's tenant reads the entity once per ``ENTITY_TTL`` seconds at most (every
API request resolves one); changes made through this service drop the cached entity at once,
other nodes see them within ``ENTITY_TTL``. Whether the caller may act for the entity is
decided on every request.
"""

from __future__ import annotations

from typing import Any

from junctionbox.domain.identity import Entity, Principal, TenantContext, may_act_for
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.errors import ConflictError, NotFoundError, ValidationError
from junctionbox.observability import context
from junctionbox.services import audit
from junctionbox.services.read_cache import ReadCache
from junctionbox.store.database import Database
from junctionbox.store.queries import entities as queries
from junctionbox.store.queries.entities import EntityRecord
from junctionbox.store.types import utcnow


def _entity(record: EntityRecord) -> Entity:
    return Entity(record.id, record.parent_id, record.name, record.timezone)


ENTITY_TTL = 5.0


class TenancyService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._entities: ReadCache[int, EntityRecord | None] = ReadCache(ENTITY_TTL)

    async def resolve(self, principal: Principal, org_id: int | None) -> TenantContext:
        """The tenant a request acts for. Without ``orgId``, a non-admin acts for its org."""
        if org_id is None:
            if principal.org_id is None:
                raise ValidationError("orgId query parameter is required")
            org_id = principal.org_id
        record = await self._cached(org_id)
        entity = _entity(record) if record is not None else None
        if entity is None or not may_act_for(principal, entity):
            raise NotFoundError("organization not found")
        context.bind(org_id=entity.id)
        return TenantContext(entity, principal)

    async def _cached(self, entity_id: int) -> EntityRecord | None:
        # Absence is not kept: a new entity is usable at once.
        return await self._entities.load(
            entity_id, lambda: self._read(entity_id), keep=lambda found: found is not None
        )

    async def _read(self, entity_id: int) -> EntityRecord | None:
        async with self.db.read() as conn:
            return await queries.get(conn, entity_id)

    def _forget(self, entity_id: int) -> None:
        self._entities.invalidate(lambda key, _: key == entity_id)

    async def describe(self, tenant: TenantContext) -> tuple[EntityRecord, EntityRecord, list[int]]:
        """The entity, its organization and the organization's unit ids."""
        async with self.db.read() as conn:
            entity = await queries.get(conn, tenant.entity.id)
            org = await queries.get(conn, tenant.root_org_id)
            units = await queries.unit_ids(conn, tenant.root_org_id)
        if entity is None or org is None:
            raise NotFoundError("organization not found")
        return entity, org, units

    # --- administration (ADMIN only; enforced by the API) ---

    async def list(
        self, page: PageRequest, *, parent_id: int | None = None, search: str | None = None
    ) -> Page[EntityRecord]:
        async with self.db.read() as conn:
            if parent_id is not None:
                await self._require_org(conn, parent_id)
            items, total = await queries.list_page(conn, page, parent_id=parent_id, search=search)
        return Page(items, total, page)

    async def get(self, entity_id: int, *, unit: bool) -> EntityRecord:
        async with self.db.read() as conn:
            return await _existing(conn, entity_id, unit=unit)

    async def create(
        self,
        actor: Principal,
        profile: dict[str, Any],
        *,
        entity_id: int | None,
        parent_id: int | None,
    ) -> EntityRecord:
        async with self.db.write() as conn:
            if parent_id is not None:
                await self._require_org(conn, parent_id)
            if entity_id is not None and await queries.get(conn, entity_id) is not None:
                raise ConflictError(f"id {entity_id} is already used by an organization or unit")
            now = utcnow()
            values = {
                **_profile_defaults(profile),
                "id": entity_id or await queries.next_id(conn),
                "parent_id": parent_id,
                "created_at": now,
                "updated_at": now,
            }
            record = await queries.create(conn, values)
            kind = "org_unit" if parent_id else "organization"
            await audit.record(
                conn, actor, f"{kind}.create", kind, record.id, org_id=record.id, after=record
            )
        return record

    async def update(
        self, actor: Principal, entity_id: int, changes: dict[str, Any], *, unit: bool
    ) -> EntityRecord:
        try:
            return await self._update(actor, entity_id, changes, unit=unit)
        finally:
            self._forget(entity_id)  # after the commit

    async def _update(
        self, actor: Principal, entity_id: int, changes: dict[str, Any], *, unit: bool
    ) -> EntityRecord:
        async with self.db.write() as conn:
            before = await _existing(conn, entity_id, unit=unit)
            after = await queries.update_profile(
                conn, entity_id, {**changes, "updated_at": utcnow()}
            )
            kind = "org_unit" if unit else "organization"
            await audit.record(
                conn,
                actor,
                f"{kind}.update",
                kind,
                entity_id,
                org_id=entity_id,
                before=before,
                after=after,
            )
        assert after is not None
        return after

    async def delete(self, actor: Principal, entity_id: int, *, unit: bool) -> None:
        try:
            await self._delete(actor, entity_id, unit=unit)
        finally:
            self._forget(entity_id)  # after the commit

    async def _delete(self, actor: Principal, entity_id: int, *, unit: bool) -> None:
        async with self.db.write() as conn:
            before = await _existing(conn, entity_id, unit=unit)
            if await queries.is_referenced(conn, entity_id):
                raise ConflictError("still has units, users or API keys; remove them first")
            await queries.delete_entity(conn, entity_id)
            kind = "org_unit" if unit else "organization"
            await audit.record(
                conn, actor, f"{kind}.delete", kind, entity_id, org_id=entity_id, before=before
            )

    async def _require_org(self, conn: Any, org_id: int) -> None:
        record = await queries.get(conn, org_id)
        if record is None or record.parent_id is not None:
            raise NotFoundError("organization not found")


async def _existing(conn: Any, entity_id: int, *, unit: bool) -> EntityRecord:
    record = await queries.get(conn, entity_id)
    if record is None or (record.parent_id is not None) != unit:
        raise NotFoundError("organization unit not found" if unit else "organization not found")
    return record


def _profile_defaults(profile: dict[str, Any]) -> dict[str, Any]:
    values = {field: profile.get(field) for field in queries.PROFILE_FIELDS}
    values["tags"] = values["tags"] or []
    return values
