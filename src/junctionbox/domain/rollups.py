"""Delivery rollups: counters per (tenant, integration, 5-minute bucket), pure.

An attempt adds 1 to ("status", its status), to ("error", its category) when it has one,
and to ("latency", the bucket of its response time) when it got a response. Percentiles
come from the latency buckets (the upper bound of the bucket that holds the rank, as
Prometheus' ``histogram_quantile`` does without interpolation), so no log row is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

BUCKET_SECONDS: Final = 300
LATENCY_BOUNDS_MS: Final = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
INF: Final = "inf"
STATUS: Final = "status"
ERROR: Final = "error"
LATENCY: Final = "latency"
SUCCESS: Final = "SUCCESS"
RETRYING: Final = "RETRYING"
FAILED: Final = "FAILED"


@dataclass(frozen=True, slots=True)
class AttemptFacts:
    """What a rollup needs of one attempt (a ``delivery_logs`` row)."""

    org_id: int
    integration_id: str
    created_at: datetime
    status: str
    error_category: str | None
    response_time_ms: int | None


RollupKey = tuple[int, str, datetime, str, str]  # org, integration, bucket, metric, key


def bucket_start(moment: datetime, seconds: int = BUCKET_SECONDS) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def latency_key(ms: int) -> str:
    for bound in LATENCY_BOUNDS_MS:
        if ms <= bound:
            return str(bound)
    return INF


def aggregate(attempts: Iterable[AttemptFacts]) -> dict[RollupKey, tuple[int, int]]:
    """(count, total ms) per rollup key, for one upsert per key. Runs in the commit of
    every batch of attempts: kept to a few dictionary operations per attempt."""
    out: dict[RollupKey, tuple[int, int]] = {}
    buckets: dict[int, datetime] = {}
    for a in attempts:
        epoch = int(a.created_at.timestamp()) // BUCKET_SECONDS
        start = buckets.get(epoch)
        if start is None:
            start = buckets[epoch] = datetime.fromtimestamp(epoch * BUCKET_SECONDS, tz=UTC)
        keys: list[tuple[RollupKey, int]] = [
            ((a.org_id, a.integration_id, start, STATUS, a.status), 0)
        ]
        if a.error_category:
            keys.append(((a.org_id, a.integration_id, start, ERROR, a.error_category[:64]), 0))
        if a.response_time_ms is not None:
            ms = a.response_time_ms
            keys.append(((a.org_id, a.integration_id, start, LATENCY, latency_key(ms)), ms))
        for key, ms in keys:
            count, total = out.get(key, (0, 0))
            out[key] = (count + 1, total + ms)
    return out


def percentile(histogram: Mapping[str, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in ms from latency bucket counts; None without data. The
    open top bucket answers with the largest finite bound (a lower bound of the truth)."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound in LATENCY_BOUNDS_MS:
        seen += histogram.get(str(bound), 0)
        if seen >= rank:
            return float(bound)
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass
class Totals:
    """Counts summed over buckets: attempts by status, errors, latency buckets."""

    success: int = 0
    retrying: int = 0
    failed: int = 0
    latency_count: int = 0
    latency_ms: int = 0

    @property
    def attempts(self) -> int:
        return self.success + self.retrying + self.failed

    @property
    def finished(self) -> int:
        return self.success + self.failed

    def success_rate(self) -> float | None:
        """Delivered over deliveries that ended (a retried attempt is not an end)."""
        return round(self.success / self.finished, 4) if self.finished else None

    def error_rate(self) -> float | None:
        """Attempts that failed (retried or final) over all attempts."""
        return round((self.retrying + self.failed) / self.attempts, 4) if self.attempts else None

    def add(self, metric: str, key: str, count: int, total_ms: int) -> None:
        if metric == STATUS:
            if key == SUCCESS:
                self.success += count
            elif key == RETRYING:
                self.retrying += count
            elif key == FAILED:
                self.failed += count
        elif metric == LATENCY:
            self.latency_count += count
            self.latency_ms += total_ms


def window_start(now: datetime, window: timedelta) -> datetime:
    """The first bucket a window ending ``now`` covers (whole buckets only)."""
    return bucket_start(now - window)
