"""The dashboard's figures: the same services as ``/api/v1/dashboard``, ``/api/v1/analytics``
and ``/api/v1/health`` (rollup rows, the DLQ counts, the health monitor).

Nothing here reads delivery attempts: the KPIs are ``AnalyticsService.dashboard`` for the
last 24 hours, the charts are ``AnalyticsService.analytics`` by hour, the health boxes are
``Monitor.health``. The cost of a view is bounded by the number of 5-minute rollup rows of
the window (per integration, status and latency bucket), not by the traffic. Turning
those documents into what the page shows (``summarize``, ``checks_of``) is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from junctionbox.console import charts
from junctionbox.domain.identity import TenantContext
from junctionbox.services.container import Services
from junctionbox.services.monitor import PASS, Check
from junctionbox.store.queries import dashboard as queries
from junctionbox.store.queries.entities import unit_ids
from junctionbox.store.types import utcnow

WINDOW = timedelta(hours=24)
HOURS = 24
STATUSES = ("SUCCESS", "RETRYING", "FAILED")
TREND_KEYS = {"SUCCESS": "delivered", "RETRYING": "retries", "FAILED": "failed"}
CHECK_NAMES = {"database": "Database", "queue": "Queue", "dispatcher": "Dispatcher"}
CHECK_NAMES |= {"workers": "Workers", "redis": "Redis"}


@dataclass(frozen=True)
class HealthBox:
    name: str
    status: str  # pass / warn / fail
    detail: str

    @property
    def healthy(self) -> bool:
        return self.status == PASS


@dataclass(frozen=True)
class Summary:
    """The hourly series of the charts."""

    hours: list[str]
    by_status: dict[str, list[int]]
    p50: list[float]
    p95: list[float]
    p99: list[float]


@dataclass
class Dashboard:
    checks: list[HealthBox]
    kpis: dict[str, Any]
    summary: Summary
    events_in: int
    dlq_size: int
    worker_lag: float
    top_failing: list[tuple[str, int]]
    charts: dict[str, Markup] = field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        rate = self.kpis.get("successRate")
        return None if rate is None else float(rate)


def chart_start(now: datetime) -> datetime:
    """The first hour of the charts: 24 whole hours ending with the current one."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def summarize(trends: Sequence[Mapping[str, Any]], start: datetime) -> Summary:
    """Hourly slots from the analytics trends (one entry per hour that has rollups)."""
    labels = [(start + timedelta(hours=i)).strftime("%H:00") for i in range(HOURS)]
    by_status = {s: [0] * HOURS for s in STATUSES}
    quantiles: dict[str, list[float]] = {q: [0.0] * HOURS for q in ("p50Ms", "p95Ms", "p99Ms")}
    for point in trends:
        slot = int((point["bucketStart"] - start).total_seconds() // 3600)
        if not 0 <= slot < HOURS:
            continue
        for status, key in TREND_KEYS.items():
            by_status[status][slot] += int(point[key])
        for q, values in quantiles.items():
            values[slot] = float(point["latency"][q] or 0.0)
    return Summary(labels, by_status, quantiles["p50Ms"], quantiles["p95Ms"], quantiles["p99Ms"])


def checks_of(health: Mapping[str, Check], *, admin: bool) -> list[HealthBox]:
    """The monitor's checks as boxes. Queue ages and worker counts are the platform's (every
    tenant's), so their figures are for ADMINs; others see the state and a plain word."""
    boxes = []
    for key, check in health.items():
        name = CHECK_NAMES.get(key, key)
        if admin or key == "database":
            detail = _detail(key, check)
        else:
            detail = {"pass": "working", "warn": "slow", "fail": "not working"}[check.status]
        boxes.append(HealthBox(name, check.status, detail))
    return boxes


def _detail(key: str, check: Check) -> str:
    if check.message:
        return check.message
    if key == "database" and check.latency_ms is not None:
        return f"answers in {check.latency_ms:.1f} ms"
    if key == "workers":
        return ", ".join(f"{n} {role}" for role, n in check.details.items()) or "none seen yet"
    if key == "queue":
        ages = check.details.get("oldestDueSeconds") or {}
        return f"oldest due job waits {max(ages.values(), default=0.0):.0f} s"
    if key == "dispatcher":
        return f"{check.details.get('undispatchedEvents', 0)} events to dispatch"
    return "ok"


async def dashboard(svc: Services, tenant: TenantContext) -> Dashboard:
    now = utcnow()
    start = chart_start(now)
    body = await svc.analytics.dashboard(tenant, WINDOW)
    trend = await svc.analytics.analytics(tenant, since=start, until=now, interval="hour")
    health = await svc.monitor.health()
    async with svc.db.read() as conn:
        scope = [tenant.entity.id]
        if not tenant.entity.is_unit:  # an organization sees its units, as in the API
            scope.extend(await unit_ids(conn, tenant.entity.id))
        events_in = await queries.events_since(conn, scope, now - WINDOW)
    failing = [
        (str(i["name"] or i["integrationId"]), int(i["failed"]) + int(i["retries"]))
        for i in body["topFailingIntegrations"]
    ]
    summary = summarize(trend["trends"], start)
    view = Dashboard(
        checks=checks_of(health, admin=tenant.principal.is_admin),
        kpis=body["kpis"],
        summary=summary,
        events_in=events_in,
        dlq_size=int(body["dlq"]["size"]),
        worker_lag=float(body["workerLag"]["oldestDueSeconds"]),
        top_failing=failing,
    )
    view.charts = render_charts(summary, failing)
    return view


def render_charts(summary: Summary, failing: Sequence[tuple[str, int]]) -> dict[str, Markup]:
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
            [(n, float(c)) for n, c in failing],
            title="Top failing integrations (24 h)",
        ),
    }
