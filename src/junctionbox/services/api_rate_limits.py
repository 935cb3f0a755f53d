"""Seed 003's API rate limits: per client IP before authentication, per tenant after it.

* Per IP (default 1000/min): every request except the health probes, gateway routes
  included, before any credential is looked at (it is what stops password guessing).
* Per tenant (default 100/min): requests to ``/api/v1/…`` that carry a valid credential,
  counted against the caller's organization (its units share it). ADMIN users have no
  organization: each is counted on its own. A request whose credential is invalid is not
  counted here (the route answers 401, and the IP limit already counted it).

Both use the configured backend (memory or Redis), so in cluster mode with Redis the limits
hold across nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from junctionbox.domain.identity import Principal
from junctionbox.domain.token_bucket import BucketConfig
from junctionbox.errors import JunctionboxError
from junctionbox.services.auth import AuthService
from junctionbox.services.rate_limit_backends import RateDecision, RateLimitBackend

EXEMPT_PREFIXES = ("/api/v1/health",)
TENANT_PREFIX = "/api/v1/"


@dataclass(frozen=True)
class ApiLimits:
    enabled: bool
    per_ip: BucketConfig
    per_tenant: BucketConfig

    @classmethod
    def per_minute(cls, enabled: bool, ip: int, tenant: int) -> ApiLimits:
        return cls(
            enabled, BucketConfig.from_window(ip, 60.0), BucketConfig.from_window(tenant, 60.0)
        )


class ApiRateLimiter:
    def __init__(self, backend: RateLimitBackend, auth: AuthService, limits: ApiLimits) -> None:
        self.backend = backend
        self._auth = auth
        self.limits = limits

    def applies_to(self, path: str) -> bool:
        return self.limits.enabled and not path.startswith(EXEMPT_PREFIXES)

    async def check_ip(self, ip: str) -> RateDecision:
        return await self.backend.hit(f"ip:{ip}", self.limits.per_ip)

    async def check_tenant(
        self, path: str, api_key: str | None, bearer: str | None
    ) -> RateDecision | None:
        """The tenant's decision, or None when the request is not counted per tenant."""
        if not path.startswith(TENANT_PREFIX) or not (api_key or bearer):
            return None
        caller = await self._caller(api_key, bearer)
        if caller is None:
            return None
        key = f"tenant:{caller.org_id}" if caller.org_id is not None else f"admin:{caller.id}"
        return await self.backend.hit(key, self.limits.per_tenant)

    async def _caller(self, api_key: str | None, bearer: str | None) -> Principal | None:
        try:
            if api_key:
                return await self._auth.authenticate_api_key(api_key)
            assert bearer is not None
            return await self._auth.authenticate_token(bearer)
        except JunctionboxError:
            return None  # the route itself answers 401
