"""Health: ``/api/v1/health`` (alias ``/health``), plus liveness and readiness probes.

``/api/v1/health`` answers 200 when ``healthy`` or ``degraded`` and 503 when
``unhealthy`` (see :mod:`junctionbox.services.monitor` for the checks and the rules)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import Field
from starlette.responses import Response

from junctionbox import __version__
from junctionbox.api.deps import ServicesDep
from junctionbox.api.schemas import ApiModel
from junctionbox.services.monitor import PASS, WARN, Check, overall

router = APIRouter(tags=["health"])


class CheckOut(ApiModel):
    status: str = Field(description="pass, warn or fail")
    latency_ms: float | None = None
    message: str | None = None
    details: dict[str, Any] | None = None


class HealthOut(ApiModel):
    status: str = Field(description="healthy, degraded or unhealthy")
    version: str
    uptime_seconds: float
    timestamp: datetime
    checks: dict[str, CheckOut]


class LiveOut(ApiModel):
    status: str


class ReadyOut(ApiModel):
    status: str = Field(description="ready or not ready")
    database: CheckOut


_UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthOut, "description": "a component is unhealthy"}
}


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.get(
    "/api/v1/health",
    response_model=HealthOut,
    responses=_UNHEALTHY,
    summary="Component checks and overall status",
)
@router.get("/health", include_in_schema=False)
async def health(svc: ServicesDep) -> Response:
    checks = await svc.monitor.health()
    # Informative only: with Redis down and failing open the node still serves (rate-limits.md).
    limits = svc.api_limiter.backend.status()
    checks["rateLimits"] = Check(PASS) if limits.healthy else Check(WARN, message=limits.note)
    status = overall(checks)
    body = {
        "status": status,
        "version": __version__,
        "uptimeSeconds": round(time.monotonic() - svc.started_monotonic, 1),
        "timestamp": datetime.now(UTC).isoformat(),
        "checks": {name: check.out() for name, check in checks.items()},
    }
    return _json(body, 503 if status == "unhealthy" else 200)


@router.get("/api/v1/health/live", response_model=LiveOut, summary="Liveness: the process answers")
async def live() -> Response:
    return _json({"status": "alive"}, 200)


@router.get(
    "/api/v1/health/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "the database does not answer"}},
    summary="Readiness: the database answers",
)
async def ready(svc: ServicesDep) -> Response:
    check = await svc.monitor.database()
    ok = check.status == PASS
    body = {"status": "ready" if ok else "not ready", "database": check.out()}
    return _json(body, 200 if ok else 503)
