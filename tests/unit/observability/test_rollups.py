"""Rollup aggregation and percentiles from histogram buckets (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from junctionbox.domain.rollups import (
    INF,
    AttemptFacts,
    Totals,
    aggregate,
    bucket_start,
    latency_key,
    percentile,
)

T0 = datetime(2026, 12, 4, 10, 7, 31, tzinfo=UTC)


def facts(
    status: str, ms: int | None, category: str | None = None, at: datetime = T0
) -> AttemptFacts:
    return AttemptFacts(100, "int_a", at, status, category, ms)


def test_buckets_are_five_minutes_aligned() -> None:
    assert bucket_start(T0) == datetime(2026, 12, 4, 10, 5, tzinfo=UTC)
    assert bucket_start(T0, 3600) == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def test_latency_keys() -> None:
    assert latency_key(0) == "25"
    assert latency_key(25) == "25"
    assert latency_key(26) == "50"
    assert latency_key(30_001) == INF


def test_aggregate_counts_each_attempt_once_per_metric() -> None:
    counts = aggregate(
        [
            facts("SUCCESS", 40),
            facts("SUCCESS", 45),
            facts("RETRYING", None, "TIMEOUT"),
            facts("FAILED", 700, "SERVER_ERROR", T0 + timedelta(minutes=5)),
        ]
    )
    b1, b2 = bucket_start(T0), bucket_start(T0 + timedelta(minutes=5))
    assert counts[(100, "int_a", b1, "status", "SUCCESS")] == (2, 0)
    assert counts[(100, "int_a", b1, "latency", "50")] == (2, 85)
    assert counts[(100, "int_a", b1, "error", "TIMEOUT")] == (1, 0)
    assert counts[(100, "int_a", b2, "status", "FAILED")] == (1, 0)
    assert counts[(100, "int_a", b2, "latency", "1000")] == (1, 700)
    assert len(counts) == 7


def test_percentiles_from_buckets() -> None:
    histogram = {"25": 50, "100": 45, "1000": 4, INF: 1}
    assert percentile(histogram, 0.5) == 25.0
    assert percentile(histogram, 0.95) == 100.0
    assert percentile(histogram, 0.99) == 1000.0
    assert percentile(histogram, 1.0) == 30000.0  # the open bucket: the largest bound
    assert percentile({}, 0.5) is None


def test_totals_rates() -> None:
    totals = Totals()
    for key, count in (("SUCCESS", 6), ("RETRYING", 3), ("FAILED", 2)):
        totals.add("status", key, count, 0)
    assert totals.attempts == 11
    assert totals.success_rate() == 0.75  # 6 of 8 that ended
    assert totals.error_rate() == round(5 / 11, 4)
    assert Totals().success_rate() is None
