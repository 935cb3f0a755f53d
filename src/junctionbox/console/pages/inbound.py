"""Inbound integrations (the real-time proxy): list with filters, create and edit (problems
beside the fields), the transformations' live test on a sample, enable/disable, versions,
delete, and the proxy URL with a curl example."""

from __future__ import annotations

import shlex
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.api.routers.inbound_integrations import InboundFields
from junctionbox.console.forms import parse_json_text
from junctionbox.console.specforms import Spec, body_of, pretty, validated, values_of
from junctionbox.console.web import (
    PREFIX,
    ConsoleRoute,
    Ctx,
    context,
    problems_by_field,
    redirect,
    render,
)
from junctionbox.domain.inbound import InboundAuthType, ProxyMethod
from junctionbox.domain.outbound import AuthType
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.expr import compile_transformer
from junctionbox.services.inbound import inbound_view

router = APIRouter(prefix=f"{PREFIX}/inbound", route_class=ConsoleRoute)
METHODS = tuple(m.value for m in ProxyMethod)
MODES = ("", "SIMPLE", "JSONATA", "SCRIPT")
DEFAULT_SAMPLE = '{\n  "id": 1,\n  "name": "example"\n}'
MASKED = "masked; leave as is to keep"


def _transform_specs(side: str) -> tuple[Spec, ...]:
    title = f"{side.capitalize()} transformation"
    return (
        Spec(f"{side}TransformationMode", "Mode", "select", MODES, section=title),
        Spec(f"{side}TransformScript", "Script / JSONata expression", "area", section=title),
        Spec(f"{side}FieldMappings", "Field mappings (SIMPLE, JSON list)", "json", section=title),
    )


SPECS: tuple[Spec, ...] = (
    Spec("name", "Name", section="Route"),
    Spec("type", "Type (the proxy route's name)", hint="crm-contacts", section="Route"),
    Spec("targetUrl", "Upstream URL", hint="https://api.partner.example.com/v1", section="Route"),
    Spec("httpMethod", "Upstream method", "select", METHODS, section="Route"),
    Spec("allowedMethods", "Allowed methods", "list", hint="GET, POST", section="Route"),
    Spec("description", "Description", section="Route"),
    Spec(
        "inboundAuthType",
        "Callers authenticate with",
        "select",
        tuple(t.value for t in InboundAuthType),
        section="Callers",
    ),
    Spec(
        "inboundAuthConfig",
        "Inbound auth config",
        "json",
        hint="API_KEY {name, value}; BEARER {token}; BASIC {username, password}; " + MASKED,
        section="Callers",
    ),
    Spec(
        "rateLimits",
        "Rate limits (JSON)",
        "json",
        hint='{"enabled": true, "maxRequests": 100, "windowSeconds": 60}',
        section="Callers",
    ),
    Spec(
        "outgoingAuthType",
        "Upstream auth",
        "select",
        tuple(a.value for a in AuthType),
        section="Upstream",
    ),
    Spec("outgoingAuthConfig", "Upstream auth config", "json", hint=MASKED, section="Upstream"),
    Spec("timeoutMs", "Timeout (ms)", "number", hint="30000", section="Upstream"),
    Spec(
        "retryPolicy",
        "Retry policy (JSON)",
        "json",
        hint='{"maxRetries": 2, "initialDelay": 100, "maxDelay": 2000}',
        section="Upstream",
    ),
    *_transform_specs("request"),
    *_transform_specs("response"),
)
SECTIONS = tuple(dict.fromkeys(s.section for s in SPECS))


def _submitted(ctx: Ctx) -> dict[str, str]:
    return {spec.name: ctx.field(spec.name) for spec in SPECS}


