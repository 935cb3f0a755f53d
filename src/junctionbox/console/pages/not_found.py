"""Any other ``/console/...`` path: a 404 page rather than the API's JSON envelope."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.web import PREFIX, ConsoleRoute
from junctionbox.errors import NotFoundError

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute)


@router.get("/{rest:path}")
async def not_found(request: Request, rest: str) -> Response:
    raise NotFoundError(f"there is no console page at {request.url.path}")
