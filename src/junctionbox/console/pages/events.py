"""The event log: browse a stream's events (filters by type and time) and replay a range to
the integrations (with a dry run that only counts)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.api.routers.subscribe import EventStream, open_subscription
from junctionbox.console.forms import pretty
from junctionbox.console.pages.logs import moment
from junctionbox.console.web import PREFIX, ConsoleRoute, Ctx, context, redirect, render
from junctionbox.domain.events import StoredEvent
from junctionbox.errors import NotFoundError, ValidationError
from junctionbox.services.replay import ReplayRequest, ReplayService
from junctionbox.store.queries.events import EventFilter

router = APIRouter(prefix=f"{PREFIX}/events", route_class=ConsoleRoute)
DEFAULT_STREAM = "default"


def type_patterns(raw: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``order.created, invoice.*`` -> exact types and prefixes (``*`` alone: any)."""
    patterns = [p.strip() for p in raw.split(",") if p.strip() and p.strip() != "*"]
    exact = tuple(p for p in patterns if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return exact, prefixes


def _shown(event: StoredEvent) -> dict[str, object]:
    return {"event": event, "cloudevent": pretty({**event.to_cloudevent(), "data": event.data()})}


async def _streams(ctx: Ctx) -> list[str]:
    return [s.stream.name for s in await ctx.svc.streams.all(ctx.require_tenant())]


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    streams = await _streams(ctx)
    stream = ctx.query("stream") or (streams[0] if streams else DEFAULT_STREAM)
    exact, prefixes = type_patterns(ctx.query("type"))
    where = EventFilter(
        tenant.org_id,
        stream,
        since=moment(ctx.query("from"), "from"),
        until=moment(ctx.query("to"), "to"),
        types=exact,
        type_prefixes=prefixes,
    )
    page = None
    if stream in streams:
        try:
            _, page = await ctx.svc.streams.read(tenant, where, ctx.page(), by_time=True)
        except NotFoundError:
            page = None
    return render(
        ctx,
        "events.html",
        streams=streams,
        stream=stream,
        page=page,
        rows=[_shown(e) for e in page.items] if page else [],
        flash=ctx.query("flash"),
    )


@router.get("/live")
async def live(request: Request) -> Response:
    ctx = await context(request)
    return render(ctx, "events_live.html", streams=await _streams(ctx))


@router.get("/live/stream")
async def live_stream(request: Request) -> Response:
    """The tenant's new events as Server-Sent Events, authenticated by the console session
    (a browser's EventSource cannot send the API's credential headers)."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    subscription = await open_subscription(
        ctx.svc,
        tenant.org_id,
        [ctx.query("streams")],
        [ctx.query("types")],
        "latest",
        request.headers.get("last-event-id"),
    )
    return EventStream(subscription, ctx.svc.live.heartbeat_seconds, named=False)


@router.post("/replay")
async def replay(request: Request) -> Response:
    ctx = await context(request)
    exact, prefixes = type_patterns(ctx.field("types"))
    stream = ctx.field("stream") or DEFAULT_STREAM
    since, until = moment(ctx.field("from"), "from"), moment(ctx.field("to"), "to")
    if since is None and until is None:
        raise ValidationError("give the time range to replay: at least 'from'")
    wanted = ReplayRequest(
        stream=stream,
        from_time=since,
        to_time=until,
        event_types=exact + tuple(f"{p}*" for p in prefixes),
        integration_id=ctx.field("integrationId") or None,
        dry_run=ctx.field("dryRun") == "on",
    )
    result = await ReplayService(ctx.svc.db, ctx.svc.queue).replay(ctx.require_tenant(), wanted)
    if result.dry_run:
        message = f"Dry run: {result.events} events, {result.deliveries} deliveries would be made."
    else:
        message = (
            f"Replay {result.replay_id}: {result.events} events, "
            f"{result.deliveries} deliveries queued."
        )
    return redirect(ctx, ctx.url("/events", stream=stream, flash=message))
