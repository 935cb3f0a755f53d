"""The API rate limits (``services/api_rate_limits.py``) as the edge middleware applies them.

A refused request gets 429 in the error envelope with ``Retry-After`` and
``X-RateLimit-Limit/Remaining/Reset`` (seconds until the bucket is full again); an allowed
one carries the ``X-RateLimit-*`` headers of the tightest limit that counted it.
"""

from __future__ import annotations

from typing import Protocol

from starlette.responses import Response
from starlette.types import Scope

from junctionbox.api.deps import bearer_of
from junctionbox.api.errors import envelope
from junctionbox.services.api_rate_limits import ApiRateLimiter
from junctionbox.services.rate_limit_backends import RateDecision


class Headed(Protocol):
    added: list[tuple[bytes, bytes]]  # headers the response gets unless it has them


def refused(decision: RateDecision, what: str) -> Response:
    return envelope(
        429, "RATE_LIMITED", f"rate limit exceeded ({what})", headers=decision.headers()
    )


class RateLimits:
    def __init__(self, limiter: ApiRateLimiter) -> None:
        self.limiter = limiter

    async def check(
        self, scope: Scope, path: str, headers: dict[bytes, bytes], response: Headed
    ) -> Response | None:
        """The 429 to answer, or None: then ``response`` gets the ``X-RateLimit-*`` headers.
        A backend failing closed raises (503)."""
        if not self.limiter.applies_to(path):
            return None
        decision = await self._decide(scope, path, headers)
        if isinstance(decision, tuple):
            return refused(*decision)
        response.added = [(k.encode(), v.encode()) for k, v in decision.headers().items()]
        return None

    async def _decide(
        self, scope: Scope, path: str, headers: dict[bytes, bytes]
    ) -> RateDecision | tuple[RateDecision, str]:
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        by_ip = await self.limiter.check_ip(ip)
        if not by_ip.allowed:
            return by_ip, "per client IP"
        api_key = headers.get(b"x-api-key")
        by_tenant = await self.limiter.check_tenant(
            path,
            api_key.decode("latin-1") if api_key else None,
            bearer_of(headers.get(b"authorization")),
        )
        if by_tenant is None:
            return by_ip
        if not by_tenant.allowed:
            return by_tenant, "per tenant"
        return by_tenant if by_tenant.remaining <= by_ip.remaining else by_ip
