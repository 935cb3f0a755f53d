"""Lookup tables: CRUD, CSV/Excel import and export."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.errors import ValidationError
from junctionbox.services.lookups import FileFormat, ImportMode

router = APIRouter(prefix=f"{PREFIX}/lookups", route_class=ConsoleRoute)


async def _page(ctx: Ctx, status: int = 200, **extra: object) -> Response:
    tenant = ctx.require_tenant()
    lookup_type = ctx.query("type") or None
    page = await ctx.svc.lookups.list(
        tenant, ctx.page(50), lookup_type=lookup_type, search=ctx.query("search") or None
    )
    types = await ctx.svc.lookups.types(tenant)
    values = {"type": lookup_type or "", "key": "", "value": "", "description": ""}
    extra.setdefault("errors", {})
    extra.setdefault("values", values)
    return render(
        ctx, "lookups.html", status, page=page, types=types, flash=ctx.query("flash"), **extra
    )


@router.get("")
async def index(request: Request) -> Response:
    return await _page(await context(request))


@router.post("")
async def create(request: Request) -> Response:
    ctx = await context(request)
    values = {k: ctx.field(k) for k in ("type", "key", "value", "description")}
    try:
        await ctx.svc.lookups.create(
            ctx.require_tenant(),
            lookup_type=values["type"],
            key=values["key"],
            value=values["value"],
            description=values["description"] or None,
        )
    except ValidationError as exc:
        return await _page(ctx, 400, errors=problems_by_field(exc), values=values)
    return redirect(ctx, ctx.url("/lookups", type=values["type"], flash="Entry added."))


@router.post("/{lookup_id}/edit")
async def update(request: Request, lookup_id: str) -> Response:
    ctx = await context(request)
    changes = {"value": ctx.field("value"), "description": ctx.field("description") or None}
    found = await ctx.svc.lookups.update(ctx.require_tenant(), lookup_id, changes)
    return redirect(ctx, ctx.url("/lookups", type=found.type, flash=f"Saved {found.key}."))


@router.post("/{lookup_id}/delete")
async def delete(request: Request, lookup_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.lookups.delete(ctx.require_tenant(), lookup_id)
    return redirect(ctx, ctx.url("/lookups", type=ctx.query("type"), flash="Entry deleted."))


@router.post("/import")
async def import_file(request: Request) -> Response:
    ctx = await context(request)
    upload = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise ValidationError("choose a .csv or .xlsx file to import")
    mode = ctx.field("mode") or ImportMode.MERGE.value
    if mode not in {m.value for m in ImportMode}:
        raise ValidationError("mode must be merge or replace")
    data = await upload.read(ctx.svc.lookups.import_max_bytes + 1)
    report = await ctx.svc.lookups.import_file(
        ctx.require_tenant(),
        data,
        filename=upload.filename,
        lookup_type=ctx.field("type") or None,
        mode=ImportMode(mode),
    )
    message = (
        f"Imported {report.rows} rows into {', '.join(report.types)}: {report.created} created, "
        f"{report.updated} updated, {report.deleted} deleted."
    )
    return redirect(ctx, ctx.url("/lookups", flash=message))


@router.get("/export")
async def export(request: Request) -> Response:
    ctx = await context(request)
    raw = ctx.query("format") or "csv"
    if raw not in {f.value for f in FileFormat}:
        raise ValidationError("format must be csv or xlsx")
    found = await ctx.svc.lookups.export(
        ctx.require_tenant(), ctx.query("type") or None, FileFormat(raw)
    )
    return Response(
        found.data,
        media_type=found.media_type,
        headers={"content-disposition": f'attachment; filename="{found.filename}"'},
    )
