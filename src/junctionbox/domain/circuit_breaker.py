"""Per-destination circuit breaker as an immutable value, plus the auto-disable streak.

The breaker is a frozen value and every transition returns a new one, so a worker can load
it from the database, apply ``allow`` / ``record_success`` / ``record_failure`` with the
injected ``now`` and write it back in the same transaction (or with a compare-and-set);
no process memory is involved, which is what cluster mode needs.

Semantics (seed 001): ``failure_threshold`` consecutive failures open the circuit; after
``reset_timeout`` the next call is let through as a probe (HALF_OPEN); ``success_threshold``
successful probes close it, and any failed probe reopens it for another ``reset_timeout``.
At most ``half_open_max_probes`` probes are in flight at once. A probe whose result never
arrives (worker crash) frees its slot after ``call_timeout``, so the breaker cannot wedge.

Only transient outcomes (``Decision.RETRY`` in :mod:`junctionbox.domain.retry`) should be
recorded as failures: a 4xx means the destination is up and answering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from types import MappingProxyType

from junctionbox.errors import ValidationError


class CircuitState(IntEnum):
    """Breaker state; the integer is the Prometheus gauge value of seed 001's metrics."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds and timeouts, in counts and seconds."""

    failure_threshold: int = 5
    success_threshold: int = 2
    reset_timeout: float = 60.0
    call_timeout: float = 30.0  # the seeds' per-call ``timeout``; also bounds a probe's slot
    half_open_max_probes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise ValidationError("breaker thresholds must be >= 1")
        if self.half_open_max_probes < 1:
            raise ValidationError("half_open_max_probes must be >= 1")
        if self.reset_timeout <= 0 or self.call_timeout <= 0:
            raise ValidationError("breaker timeouts must be > 0")


# Seed 001, "Circuit Breaker Configuration" (milliseconds there, seconds here).
BREAKER_PRESETS: Mapping[str, BreakerConfig] = MappingProxyType(
    {
        "default": BreakerConfig(),
        "salesSystem": BreakerConfig(5, 2, 60.0, 30.0),
        "erpSystem": BreakerConfig(3, 2, 120.0, 45.0),
        "eSignature": BreakerConfig(5, 3, 300.0, 60.0),
        "communicationGateway": BreakerConfig(10, 3, 30.0, 15.0),
    }
)


@dataclass(frozen=True)
class Breaker:
    """One destination's breaker. ``changed_at`` is when ``state`` last changed."""

    config: BreakerConfig = BreakerConfig()
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0  # consecutive failures while CLOSED
    successes: int = 0  # successful probes in the current HALF_OPEN period
    open_until: float = 0.0  # when OPEN: no call before this instant
    probes_in_flight: int = 0
    probe_lease_until: float = 0.0  # in-flight probes older than this are presumed lost
    changed_at: float = 0.0


def allow(breaker: Breaker, now: float) -> tuple[Breaker, bool]:
    """Whether a call may go out now; persist the returned breaker either way."""
    if breaker.state is CircuitState.CLOSED:
        return breaker, True
    if breaker.state is CircuitState.OPEN:
        if now < breaker.open_until:
            return breaker, False
        breaker = _to(breaker, CircuitState.HALF_OPEN, now)
    return _take_probe(breaker, now)


def _take_probe(breaker: Breaker, now: float) -> tuple[Breaker, bool]:
    in_flight = breaker.probes_in_flight if now < breaker.probe_lease_until else 0
    if in_flight >= breaker.config.half_open_max_probes:
        return breaker, False
    lease = now + breaker.config.call_timeout
    return replace(breaker, probes_in_flight=in_flight + 1, probe_lease_until=lease), True


def record_success(breaker: Breaker, now: float) -> Breaker:
    """A call succeeded. In OPEN it is a late answer from before the trip: ignored."""
    if breaker.state is CircuitState.CLOSED:
        return replace(breaker, failures=0) if breaker.failures else breaker
    if breaker.state is CircuitState.OPEN:
        return breaker
    successes = breaker.successes + 1
    if successes >= breaker.config.success_threshold:
        return _to(breaker, CircuitState.CLOSED, now)
    return replace(breaker, successes=successes, probes_in_flight=_release(breaker))


def record_failure(breaker: Breaker, now: float) -> Breaker:
    """A call failed transiently: count it, trip at the threshold, reopen on a failed probe."""
    if breaker.state is CircuitState.OPEN:
        return breaker  # late answer from before the trip; do not extend the wait
    if breaker.state is CircuitState.HALF_OPEN:
        return _open(breaker, now)
    failures = breaker.failures + 1
    if failures >= breaker.config.failure_threshold:
        return _open(breaker, now)
    return replace(breaker, failures=failures)


def reset(breaker: Breaker, now: float) -> Breaker:
    """Manual reset by an operator: CLOSED with clean counters."""
    return _to(breaker, CircuitState.CLOSED, now)


def _open(breaker: Breaker, now: float) -> Breaker:
    opened = _to(breaker, CircuitState.OPEN, now)
    return replace(opened, open_until=now + breaker.config.reset_timeout)


def _to(breaker: Breaker, state: CircuitState, now: float) -> Breaker:
    """Enter ``state`` with every per-state counter cleared."""
    return Breaker(config=breaker.config, state=state, changed_at=now)


def _release(breaker: Breaker) -> int:
    return max(0, breaker.probes_in_flight - 1)


@dataclass(frozen=True)
class FailureStreak:
    """Seed 003's auto-disable: N consecutive failed deliveries disable the integration.

    What counts as one failure (each attempt, or each message that ends in the DLQ) is the
    caller's choice; the counter only counts. Re-enabling resets it.
    """

    threshold: int = 5
    count: int = 0

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValidationError("auto-disable threshold must be >= 1")

    @property
    def disabled(self) -> bool:
        return self.count >= self.threshold


def streak_success(streak: FailureStreak) -> FailureStreak:
    """A delivery succeeded: the streak is broken."""
    return replace(streak, count=0) if streak.count else streak


def streak_failure(streak: FailureStreak) -> tuple[FailureStreak, bool]:
    """Count a failure; the flag is True only on the failure that crosses the threshold,
    so the caller disables and alerts exactly once."""
    after = replace(streak, count=streak.count + 1)
    return after, after.disabled and not streak.disabled


def streak_reenable(streak: FailureStreak) -> FailureStreak:
    """An admin re-enabled the integration: start counting afresh."""
    return replace(streak, count=0)
