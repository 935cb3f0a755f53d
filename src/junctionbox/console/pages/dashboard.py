"""The dashboard: health, KPIs and the charts of the last 24 hours."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console import viewmodel
from junctionbox.console.web import PREFIX, ConsoleRoute, context, render

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute)


@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    ctx = await context(request)
    if ctx.tenant is None:
        return render(ctx, "dashboard.html", view=None)
    view = await viewmodel.dashboard(ctx.svc, ctx.tenant)
    template = (
        "partials/dashboard_body.html" if request.headers.get("hx-request") else ("dashboard.html")
    )
    return render(ctx, template, view=view)
