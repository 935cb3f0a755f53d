"""``GET /metrics``: Prometheus text exposition of this process's registry.

Protected: with ``JB_METRICS_TOKEN`` set it wants ``Authorization: Bearer <token>``;
without, it answers loopback clients only (a scraper on the same host or a sidecar)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.api.deps import ServicesDep, bearer_token
from junctionbox.errors import ForbiddenError, UnauthorizedError
from junctionbox.observability.metrics import CONTENT_TYPE

router = APIRouter(tags=["observability"])


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(request: Request, svc: ServicesDep) -> Response:
    token = svc.settings.metrics_token
    if token is not None:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise UnauthorizedError("metrics need Authorization: Bearer <JB_METRICS_TOKEN>")
    elif not _loopback(request):
        raise ForbiddenError("metrics answer loopback clients only unless JB_METRICS_TOKEN is set")
    await svc.monitor.refresh_gauges()
    return Response(svc.telemetry.metrics.exposition(), media_type=CONTENT_TYPE)
