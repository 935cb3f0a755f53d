"""User accounts: ADMIN (all organizations) and USER (one organization and its units)."""

from __future__ import annotations

from typing import Any

from junctionbox.domain.identity import Principal, Role
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.errors import ConflictError, NotFoundError, ValidationError
from junctionbox.services import audit
from junctionbox.services.credentials import PasswordHasher
from junctionbox.store.database import Database
from junctionbox.store.queries import entities, users
from junctionbox.store.queries.users import UserRecord
from junctionbox.store.types import utcnow

MIN_PASSWORD_LENGTH = 8


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")


class UserService:
    def __init__(self, db: Database, hasher: PasswordHasher) -> None:
        self.db = db
        self.hasher = hasher

    async def create(
        self, actor: Principal | None, *, email: str, password: str, role: Role, org_id: int | None
    ) -> UserRecord:
        check_password(password)
        _check_role_org(role, org_id)
        password_hash = await self.hasher.hash(password)
        async with self.db.write() as conn:
            await _require_org(conn, org_id)
            if await users.get_by_email(conn, email) is not None:
                raise ConflictError("a user with this email already exists")
            now = utcnow()
            record = await users.create(
                conn,
                {
                    "id": new_id("usr"),
                    "email": email.lower(),
                    "password_hash": password_hash,
                    "role": role.value,
                    "org_id": org_id,
                    "is_active": True,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await audit.record(
                conn, actor, "user.create", "user", record.id, org_id=org_id, after=record
            )
        return record

    async def get(self, user_id: str) -> UserRecord:
        async with self.db.read() as conn:
            return await _existing(conn, user_id)

    async def list(
        self,
        page: PageRequest,
        *,
        org_id: int | None = None,
        role: Role | None = None,
        search: str | None = None,
    ) -> Page[UserRecord]:
        async with self.db.read() as conn:
            items, total = await users.list_page(
                conn, page, org_id=org_id, role=role.value if role else None, search=search
            )
        return Page(items, total, page)

    async def update(self, actor: Principal, user_id: str, changes: dict[str, Any]) -> UserRecord:
        values = dict(changes)
        if "password" in values:
            password = values.pop("password")
            check_password(password)
            # Hashed before the write transaction: argon2 is slow and must not hold the lock.
            values["password_hash"] = await self.hasher.hash(password)
        async with self.db.write() as conn:
            before = await _existing(conn, user_id)
            role = Role(values.get("role", before.role))
            org_id = values.get("org_id", before.org_id)
            if role is Role.ADMIN:
                values["org_id"] = org_id = None
            _check_role_org(role, org_id)
            await _require_org(conn, org_id)
            if "email" in values:
                values["email"] = values["email"].lower()
                other = await users.get_by_email(conn, values["email"])
                if other is not None and other.id != user_id:
                    raise ConflictError("a user with this email already exists")
            await users.update_user(conn, user_id, {**values, "updated_at": utcnow()})
            after = await users.get(conn, user_id)
            await audit.record(
                conn,
                actor,
                "user.update",
                "user",
                user_id,
                org_id=org_id,
                before=before,
                after=after,
            )
        assert after is not None
        return after

    async def delete(self, actor: Principal, user_id: str) -> None:
        if actor.id == user_id:
            raise ConflictError("you cannot delete your own account")
        async with self.db.write() as conn:
            before = await _existing(conn, user_id)
            await users.delete_user(conn, user_id)
            await audit.record(
                conn, actor, "user.delete", "user", user_id, org_id=before.org_id, before=before
            )


async def _existing(conn: Any, user_id: str) -> UserRecord:
    record = await users.get(conn, user_id)
    if record is None:
        raise NotFoundError("user not found")
    return record


def _check_role_org(role: Role, org_id: int | None) -> None:
    if role is Role.API_KEY:
        raise ValidationError("role must be ADMIN or USER; API keys are created separately")
    if role is Role.USER and org_id is None:
        raise ValidationError("a USER belongs to an organization: orgId is required")
    if role is Role.ADMIN and org_id is not None:
        raise ValidationError("an ADMIN belongs to no organization: omit orgId")


async def _require_org(conn: Any, org_id: int | None) -> None:
    if org_id is None:
        return
    record = await entities.get(conn, org_id)
    if record is None or record.parent_id is not None:
        raise NotFoundError("organization not found")
