"""Serving gateway routes: ``/gw/{orgId}/{path}`` (pure ASGI, the innermost middleware of
``api/app.py``'s stack).

The tenant is the first path segment (its numeric ``orgId``), so two tenants' routes can
never answer for each other, whatever their patterns. Per request, in order: path safety,
route match (404 / 405), HTTPS and IP rules (403), CORS preflight, authentication (401),
authorization (403), per-route and per-client rate limits (429), the response cache, the
request transformation, the upstream call through the guarded client (502 on failure, 504
on timeout), the response transformation, then deprecation, CORS and cache headers. Without
a response transformation or caching the upstream body streams through unbuffered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.trace import SpanKind, get_current_span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junctionbox.api.errors import error_response
from junctionbox.api.middleware import read_body
from junctionbox.connectors.http_client import (
    OutboundNetworkError,
    OutboundTimeoutError,
    StreamedResponse,
)
from junctionbox.domain.gateway import safe_request_path
from junctionbox.domain.netguard import TargetRefusedError
from junctionbox.domain.retry import ErrorCategory
from junctionbox.errors import (
    ForbiddenError,
    JunctionboxError,
    NotFoundError,
    RateLimitedError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)
from junctionbox.observability.http import RouteTemplate
from junctionbox.observability.tracing import outbound_traceparent
from junctionbox.services.container import Services
from junctionbox.services.gateway import Match, RouteTable
from junctionbox.services.gateway_cache import cacheable
from junctionbox.services.gateway_model import CompiledRoute, Security, bucket
from junctionbox.services.gateway_requests import (
    Caller,
    UpstreamPlan,
    authenticate,
    authorize,
    plan,
    response_headers,
    transform_body,
)
from junctionbox.services.gateway_telemetry import UpstreamCall
from junctionbox.services.rate_limit_backends import RateDecision

log = logging.getLogger(__name__)
PREFIX = "/gw"
_ROUTE = RouteTemplate(PREFIX + "/{org_id}/{path}")


@dataclass
class _Request:
    scope: Scope
    org_id: int
    path: str
    method: str
    headers: list[tuple[str, str]]
    lowered: dict[str, str]
    client_ip: str

    @property
    def origin(self) -> str | None:
        return self.lowered.get("origin")


class _Reply(Exception):
    """Ends handling with an error envelope (and extra headers)."""

    def __init__(self, error: JunctionboxError, headers: dict[str, str] | None = None) -> None:
        self.error = error
        self.headers = headers or {}


class GatewayMiddleware:
    """Hands ``/gw/…`` to the proxy before FastAPI's router, whose walk over every API route
    cost about a third of a gateway request's time (profiled); the rest goes on to ``app``."""

    def __init__(self, app: ASGIApp, proxy: GatewayProxy) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"].startswith(PREFIX + "/") or scope["path"] == PREFIX
        ):
            scope["route"] = _ROUTE  # spans and HTTP metrics by template, not raw path
            await self.proxy(scope, receive, send)
            return
        await self.app(scope, receive, send)


