"""Outbound integrations: list, create, edit (validation beside the fields), the
transformation editor's live test, enable/disable, versions with restore, test preview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.console.forms import (
    FORM_FIELDS,
    integration_body,
    integration_values,
    parse_json_text,
    pretty,
)
from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.outbound import AuthType, SchedulingMode
from junctionbox.domain.templates import CATALOGUE, find_template
from junctionbox.errors import JunctionboxError, NotFoundError, ValidationError
from junctionbox.services.integrations import SampleEvent, integration_view

router = APIRouter(prefix=f"{PREFIX}/integrations", route_class=ConsoleRoute)
METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
MODES = ("", "SIMPLE", "JSONATA", "SCRIPT")
AUTH_TYPES = tuple(t.value for t in AuthType)
SCHEDULING_MODES = tuple(m.value for m in SchedulingMode)
DEFAULT_SAMPLE = '{\n  "id": 1,\n  "name": "example"\n}'


def _submitted(ctx: Ctx) -> dict[str, str]:
    return {key: ctx.field(key) for key in FORM_FIELDS}


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    status = ctx.query("status")
    active = {"active": True, "inactive": False}.get(status)
    page = await ctx.svc.integrations.list(
        tenant,
        ctx.page(),
        is_active=active,
        event_type=ctx.query("eventType") or None,
        search=ctx.query("search") or None,
    )
    return render(ctx, "integrations/list.html", page=page, chosen=status)


def _form(ctx: Ctx, values: dict[str, str], errors: dict[str, str], **extra: Any) -> Response:
    status = 400 if errors else 200
    return render(
        ctx,
        "integrations/form.html",
        status,
        values=values,
        errors=errors,
        methods=METHODS,
        modes=MODES,
        auth_types=AUTH_TYPES,
        scheduling_modes=SCHEDULING_MODES,
        sample=ctx.field("sample") or DEFAULT_SAMPLE,
        templates=list(CATALOGUE.values()),
        **extra,
    )


@router.get("/new")
async def new(request: Request) -> Response:
    """An empty form, or one filled from a built-in template (``?template=``)."""
    ctx = await context(request)
    ctx.require_tenant()
    values = {"httpMethod": "POST", "outgoingAuthType": "NONE", "eventType": "*"}
    chosen = find_template(ctx.query("template")) if ctx.query("template") else None
    if ctx.query("template") and chosen is None:
        raise NotFoundError("template not found")
    if chosen is not None:
        values = integration_values(chosen.body)
    return _form(ctx, values, {}, integration=None, template=chosen)


@router.post("/new")
async def create(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values = _submitted(ctx)
    body, errors = integration_body(values)
    if not errors:
        body["isActive"] = ctx.field("isActive") == "on"
        try:
            created = await ctx.svc.integrations.create(tenant, body)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return render(
                ctx,
                "integrations/created.html",
                item=created.integration,
                secret=created.signing_secret,
            )
    return _form(ctx, values, errors, integration=None)


@router.get("/{integration_id}")
async def detail(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    stored = await ctx.svc.integrations.get(tenant, integration_id)
    versions = await ctx.svc.integrations.versions(tenant, integration_id)
    secret = await ctx.svc.integrations.secret(tenant, integration_id)
    view = integration_view(stored)
    return render(
        ctx,
        "integrations/detail.html",
        item=stored,
        view=view,
        document=pretty(view),
        versions=versions,
        secret=secret,
        flash=ctx.query("flash"),
    )


@router.get("/{integration_id}/edit")
async def edit(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    stored = await ctx.svc.integrations.get(ctx.require_tenant(), integration_id)
    return _form(ctx, integration_values(integration_view(stored)), {}, integration=stored)


@router.post("/{integration_id}/edit")
async def update(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    stored = await ctx.svc.integrations.get(tenant, integration_id)
    values = _submitted(ctx)
    body, errors = integration_body(values)
    if not errors:
        try:
            await ctx.svc.integrations.patch(tenant, integration_id, body)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/integrations/{integration_id}", flash="Saved."))
    return _form(ctx, values, errors, integration=stored)


@router.post("/{integration_id}/active")
async def set_active(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    active = ctx.field("active") == "true"
    await ctx.svc.integrations.set_active(ctx.require_tenant(), integration_id, active)
    message = "Enabled." if active else "Disabled."
    return redirect(ctx, ctx.url(f"/integrations/{integration_id}", flash=message))


@router.post("/{integration_id}/rotate-secret")
async def rotate_secret(request: Request, integration_id: str) -> Response:
    """A new signing key; the old one keeps signing beside it for the integration's overlap."""
    ctx = await context(request)
    await ctx.svc.integrations.rotate_secret(ctx.require_tenant(), integration_id)
    message = "New signing key: receivers must accept it before the overlap ends."
    return redirect(ctx, ctx.url(f"/integrations/{integration_id}", flash=message))


