"""When a scheduled job's ticks are due, and what happens to ticks missed while nothing ran.

A job keeps ``next_run_at``, the first tick not yet claimed. A scheduler pass that finds it
due (``next_run_at <= now``) asks :func:`plan` which tick to run and where ``next_run_at``
moves; the store then claims that move with a compare-and-set, so each tick runs once.

Catch-up policies (``schedule.catchUp``), for ticks found due with later ticks also due
(a node was down, or every node was):

* ``ONCE`` (default): one run, for the most recent missed tick; the rest are skipped.
* ``ALL``: every missed tick runs, oldest first, one per pass, but at most
  ``MAX_CATCH_UP`` of them (the most recent ones).
* ``SKIP``: a tick more than ``MISFIRE_GRACE`` late does not run; the schedule resumes with
  the next future tick.

In normal operation (the scheduler a poll interval behind) all three run every tick.
CRON ticks follow ``domain.schedule.next_cron_time`` (wall clock of the job's zone, DST
handled there); INTERVAL ticks are fixed elapsed-time steps from the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from junctionbox.domain.schedule import next_cron_time

MAX_CATCH_UP: Final = 100
MISFIRE_GRACE: Final = timedelta(seconds=60)
# Scanning further than this many missed ticks (a per-second schedule down for a day) is
# done arithmetically for INTERVAL and bounded for CRON.
_MAX_SCAN: Final = 100_000


class ScheduleType(StrEnum):
    CRON = "CRON"
    INTERVAL = "INTERVAL"


class CatchUp(StrEnum):
    ONCE = "ONCE"
    ALL = "ALL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class JobSchedule:
    type: ScheduleType
    expression: str | None
    interval_ms: int | None
    timezone: str  # resolved: the job's, else its organization's, else UTC
    catch_up: CatchUp = CatchUp.ONCE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def following(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``."""
        if self.type is ScheduleType.INTERVAL:
            return after + timedelta(milliseconds=self.interval_ms or 0)
        return next_cron_time(self.expression or "", after, self.zone)

    def first_after(self, moment: datetime) -> datetime:
        """The first tick of a schedule started (or resumed, or changed) at ``moment``."""
        return self.following(moment)


@dataclass(frozen=True)
class TickPlan:
    run_for: datetime | None  # the tick to run now, or None when it is skipped
    next_run_at: datetime  # the next tick not yet claimed (after ``now`` unless ALL)
    skipped: int  # missed ticks that will not run


def plan(schedule: JobSchedule, next_run_at: datetime, now: datetime) -> TickPlan | None:
    """What to do with a job whose first unclaimed tick is ``next_run_at``; None when it is
    not due yet."""
    if next_run_at > now:
        return None
    due, last, count = _due_ticks(schedule, next_run_at, now)
    if schedule.catch_up is CatchUp.ALL:
        oldest_kept = max(0, count - MAX_CATCH_UP)
        if oldest_kept:
            return TickPlan(None, due[0] if due else last, oldest_kept)
        following = schedule.following(next_run_at)
        return TickPlan(next_run_at, following, 0)
    following = schedule.following(last)
    if schedule.catch_up is CatchUp.SKIP and now - last > MISFIRE_GRACE:
        return TickPlan(None, following, count)
    return TickPlan(last, following, count - 1)


def _due_ticks(
    schedule: JobSchedule, start: datetime, now: datetime
) -> tuple[list[datetime], datetime, int]:
    """(the first of the ``MAX_CATCH_UP`` most recent due ticks when more are due, else [];
    the last due tick; how many are due)."""
    if schedule.type is ScheduleType.INTERVAL:
        step = timedelta(milliseconds=schedule.interval_ms or 1)
        count = (now - start) // step + 1
        last = start + step * (count - 1)
        keep_from = start + step * (count - MAX_CATCH_UP) if count > MAX_CATCH_UP else None
        return ([keep_from] if keep_from else []), last, count
    ticks = [start]
    while len(ticks) < _MAX_SCAN:
        candidate = schedule.following(ticks[-1])
        if candidate > now:
            break
        ticks.append(candidate)
    count = len(ticks)
    keep_from = ticks[count - MAX_CATCH_UP] if count > MAX_CATCH_UP else None
    return ([keep_from] if keep_from else []), ticks[-1], count
