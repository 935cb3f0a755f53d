"""Delivery logs: the filterable list and one attempt's detail (request, response, trace and a
copyable curl command)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from junctionbox.console.forms import pretty
from junctionbox.console.web import PREFIX, ConsoleRoute, Ctx, context, render
from junctionbox.domain.delivery import AttemptStatus
from junctionbox.errors import ValidationError
from junctionbox.services.delivery_logs import ExportFormat
from junctionbox.store.queries.delivery_logs import LogFilter

router = APIRouter(prefix=f"{PREFIX}/logs", route_class=ConsoleRoute)
STATUSES = tuple(s.value for s in AttemptStatus)


def moment(raw: str, what: str) -> datetime | None:
    """A time typed in a ``datetime-local`` field (read as UTC) or ISO 8601."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValidationError(f"{what}: not a date and time: {raw!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filter(ctx: Ctx) -> LogFilter:
    status = ctx.query("status")
    if status and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    return LogFilter(
        statuses=(status,) if status else (),
        event_type=ctx.query("eventType") or None,
        integration_id=ctx.query("integrationId") or None,
        since=moment(ctx.query("from"), "from"),
        until=moment(ctx.query("to"), "to"),
        search=ctx.query("search") or None,
    )


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    page = await ctx.svc.delivery_logs.list(tenant, _filter(ctx), ctx.page())
    return render(ctx, "logs/list.html", page=page, statuses=STATUSES)


@router.get("/export")
async def export(request: Request) -> Response:
    """The filtered list as CSV or JSON (the API's export, capped the same way)."""
    ctx = await context(request)
    raw = ctx.query("format") or "csv"
    if raw not in {f.value for f in ExportFormat}:
        raise ValidationError("format must be csv or json")
    found = await ctx.svc.delivery_logs.export(
        ctx.require_tenant(), _filter(ctx), ExportFormat(raw)
    )
    headers = {
        "content-disposition": f'attachment; filename="{found.filename}"',
        "x-export-truncated": "true" if found.truncated else "false",
    }
    return StreamingResponse(found.chunks, media_type=found.media_type, headers=headers)


@router.get("/{log_id}")
async def detail(request: Request, log_id: str) -> Response:
    ctx = await context(request)
    trace = await ctx.svc.delivery_logs.trace(ctx.require_tenant(), log_id)
    record = trace.record
    return render(
        ctx,
        "logs/detail.html",
        record=record,
        trace=trace,
        request_headers=pretty(record.request_headers or {}),
        response_headers=pretty(record.response_headers or {}),
        steps=record.steps or [],
        pretty=pretty,
    )