def _body(ctx: Ctx, values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    body, errors = body_of(SPECS, values)
    if not body.get("requestTransformationMode"):
        body.pop("requestTransformScript", None), body.pop("requestFieldMappings", None)
    if not body.get("responseTransformationMode"):
        body.pop("responseTransformScript", None), body.pop("responseFieldMappings", None)
    if body.get("inboundAuthType", "NONE") == "NONE":
        body.pop("inboundAuthConfig", None)
    if body.get("outgoingAuthType", "NONE") == "NONE":
        body.pop("outgoingAuthConfig", None)
    if not errors:
        _, errors = validated(InboundFields, body)
    return body, errors


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    status = ctx.query("status")
    page = await ctx.svc.inbound.list(
        tenant,
        ctx.page(),
        is_active={"active": True, "inactive": False}.get(status),
        kind=ctx.query("type") or None,
        search=ctx.query("search") or None,
    )
    return render(ctx, "requests_in/inbound_list.html", page=page, chosen=status)


def _form(ctx: Ctx, values: dict[str, str], errors: dict[str, str], item: Any) -> Response:
    return render(
        ctx,
        "requests_in/inbound_form.html",
        400 if errors else 200,
        specs=SPECS,
        sections=SECTIONS,
        values=values,
        errors=errors,
        item=item,
        sample=ctx.field("sample") or DEFAULT_SAMPLE,
    )


@router.get("/new")
async def new(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_tenant()
    values = {"httpMethod": "POST", "inboundAuthType": "NONE", "outgoingAuthType": "NONE"}
    return _form(ctx, values, {}, None)


@router.post("/new")
async def create(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values = _submitted(ctx)
    body, errors = _body(ctx, values)
    if not errors:
        body["isActive"] = ctx.field("isActive") == "on"
        try:
            stored = await ctx.svc.inbound.create(tenant, body)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/inbound/{stored.id}", flash="Created."))
    return _form(ctx, values, errors, None)


def curl_example(base_url: str, view: dict[str, Any]) -> str:
    """A call through the proxy as a caller would make it (credentials as placeholders)."""
    method = view["httpMethod"]
    parts = ["curl", "-X", method, f"{base_url}{view['proxyUrl']}"]
    parts += ["-H", "X-API-Key: $JB_API_KEY"]  # Authorization may be the partner's
    auth = view["inboundAuthType"]
    name = (view.get("inboundAuthConfig") or {}).get("name") or "X-Integration-Key"
    if auth == "API_KEY":
        parts += ["-H", f"{name}: $INTEGRATION_KEY"]
    elif auth == "BEARER":
        parts += ["-H", "Authorization: Bearer $INTEGRATION_TOKEN"]
    elif auth == "BASIC":
        parts += ["-u", "$USERNAME:$PASSWORD"]
    if method in ("POST", "PUT", "PATCH"):
        parts += ["-H", "Content-Type: application/json", "-d", '{"id": 1}']
    return " ".join(_quote(p) for p in parts)


def _quote(part: str) -> str:
    """Single quotes, except where a shell variable is meant to expand."""
    return f'"{part}"' if "$" in part else shlex.quote(part)


@router.get("/{integration_id}")
async def detail(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    stored = await ctx.svc.inbound.get(tenant, integration_id)
    versions = await ctx.svc.inbound.versions(tenant, integration_id)
    view = inbound_view(stored)
    base = str(request.base_url).rstrip("/")
    return render(
        ctx,
        "requests_in/inbound_detail.html",
        item=stored,
        view=view,
        document=pretty(view),
        versions=versions,
        proxy_url=f"{base}{view['proxyUrl']}",
        curl=curl_example(base, view),
        flash=ctx.query("flash"),
    )


@router.get("/{integration_id}/edit")
async def edit(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    stored = await ctx.svc.inbound.get(ctx.require_tenant(), integration_id)
    return _form(ctx, values_of(SPECS, inbound_view(stored)), {}, stored)


@router.post("/{integration_id}/edit")
async def update(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    stored = await ctx.svc.inbound.get(tenant, integration_id)
    values = _submitted(ctx)
    body, errors = _body(ctx, values)
    if not errors:
        body["isActive"] = stored.integration.is_active
        try:
            await ctx.svc.inbound.replace(tenant, integration_id, body)
        except ValidationError as exc:
            errors = problems_by_field(exc) or {"_": exc.message}
        else:
            return redirect(ctx, ctx.url(f"/inbound/{integration_id}", flash="Saved."))
    return _form(ctx, values, errors, stored)


@router.post("/{integration_id}/active")
async def set_active(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    active = ctx.field("active") == "true"
    await ctx.svc.inbound.set_active(ctx.require_tenant(), integration_id, active)
    message = "Enabled." if active else "Disabled: the proxy route answers 404."
    return redirect(ctx, ctx.url(f"/inbound/{integration_id}", flash=message))


@router.post("/{integration_id}/delete")
async def delete(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.inbound.delete(ctx.require_tenant(), integration_id)
    return redirect(ctx, ctx.url("/inbound"))


@router.post("/{integration_id}/restore")
async def restore(request: Request, integration_id: str) -> Response:
    ctx = await context(request)
    raw = ctx.field("version")
    if not raw.isdigit():
        raise ValidationError("choose a version to restore")
    await ctx.svc.inbound.restore(ctx.require_tenant(), integration_id, int(raw))
    return redirect(ctx, ctx.url(f"/inbound/{integration_id}", flash=f"Restored v{raw}."))


@router.get("/{integration_id}/versions/{version}")
async def version(request: Request, integration_id: str, version: int) -> Response:
    ctx = await context(request)
    info, document = await ctx.svc.inbound.version(ctx.require_tenant(), integration_id, version)
    return render(
        ctx,
        "requests_in/inbound_version.html",
        integration_id=integration_id,
        info=info,
        document=pretty(document),
    )


@router.post("/test-transform")
async def test_transform(request: Request) -> Response:
    """The live test: the form's request or response transformation run on the sample."""
    ctx = await context(request)
    ctx.require_tenant()
    side = "response" if ctx.field("side") == "response" else "request"
    output, error = run_transform(
        ctx.field(f"{side}TransformationMode"),
        ctx.field(f"{side}TransformScript"),
        ctx.field(f"{side}FieldMappings"),
        ctx.field("sample") or DEFAULT_SAMPLE,
    )
    return render(ctx, "requests_in/transform_result.html", side=side, output=output, error=error)


def run_transform(mode: str, script: str, mappings: str, sample: str) -> tuple[str, str | None]:
    """The transformed sample as JSON text, or why there is none."""
    data, problem = parse_json_text(sample, "the sample payload")
    if problem:
        return "", problem
    if not mode:
        return pretty(data), None  # no transformation: passed through as is
    config: Any = script
    if mode == "SIMPLE":
        config, problem = parse_json_text(mappings, "the field mappings")
        if problem:
            return "", problem
    try:
        transformer = compile_transformer(mode, config)
        return pretty(transformer.transform(data)), None
    except JunctionboxError as exc:
        details = "; ".join(p.message for p in exc.problems if p.message not in exc.message)
        return "", exc.message + (f" ({details})" if details else "")
