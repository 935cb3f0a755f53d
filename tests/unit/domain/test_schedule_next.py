"""Due times of DELAYED and RECURRING deliveries, including across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from junctionbox.domain.outbound import Scheduling, parse_integration
from junctionbox.domain.schedule import (
    Recurrence,
    ScheduleError,
    delayed_due,
    first_occurrence,
    next_cron_time,
    next_occurrence,
    resolve_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def scheduling(mode: str, config: dict[str, object]) -> Scheduling:
    body = {
        "name": "s",
        "eventType": "x",
        "targetUrl": "https://x.example/",
        "schedulingMode": mode,
        "schedulingConfig": config,
    }
    return parse_integration(body).scheduling


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_delayed_by_duration_counts_from_receipt_or_at_an_instant() -> None:
    received = utc(2026, 1, 1, 12)
    by_delay = scheduling("DELAYED", {"delayMs": 90_000})
    assert delayed_due(by_delay, received) == received + timedelta(seconds=90)
    at = scheduling("DELAYED", {"at": "2026-02-01T09:00:00+01:00"})
    assert delayed_due(at, received) == utc(2026, 2, 1, 8)


def test_zone_resolution_prefers_the_configured_then_the_tenants_then_utc() -> None:
    assert resolve_zone("Asia/Kolkata", "Europe/Berlin").key == "Asia/Kolkata"
    assert resolve_zone(None, "Europe/Berlin", "America/New_York").key == "Europe/Berlin"
    assert resolve_zone(None, None, "America/New_York").key == "America/New_York"
    assert resolve_zone(None, "Not/AZone").key == "UTC"


def test_daily_cron_keeps_its_wall_clock_time_across_spring_forward() -> None:
    # Berlin moves from +01:00 to +02:00 at 02:00 local on 29 March 2026.
    after = utc(2026, 3, 27, 0)
    times = []
    for _ in range(4):
        after = next_cron_time("0 9 * * *", after, BERLIN)
        times.append(after)
    assert [t.astimezone(BERLIN).hour for t in times] == [9, 9, 9, 9]
    assert [t.hour for t in times] == [8, 8, 7, 7]  # in UTC the time moves by an hour


def test_a_skipped_wall_time_runs_as_far_past_the_change() -> None:
    due = next_cron_time("30 2 * * *", utc(2026, 3, 28, 12), BERLIN)
    assert due == utc(2026, 3, 29, 1, 30)  # 03:30 CEST: 02:30 did not exist that night
    assert due.astimezone(BERLIN).strftime("%H:%M") == "03:30"
    following = next_cron_time("30 2 * * *", due, BERLIN)
    assert following == utc(2026, 3, 30, 0, 30)  # back to 02:30 local


def test_hourly_cron_never_fires_twice_at_one_instant_on_spring_forward() -> None:
    after = utc(2026, 3, 28, 23, 45)
    fired = []
    for _ in range(4):
        after = next_cron_time("30 * * * *", after, BERLIN)
        fired.append(after)
    assert fired == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30),
                     utc(2026, 3, 29, 3, 30)]  # fmt: skip
    assert len(set(fired)) == len(fired)


def test_a_repeated_wall_time_runs_once_on_fall_back() -> None:
    # New York repeats 01:00-02:00 on 1 November 2026 (EDT -04:00, then EST -05:00).
    due = next_cron_time("30 1 * * *", utc(2026, 10, 31, 12), NEW_YORK)
    assert due == utc(2026, 11, 1, 5, 30)  # the first 01:30, EDT
    following = next_cron_time("30 1 * * *", due, NEW_YORK)
    assert following == utc(2026, 11, 2, 6, 30)  # not the second 01:30 an hour later


def test_recurring_series_limits_and_skipping_missed_runs() -> None:
    config = {"type": "CRON", "expression": "0 * * * *", "maxOccurrences": 3}
    recurrence = Recurrence.of(scheduling("RECURRING", config), resolve_zone("UTC"))
    received = utc(2026, 5, 1, 10, 15)
    first = first_occurrence(recurrence, received)
    assert first == utc(2026, 5, 1, 11)
    second = next_occurrence(recurrence, first, 1, now=first)
    assert second == utc(2026, 5, 1, 12)
    assert next_occurrence(recurrence, second, 3, now=second) is None  # maxOccurrences
    # The worker was down for a day: the next run is the next one from now, not a burst.
    late = next_occurrence(recurrence, first, 1, now=utc(2026, 5, 2, 9, 10))
    assert late == utc(2026, 5, 2, 10)


def test_interval_series_and_end_at() -> None:
    config = {"type": "INTERVAL", "intervalMs": 60_000, "endAt": "2026-05-01T10:03:00Z"}
    recurrence = Recurrence.of(scheduling("RECURRING", config), resolve_zone(None))
    first = first_occurrence(recurrence, utc(2026, 5, 1, 10, 0, 30))
    assert first == utc(2026, 5, 1, 10, 1, 30)
    second = next_occurrence(recurrence, first, 1, now=first)
    assert second == utc(2026, 5, 1, 10, 2, 30)
    assert next_occurrence(recurrence, second, 2, now=second) is None  # past endAt
    assert first_occurrence(recurrence, utc(2026, 6, 1)) is None


def test_recurrence_survives_its_json_round_trip_with_its_zone() -> None:
    config = {"type": "CRON", "expression": "0 9 * * 1", "endAt": "2027-01-01T00:00:00Z"}
    recurrence = Recurrence.of(scheduling("RECURRING", config), BERLIN)
    again = Recurrence.from_json(recurrence.to_json())
    assert again == recurrence
    assert again.zone.key == "Europe/Berlin"


def test_impossible_cron_dates_are_reported_not_looped_on() -> None:
    with pytest.raises(ScheduleError):
        next_cron_time("0 0 30 2 *", utc(2026, 1, 1), BERLIN)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_cron_time("0 0 * * *", datetime(2026, 1, 1), BERLIN)
