"""Login throttling: password guessing is slowed per client address and per account.

Every login attempt (API or console) takes a token from two buckets before the password is
checked: one for the client address and one for the account named in the request. A full
bucket is a burst of ``per_minute`` attempts, refilled at ``per_minute`` per minute; when
either is empty the attempt is refused with 429 and ``Retry-After`` without checking the
password, so an attacker cannot use the throttle's answers to learn anything, and argon2's
cost is not spent on refused attempts.

The account bucket's key is a digest of the lower-cased e-mail: what the backend stores
(Redis keys included) names no address. The buckets live in the API rate limits' backend, so
with Redis every node counts together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from junctionbox.domain.token_bucket import BucketConfig
from junctionbox.errors import RateLimitedError
from junctionbox.services.rate_limit_backends import RateDecision, RateLimitBackend

_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class LoginLimits:
    per_ip_per_minute: int
    per_account_per_minute: int


class LoginThrottle:
    def __init__(self, backend: RateLimitBackend, limits: LoginLimits) -> None:
        self.backend = backend
        self.limits = limits
        self._per_ip = BucketConfig.from_window(limits.per_ip_per_minute, _WINDOW_SECONDS)
        self._per_account = BucketConfig.from_window(limits.per_account_per_minute, _WINDOW_SECONDS)

    async def admit(self, client_ip: str | None, email: str) -> None:
        """Take one attempt from the address's and the account's buckets, or raise 429."""
        by_ip = await self.backend.hit(f"login:ip:{client_ip or 'unknown'}", self._per_ip)
        if not by_ip.allowed:
            raise _refused(by_ip, "from this address")
        account = f"login:account:{_account_key(email)}"
        by_account = await self.backend.hit(account, self._per_account)
        if not by_account.allowed:
            raise _refused(by_account, "for this account")


def _account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _refused(decision: RateDecision, scope: str) -> RateLimitedError:
    return RateLimitedError(
        f"too many login attempts {scope}: try again later", headers=decision.headers()
    )
