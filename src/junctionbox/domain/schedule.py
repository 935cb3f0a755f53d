"""When DELAYED and RECURRING deliveries are due: pure time arithmetic, no I/O.

* DELAYED: ``delayMs`` after the event was received (so a dispatcher that was down does not
  push the delivery further out), or ``at`` an absolute instant. A due time in the past is
  due at once.
* RECURRING: a cron expression evaluated on the wall clock of a time zone, or a fixed
  interval of elapsed time. The first occurrence is the first cron time (or one interval)
  after the event was received; each later one the first after both the previous
  occurrence and "now", so a worker that was stopped for a day does not fire a day's worth
  of occurrences in a burst (like cron, missed runs are skipped, not caught up).
  ``maxOccurrences`` counts occurrences including the first; ``endAt`` is the last instant
  an occurrence may be due.

Daylight saving time (cron only; intervals are elapsed time and ignore it): a wall time
that does not exist (the hour skipped in spring) runs that much later, at the same
distance past the change (02:30 becomes 03:30); a wall time that happens twice (the hour
repeated in autumn) runs once, at its first occurrence. Every occurrence is strictly later
than the one before, so a schedule never fires twice at one instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from junctionbox.domain.outbound import Scheduling, SchedulingMode

CRON: Final = "CRON"
INTERVAL: Final = "INTERVAL"
# A cron expression matches at least once in four years (29 February); anything rarer
# (an impossible date such as 30 February) is found out within this many candidates.
_MAX_CANDIDATES: Final = 2000


class ScheduleError(ValueError):
    """A schedule that cannot produce a due time (an impossible cron expression)."""


def resolve_zone(*names: str | None) -> ZoneInfo:
    """The first of ``names`` that is a known IANA zone, else UTC.

    Callers pass the configured zone first, then the tenant's, then its organization's.
    """
    for name in names:
        if not name:
            continue
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class Recurrence:
    """A RECURRING schedule as kept with each occurrence (its zone already resolved)."""

    kind: str  # CRON | INTERVAL
    expression: str | None
    interval_ms: int | None
    timezone: str
    max_occurrences: int | None = None
    end_at: datetime | None = None

    @classmethod
    def of(cls, scheduling: Scheduling, zone: ZoneInfo) -> Recurrence:
        if scheduling.mode is not SchedulingMode.RECURRING:
            raise ValueError("not a RECURRING schedule")
        return cls(
            kind=scheduling.recurring_type or CRON,
            expression=scheduling.expression,
            interval_ms=scheduling.interval_ms,
            timezone=zone.key,
            max_occurrences=scheduling.max_occurrences,
            end_at=scheduling.end_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "expression": self.expression,
            "intervalMs": self.interval_ms,
            "timezone": self.timezone,
            "maxOccurrences": self.max_occurrences,
            "endAt": _iso(self.end_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recurrence:
        end_at = data.get("endAt")
        return cls(
            kind=str(data.get("type") or CRON),
            expression=data.get("expression"),
            interval_ms=int(data["intervalMs"]) if data.get("intervalMs") is not None else None,
            timezone=str(data.get("timezone") or "UTC"),
            max_occurrences=data.get("maxOccurrences"),
            end_at=datetime.fromisoformat(end_at) if end_at else None,
        )

    @property
    def zone(self) -> ZoneInfo:
        return resolve_zone(self.timezone)

    def following(self, after: datetime) -> datetime:
        """The first time strictly after ``after`` this recurrence fires (ignoring limits)."""
        if self.kind == INTERVAL:
            if not self.interval_ms or self.interval_ms <= 0:
                raise ScheduleError("an INTERVAL schedule needs a positive intervalMs")
            return after + timedelta(milliseconds=self.interval_ms)
        if not self.expression:
            raise ScheduleError("a CRON schedule needs an expression")
        return next_cron_time(self.expression, after, self.zone)

    def allows(self, occurrence: int, due: datetime) -> bool:
        """Whether occurrence number ``occurrence`` (0 is the first) due at ``due`` happens."""
        if self.max_occurrences is not None and occurrence >= self.max_occurrences:
            return False
        return self.end_at is None or due <= self.end_at


def delayed_due(scheduling: Scheduling, received_at: datetime) -> datetime:
    """When a DELAYED delivery of an event received at ``received_at`` is due."""
    if scheduling.mode is not SchedulingMode.DELAYED:
        raise ValueError("not a DELAYED schedule")
    if scheduling.at is not None:
        return scheduling.at.astimezone(UTC)
    return received_at + timedelta(milliseconds=scheduling.delay_ms or 0)


def first_occurrence(recurrence: Recurrence, received_at: datetime) -> datetime | None:
    """The first occurrence of a series started by an event, or None if its limits allow
    none (``endAt`` already passed)."""
    due = recurrence.following(received_at)
    return due if recurrence.allows(0, due) else None


def next_occurrence(
    recurrence: Recurrence, previous: datetime, occurrence: int, now: datetime
) -> datetime | None:
    """The due time of occurrence number ``occurrence`` (> 0), the one after ``previous``;
    None when the series is over. Occurrences missed while nothing ran are skipped."""
    due = recurrence.following(max(previous, now))
    return due if recurrence.allows(occurrence, due) else None


def next_cron_time(expression: str, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``after`` (aware) at which the cron expression
    matches the wall clock of ``zone``, in UTC. See the module docstring for DST."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    try:
        wall = croniter(expression, after.astimezone(zone).replace(tzinfo=None))
    except (ValueError, KeyError) as exc:
        raise ScheduleError(f"invalid cron expression {expression!r}: {exc}") from exc
    after_utc = after.astimezone(UTC)
    for _ in range(_MAX_CANDIDATES):
        try:
            candidate: datetime = wall.get_next(datetime)
        except (
            ValueError,
            KeyError,
            StopIteration,
        ) as exc:  # croniter gives up on impossible dates
            raise ScheduleError(f"cron expression {expression!r} never matches") from exc
        # fold=0: a repeated wall time means its first occurrence; a skipped one maps to the
        # offset before the change, i.e. as far past the change as it was meant to be.
        instant = candidate.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if instant > after_utc:
            return instant
    raise ScheduleError(f"cron expression {expression!r} never matches")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None
