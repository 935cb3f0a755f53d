"""The HTTP destination: a prepared request sent through the SSRF-guarded client.

Redirects are never followed (the client refuses to), so a 3xx is a result like any other
status. Failures before a status arrived become :class:`DestinationError` with the
network error kind; a refused address becomes :class:`DestinationRefusedError` carrying the
guard's one generic message, whatever the reason (loopback, private, metadata ...).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

import orjson

from junctionbox.connectors.destinations.base import (
    Destination,
    DestinationError,
    DestinationRefusedError,
    DestinationResult,
    HealthState,
    HealthStatus,
)
from junctionbox.connectors.http_client import (
    GuardedHttpClient,
    OutboundNetworkError,
    OutboundTimeoutError,
)
from junctionbox.domain.events import is_json_content_type
from junctionbox.domain.netguard import REFUSED_MESSAGE, TargetRefusedError, parse_outbound_url
from junctionbox.domain.outbound import MAX_TIMEOUT_MS, HttpMethod
from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.errors import FieldProblem, ValidationError

if TYPE_CHECKING:
    from junctionbox.services.outbound_request import PreparedRequest

__all__ = ["HttpDestination"]

HEALTH_WINDOW: Final = 100  # attempts remembered for health()
DEGRADED_RATIO: Final = 0.1  # failure share from which the destination is degraded ...
UNHEALTHY_RATIO: Final = 0.5  # ... and unhealthy


class HttpDestination(Destination):
    """Webhooks over HTTP(S). ``health()`` reports this process's recent attempts (the
    per-endpoint picture is the circuit breaker's, which sees every worker)."""

    kind: ClassVar[str] = "http"

    def __init__(self, http: GuardedHttpClient) -> None:
        self._http = http
        # (answered without a server-side failure, seconds); appended per attempt.
        self._recent: deque[tuple[bool, float]] = deque(maxlen=HEALTH_WINDOW)

    def validate_config(
        self, config: Mapping[str, Any], loc: tuple[str | int, ...] = ("body",)
    ) -> list[FieldProblem]:
        """``targetUrl`` (required, http/https, no credentials), ``httpMethod``
        (POST/PUT/PATCH) and ``timeoutMs`` (1 ms to 5 min)."""
        problems: list[FieldProblem] = []
        url = config.get("targetUrl")
        if not isinstance(url, str) or not url.strip():
            problems.append(FieldProblem((*loc, "targetUrl"), "is required"))
        else:
            try:
                parse_outbound_url(url.strip())
            except ValidationError as exc:
                problems.append(FieldProblem((*loc, "targetUrl"), exc.message))
        method = config.get("httpMethod")
        if method is not None and str(method).upper() not in HttpMethod.__members__:
            allowed = ", ".join(m.value for m in HttpMethod)
            problems.append(FieldProblem((*loc, "httpMethod"), f"must be one of {allowed}"))
        timeout = config.get("timeoutMs")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int)
            or not 1 <= timeout <= MAX_TIMEOUT_MS
        ):
            problems.append(
                FieldProblem((*loc, "timeoutMs"), f"must be an integer from 1 to {MAX_TIMEOUT_MS}")
            )
        return problems

    async def execute(
        self,
        request: PreparedRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the adapter contract: the caller's budget
    ) -> DestinationResult:
        try:
            result = await self._http.send(
                request.method,
                request.url,
                headers=request.headers,
                body=request.body,
                timeout_seconds=timeout,
            )
        except TargetRefusedError:
            raise DestinationRefusedError(REFUSED_MESSAGE) from None
        except OutboundTimeoutError:
            self._recent.append((False, timeout))
            raise DestinationError(
                NetworkErrorKind.TIMEOUT, f"no answer within {timeout:g} s"
            ) from None
        except OutboundNetworkError as exc:
            self._recent.append((False, 0.0))
            raise DestinationError(exc.kind, exc.message) from None
        except ValidationError:
            # The URL was validated at save time; a stored one that no longer parses is a
            # configuration problem no retry can fix.
            raise DestinationError(None, "invalid target URL", retryable=False) from None
        self._recent.append((result.status < 500 and result.status != 429, result.elapsed))
        return DestinationResult(
            result.status, result.headers, result.body, result.elapsed, result.truncated
        )

    def transform_response(self, result: DestinationResult) -> Any:
        if not result.body:
            return None
        if not result.truncated and is_json_content_type(result.header("content-type")):
            try:
                return orjson.loads(result.body)
            except orjson.JSONDecodeError:
                pass  # a JSON content type with a non-JSON body: show it as text
        return result.body.decode("utf-8", errors="replace")

    async def health(self) -> HealthStatus:
        started = time.perf_counter()
        recent = list(self._recent)
        now = datetime.now(UTC)
        if not recent:
            return HealthStatus(HealthState.HEALTHY, None, now, {"attempts": 0})
        failures = sum(1 for ok, _ in recent if not ok)
        ratio = failures / len(recent)
        if ratio >= UNHEALTHY_RATIO:
            state = HealthState.UNHEALTHY
        elif ratio >= DEGRADED_RATIO:
            state = HealthState.DEGRADED
        else:
            state = HealthState.HEALTHY
        latency = sum(elapsed for _, elapsed in recent) / len(recent)
        details = {
            "attempts": len(recent),
            "failures": failures,
            "checkSeconds": time.perf_counter() - started,
        }
        return HealthStatus(state, latency, now, details)
