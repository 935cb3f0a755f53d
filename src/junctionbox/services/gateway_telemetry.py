"""What one gateway route call reports: the ``traceparent`` it sends upstream, seed 001's
integration metrics (``adapter_id`` is the route id) and its span's attributes. Kept out
of the gateway proxy so that the serving code stays about serving."""

from __future__ import annotations

import time

from opentelemetry.trace import Span

from junctionbox.domain.retry import ErrorCategory
from junctionbox.observability.metrics import Metrics
from junctionbox.observability.tracing import mark_error


class UpstreamCall:
    __slots__ = ("error_type", "route_id", "started", "status", "traceparent")

    def __init__(self, route_id: str, started: float) -> None:
        self.route_id = route_id
        self.started = started
        self.traceparent = ""
        self.status: int | None = None
        self.error_type: str | None = None  # no answer: TIMEOUT, NETWORK_ERROR

    def headers(self, planned: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The planned headers with our ``traceparent`` instead of the caller's."""
        out = [(k, v) for k, v in planned if k.lower() != "traceparent"]
        out.append(("traceparent", self.traceparent))
        return out

    def category(self) -> str | None:
        if self.error_type is not None or self.status is None:
            return self.error_type or ErrorCategory.NETWORK_ERROR.value
        if self.status >= 500:
            return ErrorCategory.SERVER_ERROR.value
        if self.status >= 400:
            return ErrorCategory.CLIENT_ERROR.value
        return None

    def measure(self, metrics: Metrics) -> None:
        seconds = time.perf_counter() - self.started
        category = self.category()
        metrics.integration_request(
            self.route_id, success=category is None, seconds=seconds, error_type=category
        )

    def annotate(self, span: Span) -> None:
        if self.status is not None:
            span.set_attribute("http.response.status_code", self.status)
        category = self.category()
        if category is not None and category != ErrorCategory.CLIENT_ERROR.value:
            mark_error(span, category)
