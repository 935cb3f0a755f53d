"""The metrics and tracing facade the composition root builds once and passes around.

Other modules take a :class:`Telemetry` (from ``Services.telemetry``) and call its parts:
``telemetry.metrics.run("proxy", success=..., seconds=...)`` and
``with telemetry.tracing.span("proxy.call", attributes=...)`` are the hooks for the inbound
proxy and scheduled runs. It is a mutable holder on purpose: a test swaps ``tracing`` for
an in-memory one before it starts the loops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from junctionbox.observability.metrics import Metrics
from junctionbox.observability.tracing import Tracing


@dataclass
class Telemetry:
    metrics: Metrics = field(default_factory=Metrics)
    tracing: Tracing = field(default_factory=Tracing)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Telemetry:
        return cls(Metrics(), Tracing.from_env(environ))

    def close(self) -> None:
        self.tracing.shutdown()
