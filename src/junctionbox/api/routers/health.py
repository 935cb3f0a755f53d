"""Health: ``/api/v1/health`` (alias ``/health``), plus liveness and readiness probes."""

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
from junctionbox.errors import ServiceUnavailableError

router = APIRouter(tags=["health"])


class CheckOut(ApiModel):
    status: str
    latency_ms: float | None = None
    error: str | None = None


class HealthOut(ApiModel):
    status: str = Field(description="healthy or unhealthy")
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


async def _database_check(svc: Any) -> dict[str, Any]:
    try:
        seconds = await svc.db.ping()
    except ServiceUnavailableError as exc:
        return {"status": "unhealthy", "error": exc.message}
    return {"status": "healthy", "latencyMs": round(seconds * 1000, 2)}


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
    checks = {"database": await _database_check(svc)}
    healthy = all(c["status"] == "healthy" for c in checks.values())
    # Informative only: with Redis down and failing open the node still serves (rate-limits.md).
    limits = svc.api_limiter.backend.status()
    checks["rateLimits"] = {"status": "healthy" if limits.healthy else "degraded"}
    if limits.note:
        checks["rateLimits"]["error"] = limits.note
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "version": __version__,
        "uptimeSeconds": round(time.monotonic() - svc.started_monotonic, 1),
        "timestamp": datetime.now(UTC).isoformat(),
        "checks": checks,
    }
    return _json(body, 200 if healthy else 503)


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
    check = await _database_check(svc)
    ok = check["status"] == "healthy"
    return _json({"status": "ready" if ok else "not ready", "database": check}, 200 if ok else 503)