class GatewayProxy:
    def __init__(self, services: Services) -> None:
        self.svc = services
        self.gateway = services.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        route: CompiledRoute | None = None
        caller_id = "?"
        extra: dict[str, str] = {}
        try:
            request = _parse(scope)
            table = await self.gateway.table(request.org_id)
            match = _match(table, request)
            route = match.route
            caller_id = f"ip:{request.client_ip}"
            security = route.security or table.security
            extra = security.cors.response_headers(request.origin)
            if await self._preflight(request, route, security, tracking_send):
                return
            caller = await self._admit(request, route, security, table.root_org_id)
            caller_id = caller.client_id
            extra.update(await self._limit(table, route, caller))
            await self._forward(request, match, caller, extra, receive, tracking_send)
        except _Reply as reply:
            await _error(reply.error, {**extra, **reply.headers}, scope, receive, tracking_send)
        except JunctionboxError as exc:
            await _error(exc, extra, scope, receive, tracking_send)
        finally:
            if route is not None and route.monitoring:
                elapsed = (time.perf_counter() - started) * 1000
                self.gateway.record(route, status["code"], elapsed, caller_id)
                if self.gateway.flush_due():
                    await self.gateway.flush()

    async def _preflight(
        self, request: _Request, route: CompiledRoute, security: Security, send: Send
    ) -> bool:
        if request.method != "OPTIONS" or "OPTIONS" in route.methods:
            return False
        wanted = request.lowered.get("access-control-request-method")
        if not request.origin or not wanted:  # not a preflight, and the route has no OPTIONS
            raise _Reply(_MethodNotAllowed(), {"allow": ", ".join(sorted(route.methods))})
        _check_ip_and_https(request, security)
        headers = security.cors.preflight(request.origin, wanted, sorted(route.methods))
        if not headers:
            raise _Reply(ForbiddenError("CORS preflight refused for this origin or method"))
        await _send_plain(send, 204, headers)
        return True

    async def _admit(
        self, request: _Request, route: CompiledRoute, security: Security, root: int | None
    ) -> Caller:
        _check_ip_and_https(request, security)
        caller = await authenticate(route, request.lowered, request.client_ip, self.svc.auth, root)
        authorize(route, caller)
        return caller

    async def _limit(
        self, table: RouteTable, route: CompiledRoute, caller: Caller
    ) -> dict[str, str]:
        defaults = table.default_limits
        per_route = route.per_route or bucket(defaults.get("perRoute"), ("perRoute",))
        per_client = route.per_client or bucket(defaults.get("perClient"), ("perClient",))
        tightest: RateDecision | None = None
        for key, config, what in (
            (f"gw:{route.id}", per_route, "per route"),
            (f"gw:{route.id}:{caller.client_id}", per_client, "per client"),
        ):
            if config is None:
                continue
            decision = await self.gateway.backend.hit(key, config)
            if not decision.allowed:
                raise _Reply(RateLimitedError(f"rate limit exceeded ({what})"), decision.headers())
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        return tightest.headers() if tightest else {}

    async def _forward(
        self,
        request: _Request,
        match: Match,
        caller: Caller,
        extra: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> None:
        route = match.route
        extra.update(route.versioning.headers())
        query = request.scope.get("query_string", b"").decode("latin-1")
        cache_key = _cache_key(route, match, query, caller) if _caches(route, request) else None
        if cache_key is not None:
            hit = self.gateway.cache.get(cache_key)
            if hit is not None:
                headers = [*hit.headers, *extra.items(), ("x-cache", "HIT")]
                await _send_body(send, hit.status, headers, hit.body, request.method)
                return
        body = await read_body(receive)
        if body is None:  # the client left: a partial body is not sent upstream
            return
        target = route.balancer.pick(time.monotonic())
        upstream = plan(
            match, request.method, request.headers, query, body,
            target=target.url, client_ip=request.client_ip,
            scheme=request.scope.get("scheme", "http"), host=request.lowered.get("host"),
            prefix=f"{PREFIX}/{request.org_id}",
            request_id=request.scope.get("state", {}).get("request_id"),
        )  # fmt: skip
        if cache_key is not None:
            extra["x-cache"] = "MISS"
        await self._call(route, target, upstream, extra, cache_key, request.method, send)

    async def _call(
        self,
        route: CompiledRoute,
        target: Any,
        upstream: UpstreamPlan,
        extra: dict[str, str],
        cache_key: tuple[str, ...] | None,
        method: str,
        send: Send,
    ) -> None:
        """The upstream call, within a ``gateway.call`` span when tracing is on (off: no
        span; the caller's ``traceparent``, or a fresh one, goes upstream), measured."""
        tracing = self.svc.telemetry.tracing
        call = UpstreamCall(route.id, time.perf_counter())
        args = (route, target, upstream, extra, cache_key, method, send, call)
        if not tracing.recording:
            call.traceparent = outbound_traceparent(get_current_span())[0]
            try:
                await self._exchange(*args)
            finally:
                call.measure(self.svc.telemetry.metrics)
            return
        attributes = {"gateway.route.id": route.id, "http.request.method": upstream.method}
        with tracing.span("gateway.call", kind=SpanKind.CLIENT, attributes=attributes) as span:
            call.traceparent = outbound_traceparent(span)[0]
            try:
                await self._exchange(*args)
            finally:
                call.measure(self.svc.telemetry.metrics)
                call.annotate(span)

    async def _exchange(
        self,
        route: CompiledRoute,
        target: Any,
        upstream: UpstreamPlan,
        extra: dict[str, str],
        cache_key: tuple[str, ...] | None,
        method: str,
        send: Send,
        call: UpstreamCall,
    ) -> None:
        balancer = route.balancer
        try:
            async with self.gateway.http.stream(
                upstream.method, upstream.url, headers=call.headers(upstream.headers),
                body=upstream.body, timeout_seconds=route.timeout,
            ) as response:  # fmt: skip
                call.status = response.status
                ok = response.status < 500
                target.record(ok, time.monotonic(), balancer.threshold, balancer.cooldown,
                              f"HTTP {response.status}")  # fmt: skip
                target.last_status = response.status
                if route.response_body is None and cache_key is None:
                    await _stream(send, response, route, extra, method)
                    return
                await self._buffered(send, response, route, extra, cache_key, method)
        except TargetRefusedError as exc:
            call.error_type = ErrorCategory.NETWORK_ERROR.value
            raise UpstreamError("the upstream address is refused by the SSRF guard") from exc
        except OutboundTimeoutError as exc:
            call.error_type = ErrorCategory.TIMEOUT.value
            target.record(False, time.monotonic(), balancer.threshold, balancer.cooldown,
                          "timeout")  # fmt: skip
            raise UpstreamTimeoutError("the upstream did not answer in time") from exc
        except OutboundNetworkError as exc:
            call.error_type = ErrorCategory.NETWORK_ERROR.value
            target.record(False, time.monotonic(), balancer.threshold, balancer.cooldown,
                          exc.kind.value)  # fmt: skip
            raise UpstreamError(f"the upstream failed: {exc.kind.value}") from exc

    async def _buffered(
        self,
        send: Send,
        response: StreamedResponse,
        route: CompiledRoute,
        extra: dict[str, str],
        cache_key: tuple[str, ...] | None,
        method: str,
    ) -> None:
        limit = self.svc.settings.max_body_bytes * 4
        chunks, size = [], 0
        async for chunk in response.chunks():
            size += len(chunk)
            if size > limit:
                raise UpstreamError("the upstream response is too large to transform or cache")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoded = any(k.lower() == "content-encoding" for k, _ in response.headers)
        rewritten = route.response_body is not None and bool(body)
        if rewritten:
            if encoded:
                raise UpstreamError("a compressed upstream response cannot be transformed")
            try:
                body = transform_body(route, body, "response")
            except orjson.JSONDecodeError:
                raise UpstreamError("the upstream response is not JSON") from None
        headers = response_headers(response.headers, route, rewritten=rewritten)
        if rewritten:
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("content-type", "application/json"))
        if cache_key is not None and cacheable(
            response.status, headers, len(body), self.gateway.cache.max_entry_bytes
        ):
            ttl = route.cache_ttl or 0.0
            self.gateway.cache.put(cache_key, response.status, headers, body, ttl)
        await _send_body(send, response.status, [*headers, *extra.items()], body, method)


