"""Scheduled deliveries (DELAYED and RECURRING integrations): list and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.web import PREFIX, ConsoleRoute, context, redirect, render
from junctionbox.domain.delivery import ScheduleStatus
from junctionbox.errors import ValidationError
from junctionbox.store.queries.scheduled_integrations import ScheduledFilter

router = APIRouter(prefix=f"{PREFIX}/scheduled", route_class=ConsoleRoute)
STATUSES = tuple(s.value for s in ScheduleStatus)


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    status = ctx.query("status")
    if status and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    where = ScheduledFilter(
        (),  # the service narrows to the tenant's organizations
        status=status or None,
        integration_id=ctx.query("integrationId") or None,
        event_type=ctx.query("eventType") or None,
    )
    page = await ctx.svc.schedules.list(tenant, where, ctx.page())
    return render(ctx, "scheduled.html", page=page, statuses=STATUSES, flash=ctx.query("flash"))


@router.post("/cancel-pending")
async def cancel_pending(request: Request) -> Response:
    """Cancel every pending occurrence of one integration (e.g. before changing it)."""
    ctx = await context(request)
    integration_id = ctx.field("integrationId")
    if not integration_id:
        raise ValidationError("choose the integration whose pending deliveries to cancel")
    tenant = ctx.require_tenant()
    await ctx.svc.integrations.get(tenant, integration_id)  # 404 for another tenant's
    result, remaining = await ctx.svc.schedules.cancel_pending(
        tenant, integration_id, ctx.field("reason") or "cancelled in the console"
    )
    message = f"Cancelled {result.cancelled} pending deliveries" + (
        f"; {remaining} still pending (run it again)." if remaining else "."
    )
    return redirect(ctx, ctx.url("/scheduled", integrationId=integration_id, flash=message))


@router.post("/{scheduled_id}/cancel")
async def cancel(request: Request, scheduled_id: str) -> Response:
    ctx = await context(request)
    reason = ctx.field("reason") or "cancelled in the console"
    await ctx.svc.schedules.cancel(ctx.require_tenant(), scheduled_id, reason)
    return redirect(ctx, ctx.url("/scheduled", flash=f"Cancelled {scheduled_id}."))
