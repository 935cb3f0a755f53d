"""Login, logout and turning a credential (JWT or API key) into a Principal.

Every request re-reads the user or key, so deactivation, role changes and revocation take
effect at once rather than when a token expires.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from junctionbox.domain.identity import Principal, PrincipalKind, Role
from junctionbox.errors import UnauthorizedError
from junctionbox.services.credentials import (
    API_KEY_PREFIX,
    IssuedToken,
    PasswordHasher,
    TokenSigner,
    hash_api_key,
)
from junctionbox.store.database import Database
from junctionbox.store.queries import api_keys, tokens, users
from junctionbox.store.queries.users import UserRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
# last_used_at is a hint for operators; writing it on every call would make reads into writes.
_TOUCH_EVERY = timedelta(seconds=60)
_BAD_LOGIN = "invalid email or password"


def principal_of(user: UserRecord) -> Principal:
    return Principal(
        kind=PrincipalKind.USER,
        id=user.id,
        role=Role(user.role),
        org_id=user.org_id,
        email=user.email,
    )


class AuthService:
    def __init__(self, db: Database, hasher: PasswordHasher, signer: TokenSigner) -> None:
        self.db = db
        self.hasher = hasher
        self.signer = signer

    async def login(self, email: str, password: str) -> tuple[IssuedToken, UserRecord]:
        async with self.db.read() as conn:
            user = await users.get_by_email(conn, email)
        valid = await self.hasher.verify(user.password_hash if user else None, password)
        if user is None or not valid or not user.is_active:
            log.info("login refused", extra={"reason": "bad credentials or inactive"})
            raise UnauthorizedError(_BAD_LOGIN)
        now = utcnow()
        async with self.db.write() as conn:
            await users.update_user(conn, user.id, {"last_login_at": now})
        issued = self.signer.issue(user.id, now, {"role": user.role, "org": user.org_id})
        return issued, user

    async def logout(self, token: str) -> None:
        claims = self.signer.verify(token)
        async with self.db.write() as conn:
            await tokens.revoke(conn, claims.jti, claims.expires_at)
            await tokens.purge_expired(conn, utcnow())

    async def authenticate_token(self, token: str) -> Principal:
        claims = self.signer.verify(token)
        async with self.db.read() as conn:
            user = await users.get(conn, claims.subject)
            revoked = await tokens.is_revoked(conn, claims.jti)
        if user is None or not user.is_active or revoked:
            raise UnauthorizedError("invalid token")
        return principal_of(user)

    async def authenticate_api_key(self, key: str) -> Principal:
        if not key.startswith(API_KEY_PREFIX):
            raise UnauthorizedError("invalid API key")
        async with self.db.read() as conn:
            record = await api_keys.find_by_hash(conn, hash_api_key(key))
        if record is None or record.revoked_at is not None:
            raise UnauthorizedError("invalid API key")
        now = utcnow()
        if record.last_used_at is None or now - record.last_used_at > _TOUCH_EVERY:
            async with self.db.write() as conn:
                await api_keys.touch(conn, record.id, now)
        return Principal(PrincipalKind.API_KEY, record.id, Role.API_KEY, record.org_id)

    async def current_user(self, principal: Principal) -> UserRecord | None:
        if principal.kind is PrincipalKind.API_KEY:
            return None
        async with self.db.read() as conn:
            return await users.get(conn, principal.id)
