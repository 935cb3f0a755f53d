"""``/api/v1/integrations/{type}[/{path}]?orgId=…``: the runtime proxy (seed 003 INBOUND).

The caller authenticates as on every route (``X-API-Key``, or a Bearer token when the
integration's own credential does not use ``Authorization``); the integration's inbound
credential is checked on top (see ``services.inbound_proxy``).

This is the hottest route of a gateway, so :class:`ProxyFastPath` (pure ASGI, innermost of
the middleware listed in ``app.build_middleware``) answers it before FastAPI's router,
exception middleware and dependency machinery run; it puts errors in the same envelope.
The routes below stay registered so that the OpenAPI document describes the endpoint (and
serve it if the fast path is not installed).
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from junctionbox.api.deps import request_tenant
from junctionbox.api.errors import error_response
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.observability import context
from junctionbox.observability.http import RouteTemplate
from junctionbox.services.container import Services
from junctionbox.services.inbound_proxy import ProxyCall

PREFIX: Final = "/api/v1/integrations/"
METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE"]

router = APIRouter(tags=["inbound proxy"])
log = logging.getLogger(__name__)


def _org_id(request: Request) -> int | None:
    raw = request.query_params.get("orgId")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationError("orgId must be a positive integer")
    return int(raw)


def _sub_path(request: Request) -> str:
    """The still-encoded path after ``/api/v1/integrations/{type}``."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1").split("?", 1)[0]
    rest = text[len(PREFIX) :] if text.startswith(PREFIX) else ""
    _, _, sub = rest.partition("/")
    return sub


async def _proxy(request: Request) -> Response:
    svc: Services = request.app.state.services
    tenant = await request_tenant(request, _org_id(request))
    client = request.client
    current = context.current()
    try:
        body = await request.body()
    except ClientDisconnect:  # the caller left before sending its body: nobody to answer
        return Response(status_code=400)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    call = ProxyCall(
        method=request.method,
        type=request.path_params["type"],
        sub_path=_sub_path(request),
        query=[(k, v) for k, v in request.query_params.multi_items() if k != "orgId"],
        headers=headers,
        body=body,
        peer=client.host if client else None,
        scheme=request.scope.get("scheme", "http"),  # not request.url: it builds a URL
        host=next((v for k, v in headers if k == "host"), None),
        request_id=current.request_id,
        correlation_id=current.correlation_id,
    )
    answer = await svc.proxy.handle(tenant, call)
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    if answer.stream is None:
        response = Response(answer.body or b"", status_code=answer.status)
        response.raw_headers = [
            *(h for h in raw_headers if h[0] != b"content-length"),
            *response.raw_headers,
        ]
        return response
    streamed = StreamingResponse(
        answer.stream, status_code=answer.status, background=BackgroundTask(answer.close)
    )
    streamed.raw_headers = [*raw_headers, *streamed.raw_headers]
    return streamed


_DOC = (
    "Call the upstream API of the tenant's inbound integration `type` (an org unit without "
    "one uses its organization's). Answers the upstream's status, headers and body (the "
    "body transformed when the integration says so); 401 on a wrong integration credential, "
    "404 for an unknown or inactive type, 405 for a method it does not allow, 429 over its "
    "rate limit, 502 when the upstream fails, 504 when it does not answer in time."
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
    """Serves ``/api/v1/integrations/{type}…`` directly; everything else goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.methods = frozenset(METHODS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        kind = path[len(PREFIX) :].split("/", 1)[0] if path.startswith(PREFIX) else ""
        if not kind or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"type": kind}
        scope["route"] = _ROUTE  # the server span and HTTP metrics by template, not raw path
        try:
            response = await _proxy(Request(scope, receive))
        except JunctionboxError as exc:
            if exc.status >= 500:
                log.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
            response = error_response(exc)
        await response(scope, receive, send)
