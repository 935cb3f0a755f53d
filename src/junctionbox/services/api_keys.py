"""API keys for machine clients: scoped to one organization, shown once, stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from junctionbox.domain.identity import Principal
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.errors import NotFoundError
from junctionbox.services import audit
from junctionbox.services.credentials import generate_api_key
from junctionbox.services.read_cache import CredentialCaches
from junctionbox.store.database import Database
from junctionbox.store.queries import api_keys, entities
from junctionbox.store.queries.api_keys import ApiKeyRecord
from junctionbox.store.types import utcnow


@dataclass(frozen=True)
class CreatedApiKey:
    record: ApiKeyRecord
    key: str


class ApiKeyService:
    def __init__(self, db: Database, credentials: CredentialCaches) -> None:
        self.db = db
        # Shared with AuthService (the composition root passes one object to both), so that
        # a revocation here drops the key AuthService has cached.
        self.credentials = credentials

    async def create(self, actor: Principal | None, *, org_id: int, name: str) -> CreatedApiKey:
        material = generate_api_key()
        async with self.db.write() as conn:
            org = await entities.get(conn, org_id)
            if org is None or org.parent_id is not None:
                raise NotFoundError("organization not found")
            record = await api_keys.create(
                conn,
                {
                    "id": new_id("key"),
                    "org_id": org_id,
                    "name": name,
                    "prefix": material.prefix,
                    "key_hash": material.key_hash,
                    "created_by": actor.id if actor else None,
                    "created_at": utcnow(),
                },
            )
            await audit.record(
                conn, actor, "api_key.create", "api_key", record.id, org_id=org_id, after=record
            )
        return CreatedApiKey(record=record, key=material.key)

    async def list(
        self, page: PageRequest, *, org_id: int | None = None, include_revoked: bool = False
    ) -> Page[ApiKeyRecord]:
        async with self.db.read() as conn:
            items, total = await api_keys.list_page(
                conn, page, org_id=org_id, include_revoked=include_revoked
            )
        return Page(items, total, page)

    async def revoke(self, actor: Principal, key_id: str) -> ApiKeyRecord:
        """Revoke the key; this node refuses it at once, others within CREDENTIAL_TTL."""
        try:
            return await self._revoke(actor, key_id)
        finally:
            # After the commit (and on failure too, harmlessly): drop the cached key here.
            self.credentials.forget_api_key(key_id)

    async def _revoke(self, actor: Principal, key_id: str) -> ApiKeyRecord:
        async with self.db.write() as conn:
            before = await api_keys.get(conn, key_id)
            if before is None:
                raise NotFoundError("API key not found")
            if before.revoked_at is None:
                await api_keys.revoke(conn, key_id, utcnow())
            after = await api_keys.get(conn, key_id)
            await audit.record(
                conn,
                actor,
                "api_key.revoke",
                "api_key",
                key_id,
                org_id=before.org_id,
                before=before,
                after=after,
            )
        assert after is not None
        return after
