"""Dashboard and analytics (seed 003 ``/dashboard``, ``/analytics``), from rollups only.

Every figure comes from ``delivery_rollups`` (5-minute buckets kept as attempts are
recorded), the DLQ counts and the queue, for the tenant and, for an organization, its
units. Counts equal what ``delivery_logs`` holds for the same period: one rollup count
per attempt row. Periods are whole 5-minute buckets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.identity import TenantContext
from junctionbox.domain.rollups import ERROR, LATENCY, Totals, bucket_start, percentile
from junctionbox.errors import ValidationError
from junctionbox.services.streams import DISPATCHER_GROUP
from junctionbox.store.database import Database
from junctionbox.store.queries import observability as obs
from junctionbox.store.queries.entities import unit_ids
from junctionbox.store.queries.rollups import rollups_between
from junctionbox.store.tables import outbound_integrations
from junctionbox.store.types import utcnow

INTERVALS: Final = {"5m": 300, "hour": 3600, "day": 86400}
MAX_POINTS: Final = 2000
TOP_FAILING: Final = 5


@dataclass
class _Group:
    totals: Totals
    errors: dict[str, int]
    latency: dict[str, int]

    @classmethod
    def empty(cls) -> _Group:
        return cls(Totals(), {}, {})

    def add(self, row: Any) -> None:
        metric, key, count = row["metric"], row["key"], int(row["count"])
        self.totals.add(metric, key, count, int(row["total_ms"]))
        if metric == ERROR:
            self.errors[key] = self.errors.get(key, 0) + count
        elif metric == LATENCY:
            self.latency[key] = self.latency.get(key, 0) + count

    def figures(self) -> dict[str, Any]:
        t = self.totals
        return {
            "attempts": t.attempts,
            "delivered": t.success,
            "failed": t.failed,
            "retries": t.retrying,
            "successRate": t.success_rate(),
            "errorRate": t.error_rate(),
            "latency": {
                "avgMs": round(t.latency_ms / t.latency_count, 1) if t.latency_count else None,
                "p50Ms": percentile(self.latency, 0.50),
                "p95Ms": percentile(self.latency, 0.95),
                "p99Ms": percentile(self.latency, 0.99),
            },
        }


def _errors(counts: dict[str, int]) -> list[dict[str, Any]]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"category": k, "count": v} for k, v in ordered]


def _group(rows: Iterable[Any]) -> _Group:
    group = _Group.empty()
    for row in rows:
        group.add(row)
    return group


class AnalyticsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _scope(self, conn: AsyncConnection, tenant: TenantContext) -> list[int]:
        """Itself, and an organization's units."""
        if tenant.entity.is_unit:
            return [tenant.entity.id]
        return [tenant.entity.id, *await unit_ids(conn, tenant.entity.id)]

    async def dashboard(self, tenant: TenantContext, window: timedelta) -> dict[str, Any]:
        now = utcnow()
        since = bucket_start(now - window)
        async with self.db.read() as conn:
            scope = await self._scope(conn, tenant)
            rows = await rollups_between(conn, scope, since, now + timedelta(minutes=5))
            dlq = await obs.dlq_size(conn, scope)
            due = await obs.oldest_due(conn, now, scope)
            lag = await obs.dispatcher_lag(conn, DISPATCHER_GROUP, scope)
            names = await _names(conn, {r["integration_id"] for r in rows})
        everything = _group(rows)
        per = _per_integration(rows, names)
        failing = sorted(
            (i for i in per if i["failed"] or i["retries"]),
            key=lambda i: (-(i["failed"] + i["retries"]), i["integrationId"]),
        )[:TOP_FAILING]
        return {
            "orgId": tenant.org_id,
            "from": since,
            "to": now,
            "kpis": {**everything.figures(), "activeIntegrations": len(per)},
            "errorCategories": _errors(everything.errors),
            "topFailingIntegrations": failing,
            "dlq": {
                "size": sum(n for s, n in dlq.items() if s != "ABANDONED"),
                "byStatus": dlq,
            },
            "workerLag": {
                "oldestDueSeconds": max(
                    ((now - w).total_seconds() for w in due.values()), default=0.0
                ),
                "undispatchedEvents": sum(lag.values()),
            },
        }

    async def analytics(
        self,
        tenant: TenantContext,
        *,
        since: datetime,
        until: datetime,
        interval: str,
        integration_id: str | None = None,
    ) -> dict[str, Any]:
        step = INTERVALS.get(interval)
        if step is None:
            raise ValidationError(f"interval must be one of {', '.join(INTERVALS)}")
        if until <= since:
            raise ValidationError("'to' must be after 'from'")
        if (until - since).total_seconds() / step > MAX_POINTS:
            raise ValidationError(f"too many points: at most {MAX_POINTS} intervals per request")
        async with self.db.read() as conn:
            scope = await self._scope(conn, tenant)
            rows = await rollups_between(
                conn, scope, bucket_start(since), until, integration_id=integration_id
            )
            names = await _names(conn, {r["integration_id"] for r in rows})
        everything = _group(rows)
        return {
            "orgId": tenant.org_id,
            "from": bucket_start(since),
            "to": until,
            "interval": interval,
            "totals": everything.figures(),
            "trends": _trends(rows, step),
            "integrations": _per_integration(rows, names),
            "errorCategories": _errors(everything.errors),
        }


def _trends(rows: list[Any], step: int) -> list[dict[str, Any]]:
    by: dict[datetime, _Group] = {}
    for row in rows:
        key = bucket_start(row["bucket_start"], step)
        by.setdefault(key, _Group.empty()).add(row)
    return [{"bucketStart": k, **by[k].figures()} for k in sorted(by)]


def _per_integration(rows: list[Any], names: dict[str, str]) -> list[dict[str, Any]]:
    by: dict[str, _Group] = {}
    for row in rows:
        by.setdefault(row["integration_id"], _Group.empty()).add(row)
    return [
        {
            "integrationId": key,
            "name": names.get(key),
            **by[key].figures(),
            "errorCategories": _errors(by[key].errors),
        }
        for key in sorted(by)
    ]


async def _names(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    query = select(outbound_integrations.c.id, outbound_integrations.c.name).where(
        outbound_integrations.c.id.in_(sorted(ids))
    )
    return {str(i): str(n) for i, n in (await conn.execute(query)).all()}
