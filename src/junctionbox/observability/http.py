"""Pure-ASGI middleware: a server span per request (continuing an incoming W3C
``traceparent``) and the HTTP metrics, by route template. Outermost in the stack, so that
every log line of the request, the access log included, carries the trace id."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junctionbox.observability.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A route as this middleware reads it (``scope["route"].path``): the ASGI fast paths
    (inbound proxy, gateway) skip the router and name their template themselves, so that
    their spans and metrics are by template, never by raw path."""

    path: str


def _carrier(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key in (b"traceparent", b"tracestate"):
            found[key.decode()] = value.decode("latin-1")
    return found


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracing, method = self.telemetry.tracing, scope["method"]
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        parent = tracing.extract(_carrier(scope))
        with tracing.span(f"{method}", parent=parent, kind=SpanKind.SERVER) as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                code = int(status["code"])
                if span.is_recording():
                    span.update_name(f"{method} {route or 'unmatched'}")
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("http.route", route or "")
                    span.set_attribute("http.response.status_code", code)
                    if code >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                self.telemetry.metrics.http_request(
                    method, route, code, time.perf_counter() - started
                )
