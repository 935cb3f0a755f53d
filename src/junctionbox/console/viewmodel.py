"""The dashboard's figures, gathered from the services and queries that exist today.

One function, ``dashboard``, returns everything the page shows; the aggregation is pure
(``summarize``) so that it can be tested without a database, and the gathering can later be
switched to the dashboard API's service without touching the template.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from markupsafe import Markup

from junctionbox.console import charts
from junctionbox.domain.delivery import DELIVERY_QUEUE, DlqStatus
from junctionbox.domain.identity import TenantContext
from junctionbox.errors import ServiceUnavailableError
from junctionbox.queue.jobs import JobState
from junctionbox.services.container import Services
from junctionbox.services.delivery_logs import scope_of
from junctionbox.store.queries import dashboard as queries
from junctionbox.store.queries.dashboard import AttemptPoint
from junctionbox.store.types import utcnow

WINDOW = timedelta(hours=24)
MAX_POINTS = 50_000  # rows read per dashboard view; beyond it the charts show the newest
LAG_WARNING_SECONDS = 60.0
STATUSES = ("SUCCESS", "RETRYING", "FAILED")


@dataclass(frozen=True)
class Check:
    name: str
    healthy: bool
    detail: str


@dataclass(frozen=True)
class Summary:
    """Aggregates of a window of attempts."""

    hours: list[str]
    by_status: dict[str, list[int]]
    p50: list[float]
    p95: list[float]
    p99: list[float]
    total: int
    succeeded: int
    failed: int
    top_failing: list[tuple[str, int]]

    @property
    def success_rate(self) -> float | None:
        decided = self.succeeded + self.failed
        return None if decided == 0 else self.succeeded / decided


@dataclass
class Dashboard:
    checks: list[Check]
    summary: Summary
    events_in: int
    dlq_size: int
    worker_lag: float | None
    queue_depth: dict[str, int]
    charts: dict[str, Markup] = field(default_factory=dict)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarize(points: Sequence[AttemptPoint], now: datetime, hours: int = 24) -> Summary:
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    labels = [(start + timedelta(hours=i)).strftime("%H:00") for i in range(hours)]
    by_status = {s: [0] * hours for s in STATUSES}
    latencies: dict[int, list[float]] = defaultdict(list)
    failing: Counter[str] = Counter()
    succeeded = failed = 0
    for p in points:
        slot = int((p.created_at - start).total_seconds() // 3600)
        if not 0 <= slot < hours:
            continue
        status = p.status if p.status in by_status else "FAILED"
        by_status[status][slot] += 1
        if p.response_time_ms is not None:
            latencies[slot].append(float(p.response_time_ms))
        if p.status == "SUCCESS":
            succeeded += 1
        else:
            failed += 1
            failing[p.integration_name or p.integration_id or "(deleted)"] += 1
    ordered = [sorted(latencies[i]) for i in range(hours)]
    return Summary(
        hours=labels,
        by_status=by_status,
        p50=[percentile(v, 0.50) for v in ordered],
        p95=[percentile(v, 0.95) for v in ordered],
        p99=[percentile(v, 0.99) for v in ordered],
        total=succeeded + failed,
        succeeded=succeeded,
        failed=failed,
        top_failing=failing.most_common(8),
    )


async def _database_check(svc: Services) -> Check:
    try:
        seconds = await svc.db.ping()
    except ServiceUnavailableError as exc:
        return Check("Database", False, exc.message)
    return Check("Database", True, f"answers in {seconds * 1000:.1f} ms")


async def dashboard(svc: Services, tenant: TenantContext) -> Dashboard:
    now = utcnow()
    checks = [await _database_check(svc)]
    depth = await svc.queue.depth(DELIVERY_QUEUE)
    lag = await svc.queue.oldest_ready_age(DELIVERY_QUEUE)
    ready = depth.get(JobState.READY, 0)
    running = depth.get(JobState.RUNNING, 0)
    checks.append(
        Check(
            "Workers",
            lag is None or lag < LAG_WARNING_SECONDS,
            "no due delivery waiting" if lag is None else f"oldest due delivery waits {lag:.0f} s",
        )
    )
    # The queue is shared by every tenant: its counts are for ADMINs only.
    detail = f"{ready} ready, {running} running" if tenant.principal.is_admin else "accepting work"
    checks.append(Check("Queue", True, detail))
    scope = scope_of(tenant)
    async with svc.db.read() as conn:
        points = await queries.attempts_since(conn, scope, now - WINDOW, MAX_POINTS)
        events_in = await queries.events_since(conn, scope, now - WINDOW)
    dlq = await svc.dlq.stats(tenant)
    summary = summarize(points, now)
    view = Dashboard(
        checks=checks,
        summary=summary,
        events_in=events_in,
        dlq_size=dlq.get(DlqStatus.PENDING_RETRY, 0) + dlq.get(DlqStatus.ABANDONED, 0),
        worker_lag=lag,
        queue_depth={state.value: n for state, n in depth.items()},
    )
    view.charts = render_charts(summary)
    return view


def render_charts(summary: Summary) -> dict[str, Markup]:
    series = [charts.Series(s, summary.by_status[s]) for s in STATUSES]
    latency = [
        charts.Series("p50", summary.p50),
        charts.Series("p95", summary.p95),
        charts.Series("p99", summary.p99),
    ]
    return {
        "deliveries": charts.stacked_bars(
            summary.hours, series, title="Delivery attempts per hour by status"
        ),
        "latency": charts.lines(
            summary.hours, latency, title="Response time percentiles per hour", unit=" ms"
        ),
        "failing": charts.hbars(
            [(n, float(c)) for n, c in summary.top_failing],
            title="Top failing integrations (24 h)",
        ),
    }
