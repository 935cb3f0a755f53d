"""Pure-ASGI middleware applying the API rate limits (``services/api_rate_limits.py``).

A refused request gets 429 in the error envelope with ``Retry-After`` and
``X-RateLimit-Limit/Remaining/Reset`` (seconds until the bucket is full again); an allowed
one carries the ``X-RateLimit-*`` headers of the tightest limit that counted it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junctionbox.api.errors import envelope, error_response
from junctionbox.errors import JunctionboxError
from junctionbox.services.api_rate_limits import ApiRateLimiter
from junctionbox.services.rate_limit_backends import RateDecision


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope.get("headers", []))


def _bearer(value: bytes | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def refused(decision: RateDecision, what: str):  # type: ignore[no-untyped-def]
    return envelope(
        429, "RATE_LIMITED", f"rate limit exceeded ({what})", headers=decision.headers()
    )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: ApiRateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.applies_to(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            decision = await self._decide(scope)
        except JunctionboxError as exc:  # the backend failing closed: 503
            await error_response(exc)(scope, receive, send)
            return
        if isinstance(decision, tuple):
            await refused(*decision)(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in decision.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A more specific limit (a gateway route's) already set its headers: keep them.
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _decide(self, scope: Scope) -> RateDecision | tuple[RateDecision, str]:
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        by_ip = await self.limiter.check_ip(ip)
        if not by_ip.allowed:
            return by_ip, "per client IP"
        headers = _headers(scope)
        api_key = headers.get(b"x-api-key")
        by_tenant = await self.limiter.check_tenant(
            scope["path"],
            api_key.decode("latin-1") if api_key else None,
            _bearer(headers.get(b"authorization")),
        )
        if by_tenant is None:
            return by_ip
        if not by_tenant.allowed:
            return by_tenant, "per tenant"
        return by_tenant if by_tenant.remaining <= by_ip.remaining else by_ip
