"""``/api/v1/integrations/{type}[/{path}]?orgId=…``: the runtime proxy (seed 003 INBOUND).

The caller authenticates as on every route (``X-API-Key``, or a Bearer token when the
integration's own credential does not use ``Authorization``); the integration's inbound
credential is checked on top (see ``services.inbound_proxy``).

This is the hottest route of a gateway, so :class:`ProxyFastPath` (pure ASGI, innermost of
the hot paths listed in ``app.hot_paths``) answers it before FastAPI's router,
exception middleware and dependency machinery run; it puts errors in the same envelope.
The routes below stay registered so that the OpenAPI document describes the endpoint (and
serve it if the fast path is not installed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Final
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from junctionbox.api.deps import MAX_ORG_ID, authenticate_with, bearer_of
from junctionbox.api.errors import error_response
from junctionbox.api.middleware import EDGE_KEY, read_body
from junctionbox.domain.identity import TenantContext
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.observability import context
from junctionbox.observability.http import RouteTemplate
from junctionbox.services.container import Services
from junctionbox.services.inbound_proxy import ProxyAnswer, ProxyCall

PREFIX: Final = "/api/v1/integrations/"
METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

router = APIRouter(tags=["inbound proxy"])
log = logging.getLogger(__name__)


def _org_id(query: Sequence[tuple[str, str]]) -> int | None:
    raw = None
    for name, value in query:  # the last one counts, as in Starlette
        if name == "orgId":
            raw = value
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ORG_ID:
        raise ValidationError("orgId must be a positive integer")
    return int(raw)


def _query(raw: str) -> list[tuple[str, str]]:
    """``parse_qsl(raw, keep_blank_values=True)``; without an escape to undo (the usual
    ``orgId=1``) a plain split, the same pairs at a fraction of its cost."""
    if "%" in raw or "+" in raw:
        return parse_qsl(raw, keep_blank_values=True)
    return [(name, value) for name, _, value in (p.partition("=") for p in raw.split("&") if p)]


def _sub_path(scope: Scope) -> str:
    """The still-encoded path after ``/api/v1/integrations/{type}``."""
    raw = scope.get("raw_path") or scope["path"].encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    rest = text[len(PREFIX) :] if text.startswith(PREFIX) else ""
    _, _, sub = rest.partition("/")
    return sub


def _credentials(headers: Mapping[bytes, bytes]) -> tuple[str | None, str | None]:
    """The caller's API key and Bearer token (what ``authenticate_with`` takes)."""
    api_key = headers.get(b"x-api-key")
    token = bearer_of(headers.get(b"authorization"))
    return api_key.decode("latin-1") if api_key else None, token


async def _call(svc: Services, scope: Scope, receive: Receive, kind: str) -> ProxyAnswer:
    edge = scope.get(EDGE_KEY)
    by_name: Mapping[bytes, bytes] = edge.headers if edge is not None else dict(scope["headers"])
    query = _query(scope["query_string"].decode("latin-1"))
    principal = await authenticate_with(svc, *_credentials(by_name))
    tenant: TenantContext = await svc.tenancy.resolve(principal, _org_id(query))
    body = await read_body(receive)
    if body is None:
        raise ClientDisconnect()
    host = by_name.get(b"host")
    client = scope.get("client")
    current = context.current()
    call = ProxyCall(
        method=scope["method"],
        type=kind,
        sub_path=_sub_path(scope),
        query=[(k, v) for k, v in query if k != "orgId"],
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
        peer=client[0] if client else None,
        scheme=scope.get("scheme", "http"),
        host=host.decode("latin-1") if host is not None else None,
        request_id=current.request_id,
        correlation_id=current.correlation_id,
        log_id=_log_id(edge.generated_id if edge is not None else None),
    )
    return await svc.proxy.handle(tenant, call)


def _log_id(request_id: str | None) -> str | None:
    """The call's delivery-log id: the body of the request id junctionbox generated (one
    ULID per call); None (the proxy draws one) when the caller named the request."""
    if request_id is None:
        return None
    return "dlg" + request_id[request_id.index("_") :]


async def _answer(answer: ProxyAnswer, scope: Scope, receive: Receive, send: Send) -> None:
    if answer.stream is not None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        streamed = StreamingResponse(
            answer.stream, status_code=answer.status, background=BackgroundTask(answer.close)
        )
        streamed.raw_headers = [*raw, *streamed.raw_headers]
        await streamed(scope, receive, send)
        return
    body = answer.body or b""
    if scope["method"] == "HEAD":  # a HEAD answer keeps the upstream's Content-Length
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    else:
        raw = []
        for key, value in answer.headers:  # one pass: encoded, the length set again
            name = key.lower()
            if name != "content-length":
                raw.append((name.encode("latin-1"), value.encode("latin-1")))
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def serve(svc: Services, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
    """One proxied call, answered in the error envelope on failure."""
    try:
        answer = await _call(svc, scope, receive, kind)
    except ClientDisconnect:  # the caller left before sending its body: nobody to answer
        await Response(status_code=400)(scope, receive, send)
        return
    except JunctionboxError as exc:
        if exc.status >= 500:
            log.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
        await error_response(exc)(scope, receive, send)
        return
    await _answer(answer, scope, receive, send)


class _Served(Response):
    """What the FastAPI route answers: the call itself, run when the response is sent."""

    def __init__(self, svc: Services, kind: str) -> None:
        self.svc, self.kind = svc, kind
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve(self.svc, self.kind, scope, receive, send)


async def _proxy(request: Request) -> Response:
    """The FastAPI route's endpoint, for when the fast path is not installed (it reads no
    body, so the call gets the request's own)."""
    return _Served(request.app.state.services, request.path_params["type"])


_DOC = (
    "Call the upstream API of the tenant's inbound integration `type` (an org unit without "
    "one uses its organization's). Answers the upstream's status, headers and body (the "
    "body transformed when the integration says so; none to HEAD); 401 on a wrong "
    "integration credential, 404 for an unknown or inactive type, 405 for a method it does "
    "not allow, 429 over its rate limit, 502 when the upstream fails, 504 when it does not "
    "answer in time."
)

for _method in METHODS:  # one route per method: each needs its own OpenAPI operation id
    router.add_api_route(
        PREFIX + "{type}",
        _proxy,
        methods=[_method],
        operation_id=f"proxy_{_method.lower()}",
        summary="Proxy to an inbound integration",
        description=_DOC,
    )
    router.add_api_route(
        PREFIX + "{type}/{path:path}",
        _proxy,
        methods=[_method],
        operation_id=f"proxy_sub_path_{_method.lower()}",
        summary="Proxy a sub-path",
        description=_DOC,
    )


_ROUTE: Final = RouteTemplate(PREFIX + "{type}")


class ProxyFastPath:
    """Serves ``/api/v1/integrations/{type}…`` directly (a hot path of ``api.app``): no
    Starlette request or response objects; everything else goes on to ``app``."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.methods = frozenset(METHODS)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the handler's coroutine: one layer less on every call
        # (the edge awaits what it returns).
        path = scope.get("path", "") if scope["type"] == "http" else ""
        kind = path[len(PREFIX) :].split("/", 1)[0] if path.startswith(PREFIX) else ""
        if not kind or scope["method"] not in self.methods:
            return self.app(scope, receive, send)
        scope["path_params"] = {"type": kind}
        scope["route"] = _ROUTE  # the server span and HTTP metrics by template, not raw path
        return serve(self.services, kind, scope, receive, send)