@router.post("/{integration_id}/restore")
async def restore(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    raw = ctx.field("version")
    if not raw.isdigit():
        raise ValidationError("choose a version to restore")
    await ctx.svc.integrations.restore(ctx.require_tenant(), integration_id, int(raw))
    return redirect(ctx, ctx.url(f"/integrations/{integration_id}", flash=f"Restored v{raw}."))


@router.post("/{integration_id}/delete")
async def delete(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.integrations.delete(ctx.require_tenant(), integration_id)
    return redirect(ctx, ctx.url("/integrations"))


@router.get("/{integration_id}/versions/{version}")
async def version(request: Request, integration_id: str, version: int) -> Response:
    ctx = await context(request)
    detail = await ctx.svc.integrations.version(ctx.require_tenant(), integration_id, version)
    return render(
        ctx,
        "integrations/version.html",
        integration_id=integration_id,
        detail=detail,
        document=pretty(detail.document),
    )


def _sample(ctx: Ctx, event_type: str | None) -> tuple[SampleEvent | None, str | None]:
    data, problem = parse_json_text(ctx.field("sample") or DEFAULT_SAMPLE, "the sample payload")
    if problem:
        return None, problem
    return SampleEvent(type=event_type, data=data), None


@router.post("/test-draft")
async def test_draft(request: Request) -> Response:
    """The transformation editor's live test: the form as it is now, run on the sample."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    body, errors = integration_body(_submitted(ctx))
    sample, problem = _sample(ctx, ctx.field("sampleType") or None)
    if errors or problem:
        message = problem or "; ".join(f"{k}: {v}" for k, v in errors.items())
        return render(ctx, "integrations/test_result.html", report=None, error=message)
    assert sample is not None
    body.setdefault("name", "draft")
    try:
        report = await ctx.svc.integrations.test_draft(tenant, body, sample, ctx.svc.requests)
    except JunctionboxError as exc:
        return render(ctx, "integrations/test_result.html", report=None, error=_explain(exc))
    return render(ctx, "integrations/test_result.html", report=report, error=None, pretty=pretty)


@router.post("/{integration_id}/test")
async def test_saved(request: Request, integration_id: str) -> Response:
    """What a delivery of the sample would send, without sending it."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    sample, problem = _sample(ctx, ctx.field("sampleType") or None)
    if problem:
        return render(ctx, "integrations/test_result.html", report=None, error=problem)
    assert sample is not None
    try:
        report = await ctx.svc.integrations.test_call(
            tenant, integration_id, sample, ctx.svc.requests
        )
    except JunctionboxError as exc:
        return render(ctx, "integrations/test_result.html", report=None, error=_explain(exc))
    return render(ctx, "integrations/test_result.html", report=report, error=None, pretty=pretty)


def _explain(exc: JunctionboxError) -> str:
    details = "; ".join(
        f"{'.'.join(str(p) for p in problem.loc if p not in ('body', 'integration'))}: "
        f"{problem.message}"
        for problem in exc.problems
    )
    return f"{exc.message}" + (f" ({details})" if details and details not in exc.message else "")
