"""Rules of the service registry, without I/O: statuses, heartbeat TTL, active health-check
state per probed URL, and the weighted order in which a route visits a service's endpoints.

A service's stored status is what its operator set (ACTIVE, INACTIVE, DEREGISTERED);
UNHEALTHY is derived when read, from an expired heartbeat or a failing active check, so that
no writer has to notice time passing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from math import gcd
from typing import Any

SERVICE_TYPES = ("REST", "GRAPHQL", "SOAP", "WEBHOOK", "OTHER")
SETTABLE_STATUSES = ("ACTIVE", "INACTIVE", "DEREGISTERED")
STATUSES = ("ACTIVE", "UNHEALTHY", "INACTIVE", "DEREGISTERED")
OUT_OF_SERVICE = frozenset({"INACTIVE", "DEREGISTERED"})
MAX_WEIGHT = 100


@dataclass(frozen=True)
class Endpoint:
    url: str
    weight: int = 1


@dataclass(frozen=True)
class HealthCheckPolicy:
    """How often a service is probed and how many results in a row flip its state."""

    interval_seconds: float = 10.0
    timeout_seconds: float = 2.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None) -> HealthCheckPolicy:
        data = data or {}
        default = cls()
        return cls(
            float(data.get("intervalSeconds", default.interval_seconds)),
            float(data.get("timeoutSeconds", default.timeout_seconds)),
            int(data.get("unhealthyThreshold", default.unhealthy_threshold)),
            int(data.get("healthyThreshold", default.healthy_threshold)),
        )


@dataclass(frozen=True)
class ProbeState:
    """One probed URL: healthy until ``unhealthy_threshold`` failures in a row, then
    unhealthy until ``healthy_threshold`` successes in a row (a new URL starts healthy)."""

    healthy: bool = True
    failures: int = 0
    successes: int = 0
    last_status: int | None = None
    last_error: str | None = None
    checked_at: str | None = None

    def after(
        self,
        ok: bool,
        status: int | None,
        error: str | None,
        now: datetime,
        policy: HealthCheckPolicy,
    ) -> ProbeState:
        failures = 0 if ok else self.failures + 1
        successes = self.successes + 1 if ok else 0
        healthy = self.healthy
        if healthy and failures >= policy.unhealthy_threshold:
            healthy = False
        elif not healthy and successes >= policy.healthy_threshold:
            healthy = True
        return ProbeState(healthy, failures, successes, status, error, now.isoformat())

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "consecutiveFailures": self.failures,
            "consecutiveSuccesses": self.successes,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
            "checkedAt": self.checked_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ProbeState:
        if not data:
            return cls()
        return cls(
            bool(data.get("healthy", True)),
            int(data.get("consecutiveFailures", 0)),
            int(data.get("consecutiveSuccesses", 0)),
            data.get("lastStatus"),
            data.get("lastError"),
            data.get("checkedAt"),
        )


def probe_urls(
    endpoints: Sequence[Endpoint], health_check_url: str | None
) -> dict[str, str | None]:
    """The URLs the active check GETs, each with the endpoint it stands for: a path
    (``/health``) is probed on every endpoint; an absolute URL once, for the whole service."""
    if not health_check_url:
        return {}
    if health_check_url.startswith("/"):
        return {e.url + health_check_url: e.url for e in endpoints}
    return {health_check_url: None}


def probes_of(health: Mapping[str, Any]) -> dict[str, ProbeState]:
    return {url: ProbeState.from_json(state) for url, state in (health.get("probes") or {}).items()}


def usable_endpoints(
    endpoints: Sequence[Endpoint], health_check_url: str | None, health: Mapping[str, Any]
) -> list[Endpoint]:
    """The endpoints the active check has not marked down; all of them if it marked every
    one down (the gateway then tries them anyway, as it does with URL targets)."""
    probes = probes_of(health)
    down = {
        endpoint
        for url, endpoint in probe_urls(endpoints, health_check_url).items()
        if endpoint is not None and url in probes and not probes[url].healthy
    }
    up = [e for e in endpoints if e.url not in down]
    return up or list(endpoints)


def check_failing(
    endpoints: Sequence[Endpoint], health_check_url: str | None, health: Mapping[str, Any]
) -> bool:
    """True when the active check says no endpoint can serve."""
    urls = probe_urls(endpoints, health_check_url)
    probes = probes_of(health)
    states = [probes[url] for url in urls if url in probes]
    return bool(urls) and len(states) == len(urls) and not any(s.healthy for s in states)


def heartbeat_expired(
    ttl_seconds: int | None, last_heartbeat: datetime | None, registered_at: datetime, now: datetime
) -> bool:
    """A service with a TTL that has not reported within it (counting from registration
    until its first heartbeat, which gives it one TTL to start)."""
    if ttl_seconds is None:
        return False
    return now - (last_heartbeat or registered_at) > timedelta(seconds=ttl_seconds)


def effective_status(stored: str, *, heartbeat_late: bool, check_failing: bool) -> str:
    if stored in OUT_OF_SERVICE:
        return stored
    return "UNHEALTHY" if heartbeat_late or check_failing else "ACTIVE"


def weighted_order(weights: Sequence[int]) -> list[int]:
    """Indexes in smooth weighted round-robin order (nginx's): weights 5, 1, 1 give
    a a b a c a a, not a a a a a b c. One cycle is ``sum(weights) / gcd`` picks long."""
    divisor = 0
    for weight in weights:
        divisor = gcd(divisor, weight)
    scaled = [w // divisor for w in weights] if divisor else []
    total = sum(scaled)
    current = [0] * len(scaled)
    order: list[int] = []
    for _ in range(total):
        for index, weight in enumerate(scaled):
            current[index] += weight
        best = max(range(len(scaled)), key=lambda i: current[i])
        current[best] -= total
        order.append(best)
    return order


@dataclass(frozen=True)
class ServiceTarget:
    """What a gateway route needs of a registered service."""

    id: str
    name: str
    status: str
    endpoints: tuple[Endpoint, ...]  # the usable ones, in registration order

    @property
    def in_service(self) -> bool:
        return self.status not in OUT_OF_SERVICE
