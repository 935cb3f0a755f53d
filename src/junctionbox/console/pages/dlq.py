"""The dead-letter queue: filter, retry one, bulk retry, delete (each confirmed first)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.forms import pretty
from junctionbox.console.pages.logs import moment
from junctionbox.console.web import PREFIX, ConsoleRoute, Ctx, context, redirect, render
from junctionbox.domain.delivery import DlqStatus
from junctionbox.errors import ValidationError
from junctionbox.store.queries.dlq import DlqFilter

router = APIRouter(prefix=f"{PREFIX}/dlq", route_class=ConsoleRoute)
STATUSES = tuple(s.value for s in DlqStatus)
MAX_BULK = 100


def _filter(ctx: Ctx) -> DlqFilter:
    status = ctx.query("status")
    if status and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    return DlqFilter(
        status=DlqStatus(status) if status else None,
        integration_id=ctx.query("integrationId") or None,
        event_type=ctx.query("eventType") or None,
        since=moment(ctx.query("from"), "from"),
        until=moment(ctx.query("to"), "to"),
        search=ctx.query("search") or None,
    )


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    page = await ctx.svc.dlq.list(tenant, ctx.page(), _filter(ctx))
    stats = await ctx.svc.dlq.stats(tenant)
    return render(
        ctx, "dlq/list.html", page=page, stats=stats, statuses=STATUSES, flash=ctx.query("flash")
    )


@router.get("/{entry_id}")
async def detail(request: Request, entry_id: str) -> Response:
    ctx = await context(request)
    found = await ctx.svc.dlq.get(ctx.require_tenant(), entry_id)
    trace = [dict(row) for row in found.trace]
    return render(ctx, "dlq/detail.html", entry=found.entry, trace=trace, pretty=pretty)


@router.post("/{entry_id}/retry")
async def retry(request: Request, entry_id: str) -> Response:
    ctx = await context(request)
    done = await ctx.svc.dlq.retry(ctx.require_tenant(), entry_id)
    return redirect(ctx, ctx.url("/dlq", flash=f"Retry {done.attempt} of {entry_id} queued."))


@router.post("/{entry_id}/delete")
async def delete(request: Request, entry_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.dlq.delete(ctx.require_tenant(), entry_id)
    return redirect(ctx, ctx.url("/dlq", flash=f"Deleted {entry_id}."))


@router.post("/bulk")
async def bulk(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    ids = ctx.fields("ids")
    if not ids:
        raise ValidationError("select at least one entry")
    if len(ids) > MAX_BULK:
        raise ValidationError(f"at most {MAX_BULK} entries at a time")
    action = ctx.field("action")
    if action == "retry":
        results = await ctx.svc.dlq.retry_many(tenant, ids)
    elif action == "delete":
        results = await ctx.svc.dlq.delete_many(tenant, ids)
    else:
        raise ValidationError("action must be retry or delete")
    done = sum(1 for r in results if r.error is None)
    refused = [f"{r.id}: {r.error}" for r in results if r.error is not None]
    message = f"{action}: {done} of {len(results)} done." + (
        " Refused: " + "; ".join(refused) if refused else ""
    )
    return redirect(ctx, ctx.url("/dlq", flash=message))
