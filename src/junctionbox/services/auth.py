"""Login, logout and turning a credential (JWT or API key) into a Principal.

What a credential stands for is read from the database (and a token's signature checked)
and then kept for a few seconds (``read_cache.CREDENTIAL_TTL``) so that a busy producer does
not cost a read per request. Changes made on this node take effect at once: logout and API
key revocation drop the cached entry, and any change to a user (deactivation, role,
deletion) drops the cached tokens. Other nodes see such changes within the TTL. Token expiry
is checked on every request.
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
    TokenClaims,
    TokenSigner,
    hash_api_key,
)
from junctionbox.services.login_throttle import LoginThrottle
from junctionbox.services.read_cache import CachedKey, CredentialCaches
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
    def __init__(
        self,
        db: Database,
        hasher: PasswordHasher,
        signer: TokenSigner,
        caches: CredentialCaches,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.signer = signer
        self.caches = caches
        self.throttle = throttle

    async def login(
        self, email: str, password: str, client_ip: str | None = None
    ) -> tuple[IssuedToken, UserRecord]:
        """A token for valid credentials; 401 otherwise, 429 when the throttle refuses."""
        if self.throttle is not None:
            await self.throttle.admit(client_ip, email)
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
        try:
            async with self.db.write() as conn:
                await tokens.revoke(conn, claims.jti, claims.expires_at)
                await tokens.purge_expired(conn, utcnow())
        finally:
            self.caches.tokens.invalidate(lambda _, cached: cached[0].jti == claims.jti)

    async def authenticate_token(self, token: str) -> Principal:
        claims, found = await self.caches.tokens.load(token, lambda: self._verify_token(token))
        if claims.expires_at <= utcnow():  # kept moments ago, but expiry still counts
            raise UnauthorizedError("token expired")
        return found

    async def _verify_token(self, token: str) -> tuple[TokenClaims, Principal]:
        claims = self.signer.verify(token)
        async with self.db.read() as conn:
            user = await users.get(conn, claims.subject)
            revoked = await tokens.is_revoked(conn, claims.jti)
        if user is None or not user.is_active or revoked:
            raise UnauthorizedError("invalid token")
        return claims, principal_of(user)

    async def authenticate_api_key(self, key: str) -> Principal:
        if not key.startswith(API_KEY_PREFIX):
            raise UnauthorizedError("invalid API key")
        digest = hash_api_key(key)
        cached = await self.caches.keys.load(
            digest, lambda: self._find_key(digest), keep=lambda found: found is not None
        )
        if cached is None:
            raise UnauthorizedError("invalid API key")
        await self._touch(cached)
        return cached.principal

    async def _find_key(self, digest: str) -> CachedKey | None:
        async with self.db.read() as conn:
            record = await api_keys.find_by_hash(conn, digest)
        if record is None or record.revoked_at is not None:
            return None
        principal = Principal(PrincipalKind.API_KEY, record.id, Role.API_KEY, record.org_id)
        return CachedKey(principal, record.last_used_at)

    async def _touch(self, cached: CachedKey) -> None:
        now = utcnow()
        if cached.last_used_at is not None and now - cached.last_used_at <= _TOUCH_EVERY:
            return
        cached.last_used_at = now  # first, so that concurrent requests do not all write
        async with self.db.write() as conn:
            await api_keys.touch(conn, cached.principal.id, now)

    async def current_user(self, principal: Principal) -> UserRecord | None:
        if principal.kind is PrincipalKind.API_KEY:
            return None
        async with self.db.read() as conn:
            return await users.get(conn, principal.id)
