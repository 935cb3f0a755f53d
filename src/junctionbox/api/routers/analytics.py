"""Dashboard and analytics (seed 003): ``/api/v1/dashboard``, ``/api/v1/analytics``.

Tenant-scoped (the credential and ``orgId``; an organization sees its units), computed
from rollups (see :mod:`junctionbox.services.analytics`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from junctionbox.api.deps import ServicesDep, TenantDep
from junctionbox.errors import ValidationError
from junctionbox.settings import parse_duration

router = APIRouter(tags=["dashboard"])
MAX_WINDOW = timedelta(days=90)


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def _window(text: str) -> timedelta:
    try:
        window = parse_duration(text)
    except (ValueError, TypeError) as exc:
        raise ValidationError("window must be a duration such as 15m, 24h or 7d") from exc
    if not timedelta(minutes=5) <= window <= MAX_WINDOW:
        raise ValidationError("window must be between 5m and 90d")
    return window


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/api/v1/dashboard", summary="System health and delivery KPIs of the tenant")
async def dashboard(
    tenant: TenantDep,
    svc: ServicesDep,
    window: Annotated[str, Query(description="Period: 15m, 1h, 24h, 7d ...")] = "24h",
) -> Response:
    return _json(await svc.analytics.dashboard(tenant, _window(window)))


@router.get("/api/v1/analytics", summary="Delivery analytics and trends by interval")
async def analytics(
    tenant: TenantDep,
    svc: ServicesDep,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    interval: Annotated[str, Query(description="5m, hour or day")] = "hour",
    integration_id: Annotated[str | None, Query(alias="integrationId", max_length=40)] = None,
) -> Response:
    now = datetime.now(UTC)
    end = _aware(until, now)
    start = _aware(since, end - timedelta(hours=24))
    if end - start > MAX_WINDOW:
        raise ValidationError("at most 90 days per request")
    body = await svc.analytics.analytics(
        tenant, since=start, until=end, interval=interval, integration_id=integration_id
    )
    return _json(body)


@router.get("/api/v1/analytics/summary", summary="Totals of the last period")
async def summary(
    tenant: TenantDep,
    svc: ServicesDep,
    window: Annotated[str, Query(description="Period: 15m, 1h, 24h, 7d ...")] = "24h",
) -> Response:
    body = await svc.analytics.dashboard(tenant, _window(window))
    return _json({k: body[k] for k in ("orgId", "from", "to", "kpis", "errorCategories")})
