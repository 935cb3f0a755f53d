"""Passwords (argon2id), login tokens (JWT, algorithm pinned) and API key material."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from argon2 import PasswordHasher as Argon2Hasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from junctionbox.domain.ids import new_id
from junctionbox.domain.secretbox import derive_key
from junctionbox.errors import UnauthorizedError

API_KEY_PREFIX = "jbk_"
_DISPLAY_PREFIX_LENGTH = 12
_JWT_ALGORITHM = "HS256"
_ISSUER = "junctionbox"


class PasswordHasher:
    """argon2id in a worker thread, so hashing never stalls the event loop."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65_536) -> None:
        self._hasher = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified when the email is unknown, so both paths take the same time.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash or self._decoy, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    jti: str
    expires_at: datetime


class TokenSigner:
    """HS256 tokens with a key derived for this purpose only; other algorithms are refused."""

    def __init__(self, secret_key: str, ttl: timedelta) -> None:
        self._key = derive_key(secret_key, "jwt")
        self.ttl = ttl

    def issue(
        self, subject: str, now: datetime, extra: dict[str, Any] | None = None
    ) -> IssuedToken:
        jti = new_id("tok")
        expires = now + self.ttl
        claims = {
            "sub": subject,
            "jti": jti,
            "iss": _ISSUER,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            **(extra or {}),
        }
        token = jwt.encode(claims, self._key, algorithm=_JWT_ALGORITHM)
        return IssuedToken(token=token, jti=jti, expires_at=expires)

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_JWT_ALGORITHM],
                issuer=_ISSUER,
                options={"require": ["sub", "jti", "exp", "iat", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise UnauthorizedError("invalid token") from exc
        return TokenClaims(
            subject=str(claims["sub"]),
            jti=str(claims["jti"]),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )


@dataclass(frozen=True)
class NewApiKey:
    key: str
    prefix: str
    key_hash: str


def generate_api_key() -> NewApiKey:
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(key=key, prefix=key[:_DISPLAY_PREFIX_LENGTH], key_hash=hash_api_key(key))


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits, so a plain digest is safe and lets us find a key by hash.
    return hashlib.sha256(key.encode()).hexdigest()
