"""The destination adapter interface (seed 001's ``IntegrationAdapter``, in Python).

A destination is where a prepared delivery goes: HTTP now, message brokers later. It

* ``validate_config(config)``: lists what is wrong with its part of an integration's
  configuration (empty list: fine), located like the API's problems;
* ``execute(request, timeout=...)``: performs one attempt and returns a
  :class:`DestinationResult`, or raises :class:`DestinationError` when no answer came back
  (``kind``: the :class:`~junctionbox.domain.retry.NetworkErrorKind` the retry classifier
  takes; ``retryable`` False for failures a retry cannot fix);
* ``transform_response(result)``: the answer as data for logs and callers;
* ``health()``: how the destination has been doing, as a :class:`HealthStatus`.

Nothing here knows about HTTP: a broker destination maps its acknowledgement to
``status`` (e.g. 200 for acked, 503 for a transient broker refusal) so that one classifier
and one log format serve every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.errors import FieldProblem, UpstreamError

if TYPE_CHECKING:
    from junctionbox.services.outbound_request import PreparedRequest

__all__ = [
    "Destination",
    "DestinationError",
    "DestinationRefusedError",
    "DestinationResult",
    "HealthState",
    "HealthStatus",
]


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """Seed 001's ``HealthStatus``; ``latency`` in seconds."""

    status: HealthState
    latency: float | None
    last_checked: datetime
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DestinationResult:
    """The answer to one attempt: status, headers in received order, a capped body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    elapsed: float  # seconds from sending to the end of the answer
    truncated: bool = False  # the body was cut at the destination's cap

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), default)


class DestinationError(UpstreamError):
    """No answer: the attempt failed before the destination said anything.

    ``kind`` feeds :func:`junctionbox.domain.retry.classify`; it is None for failures that
    are not network conditions (then ``retryable`` is False). Messages never carry a URL,
    a header value or a credential.
    """

    def __init__(
        self, kind: NetworkErrorKind | None, message: str, *, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable and kind is not None


class DestinationRefusedError(DestinationError):
    """The destination's address is not allowed (SSRF guard): final, one generic message."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message, retryable=False)


class Destination(ABC):
    """One kind of destination. Instances are shared by every delivery of a process."""

    kind: ClassVar[str]

    @abstractmethod
    def validate_config(
        self, config: Mapping[str, Any], loc: tuple[str | int, ...] = ("body",)
    ) -> list[FieldProblem]:
        """Problems with this destination's configuration (empty when valid)."""

    @abstractmethod
    async def execute(
        self,
        request: PreparedRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the adapter contract: the caller's budget
    ) -> DestinationResult:
        """Perform one attempt within ``timeout`` seconds."""

    @abstractmethod
    def transform_response(self, result: DestinationResult) -> Any:
        """The answer as data: parsed JSON when it is JSON, else text, None when empty."""

    @abstractmethod
    async def health(self) -> HealthStatus:
        """How this destination has been doing."""