def _parse(scope: Scope) -> _Request:
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path.startswith(PREFIX + "/"):
        path = path[len(PREFIX) :]
    org_text, _, rest = path.lstrip("/").partition("/")
    if not org_text.isdigit():
        raise NotFoundError("gateway paths are /gw/{orgId}/{route path}")
    raw = scope.get("raw_path") or b""
    if not safe_request_path("/" + rest) or not safe_request_path(raw.decode("latin-1")):
        raise ValidationError("the path must not contain dot segments or encoded slashes")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    client = scope.get("client")
    return _Request(
        scope,
        int(org_text),
        "/" + rest,
        scope["method"],
        headers,
        {k.lower(): v for k, v in headers},
        client[0] if client else "unknown",
    )


def _match(table: RouteTable, request: _Request) -> Match:
    found = table.match(request.method, request.path, request.lowered)
    if found is None:
        raise NotFoundError("no gateway route matches this path")
    if isinstance(found, list):
        raise _Reply(_MethodNotAllowed(), {"allow": ", ".join(found)})
    return found


class _MethodNotAllowed(JunctionboxError):
    """This route does not accept the method."""

    code = "METHOD_NOT_ALLOWED"
    status = 405


def _check_ip_and_https(request: _Request, security: Security) -> None:
    if not security.ip.permits(request.client_ip):
        raise ForbiddenError("your address is not allowed to call this route")
    if security.require_https and request.scope.get("scheme") != "https":
        raise ForbiddenError("this route requires HTTPS")


def _caches(route: CompiledRoute, request: _Request) -> bool:
    return route.cache_ttl is not None and request.method in ("GET", "HEAD")


def _cache_key(route: CompiledRoute, match: Match, query: str, caller: Caller) -> tuple[str, ...]:
    who = "" if route.auth_type == "NONE" else caller.client_id
    return (route.id, match.upstream_path, query, who)


def _encode(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_plain(send: Send, status: int, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": _encode(list(headers.items()))})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


async def _send_body(
    send: Send, status: int, headers: Sequence[tuple[str, str]], body: bytes, method: str
) -> None:
    out = [(k, v) for k, v in headers if k.lower() != "content-length"]
    out.append(("content-length", str(len(body))))
    await send({"type": "http.response.start", "status": status, "headers": _encode(out)})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _stream(
    send: Send, response: StreamedResponse, route: CompiledRoute, extra: dict[str, str],
    method: str,
) -> None:  # fmt: skip
    headers = [*response_headers(response.headers, route, rewritten=False), *extra.items()]
    await send({"type": "http.response.start", "status": response.status,
                "headers": _encode(headers)})  # fmt: skip
    if method != "HEAD":
        try:
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except JunctionboxError:
            # The head is sent: the client sees a cut-short body (no Content-Length match).
            log.warning("gateway upstream body cut short on route %s", route.id)
    await send({"type": "http.response.body", "body": b""})


async def _error(
    exc: JunctionboxError, headers: dict[str, str], scope: Scope, receive: Receive, send: Send
) -> None:
    response = error_response(exc)
    for key, value in headers.items():
        response.headers[key] = value
    await response(scope, receive, send)


__all__ = ["PREFIX", "GatewayMiddleware", "GatewayProxy"]
