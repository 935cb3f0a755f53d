"""Event types and their schemas (list, versions, register), event streams (list, edit) and
SQL table sources (list, enable/disable, rename, poll now)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.forms import parse_json_text, pretty
from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.schema_compat import CompatibilityMode
from junctionbox.errors import ConflictError, JunctionboxError, ValidationError
from junctionbox.services.streams import StreamSettings

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute)
MODES = tuple(m.value for m in CompatibilityMode)


async def _types_page(ctx: Ctx, status: int = 200, **extra: object) -> Response:
    page = await ctx.svc.schemas.list_types(
        ctx.require_tenant(), ctx.page(), search=ctx.query("search") or None
    )
    extra.setdefault("errors", {})
    extra.setdefault("values", {"name": "", "schema": "", "compatibility": "", "description": ""})
    return render(
        ctx,
        "catalog/event_types.html",
        status,
        page=page,
        modes=MODES,
        flash=ctx.query("flash"),
        **extra,
    )


@router.get("/event-types")
async def event_types(request: Request) -> Response:
    return await _types_page(await context(request))


@router.post("/event-types")
async def register(request: Request) -> Response:
    ctx = await context(request)
    values = {k: ctx.field(k) for k in ("name", "schema", "compatibility", "description")}
    schema, problem = parse_json_text(values["schema"], "the schema")
    if problem:
        return await _types_page(ctx, 400, errors={"schema": problem}, values=values)
    try:
        view, created = await ctx.svc.schemas.register(
            ctx.require_tenant(),
            values["name"],
            schema,
            compatibility=values["compatibility"] or None,
            description=values["description"] or None,
        )
    except (ValidationError, ConflictError) as exc:
        errors = problems_by_field(exc)
        errors.setdefault("schema", exc.message)
        return await _types_page(ctx, exc.status, errors=errors, values=values)
    note = f"Registered version {view.schema.version}." if created else "Schema unchanged."
    return redirect(ctx, ctx.url(f"/event-types/{view.type.name}", flash=note))


@router.get("/event-types/{name}")
async def event_type(request: Request, name: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    view = await ctx.svc.schemas.get_type(tenant, name)
    raw = ctx.query("version")
    shown = view
    if raw.isdigit():
        shown = await ctx.svc.schemas.get_version(tenant, name, int(raw))
    fields = await ctx.svc.schemas.fields(tenant, name)
    return render(
        ctx,
        "catalog/event_type.html",
        fields=fields.fields,
        view=view,
        shown=shown,
        schema=pretty(shown.schema.schema),
        modes=MODES,
        flash=ctx.query("flash"),
    )


SOURCE_EXAMPLE = (
    '{\n  "table": "notification_queue",\n  "idColumn": "id",\n  "typeColumn": "event_type",'
    '\n  "payloadColumn": "payload",\n  "tenantColumn": "entity_rid",'
    '\n  "pollIntervalSeconds": 5\n}'
)


async def _sources_page(ctx: Ctx, status: int = 200, **extra: object) -> Response:
    tenant = ctx.require_tenant()
    streams = await ctx.svc.streams.all(tenant)
    page = await ctx.svc.sources.list(tenant, ctx.page())
    extra.setdefault("groups", await ctx.svc.streams.groups(tenant))
    extra.setdefault("errors", {})
    extra.setdefault("values", {"name": "", "connectionString": "", "config": SOURCE_EXAMPLE})
    extra.setdefault("preview", None)
    return render(
        ctx,
        "catalog/sources.html",
        status,
        streams=streams,
        page=page,
        flash=ctx.query("flash"),
        pretty=pretty,
        **extra,
    )


@router.get("/sources")
async def sources(request: Request) -> Response:
    return await _sources_page(await context(request))


@router.post("/sources")
async def create_source(request: Request) -> Response:
    """Create a SQL table source, or (``action=test``) connect and map up to ten rows first."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values = {k: ctx.field(k) for k in ("name", "connectionString", "config")}
    config, problem = parse_json_text(values["config"] or "{}", "the configuration")
    if problem:
        return await _sources_page(ctx, 400, errors={"config": problem}, values=values)
    try:
        if ctx.field("action") == "test":
            preview = await ctx.svc.sources.test(
                tenant, connection_string=values["connectionString"], config=config
            )
            return await _sources_page(ctx, values=values, preview=preview)
        created = await ctx.svc.sources.create(
            tenant,
            name=values["name"],
            connection_string=values["connectionString"],
            config=config,
            is_active=ctx.field("isActive") == "on",
        )
    except JunctionboxError as exc:
        errors = problems_by_field(exc)
        errors.setdefault("_", exc.message)
        return await _sources_page(ctx, exc.status, errors=errors, values=values)
    return redirect(ctx, ctx.url("/sources", flash=f"Source {created.name} created."))


def _optional_int(ctx: Ctx, name: str) -> int | None:
    raw = ctx.field(name)
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationError(f"{name}: must be a whole number")
    return int(raw)


@router.post("/streams/{name}")
async def configure_stream(request: Request, name: str) -> Response:
    ctx = await context(request)
    partitions = _optional_int(ctx, "partitionCount")
    if partitions is None:
        raise ValidationError("partitionCount: required")
    wanted = StreamSettings(
        partition_count=partitions,
        retention_seconds=_optional_int(ctx, "retentionSeconds"),
        retention_bytes=_optional_int(ctx, "retentionBytes"),
        description=ctx.field("description") or None,
    )
    await ctx.svc.streams.configure(ctx.require_tenant(), name, wanted)
    return redirect(ctx, ctx.url("/sources", flash=f"Stream {name} saved."))


@router.post("/sources/{source_id}")
async def update_source(request: Request, source_id: str) -> Response:
    """One source: enable, disable, rename, poll now, reconfigure or move its checkpoint."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    action = ctx.field("action")
    sources = ctx.svc.sources
    if action == "poll":
        report = await sources.poll_now(tenant, source_id)
        message = (
            f"Polled {source_id}: {report.status}, {report.rows_read} rows read, "
            f"{report.appended} events published"
            + (f", error: {report.error}" if report.error else "")
        )
        return redirect(ctx, ctx.url("/sources", flash=message))
    if action in ("from-beginning", "from-latest"):
        await sources.reset_checkpoint(tenant, source_id, None, latest=action == "from-latest")
        return redirect(ctx, ctx.url("/sources", flash=f"Checkpoint of {source_id} moved."))
    changes: dict[str, object] = {}
    if action in ("enable", "disable"):
        changes["isActive"] = action == "enable"
    elif action == "rename":
        changes["name"] = ctx.field("name")
    elif action == "configure":
        config, problem = parse_json_text(ctx.field("config") or "{}", "the configuration")
        if problem or not isinstance(config, dict):
            raise ValidationError(problem or "the configuration must be a JSON object")
        changes.update(config)
        if ctx.field("connectionString"):  # blank keeps the stored one
            changes["connectionString"] = ctx.field("connectionString")
    else:
        raise ValidationError(
            "action must be enable, disable, rename, configure, poll, from-beginning or from-latest"
        )
    await sources.update(tenant, source_id, changes)
    return redirect(ctx, ctx.url("/sources", flash=f"Source {source_id} saved."))
