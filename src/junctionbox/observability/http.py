"""The server side of HTTP telemetry: a server span per request (continuing an incoming
W3C ``traceparent``) and the HTTP metrics, by route template. Used by the edge middleware
(``api.middleware``), outermost, so that every log line of the request, the access log
included, carries the trace id."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import Scope

from junctionbox.observability.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A route as this module reads it (``scope["route"].path``): the ASGI fast paths
    (inbound proxy, gateway) skip the router and name their template themselves, so that
    their spans and metrics are by template, never by raw path."""

    path: str


class HasStatus(Protocol):
    @property
    def status(self) -> int: ...


def _carrier(headers: dict[bytes, bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    parent = headers.get(b"traceparent")
    if parent is not None:
        found["traceparent"] = parent.decode("latin-1")
        state = headers.get(b"tracestate")
        if state is not None:
            found["tracestate"] = state.decode("latin-1")
    return found


class ServerTelemetry:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def server_span(
        self, scope: Scope, headers: dict[bytes, bytes], response: HasStatus
    ) -> _ServerSpan:
        """A context manager around one request; ``response.status`` is read at its end."""
        return _ServerSpan(self.telemetry, scope, headers, response)


class _ServerSpan:
    """With tracing on, a server span named by route template; with it off, no span: the
    caller's context (when it sent one) is made current, so that its trace continues."""

    __slots__ = ("_scope", "_span", "headers", "response", "scope", "started", "telemetry")

    def __init__(
        self, telemetry: Telemetry, scope: Scope, headers: dict[bytes, bytes], response: HasStatus
    ) -> None:
        self.telemetry = telemetry
        self.scope = scope
        self.headers = headers
        self.response = response
        self.started = 0.0
        self._span: Any = None
        self._scope: Any = None  # the span's context manager, or the attached context's token

    def __enter__(self) -> None:
        self.started = time.perf_counter()
        tracing = self.telemetry.tracing
        carrier = _carrier(self.headers)
        if tracing.recording:
            manager = tracing.span(
                self.scope["method"], parent=tracing.extract(carrier), kind=SpanKind.SERVER
            )
            self._span = manager.__enter__()
            self._scope = manager
        elif carrier:
            self._scope = otel_context.attach(tracing.extract(carrier))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        method = self.scope["method"]
        route = getattr(self.scope.get("route"), "path", None)
        code = int(self.response.status)
        span = self._span
        if span is not None:
            if span.is_recording():
                span.update_name(f"{method} {route or 'unmatched'}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route or "")
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            self._scope.__exit__(kind, error, trace)
        elif self._scope is not None:
            otel_context.detach(self._scope)
        self.telemetry.metrics.http_request(method, route, code, time.perf_counter() - self.started)
