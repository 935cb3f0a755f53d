"""API gateway routes: list, create and edit (problems beside the fields), delete, the
tenant's security settings and default rate limits, per-route analytics with charts,
upstream health, and the dry-run test (what would be sent upstream; nothing is sent).
The list page also shows the tenant's registered services, read-only (they are managed
through the API, where services register themselves)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from junctionbox.api.routers.gateway import (
    RateLimitsIn,
    RouteIn,
    SecurityUpdate,
    TestIn,
    dry_run,
    route_body,
    stored_route,
)
from junctionbox.api.routers.gateway_services import service_body
from junctionbox.console.charts import hbars
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
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.services.gateway import check_health

router = APIRouter(prefix=f"{PREFIX}/gateway", route_class=ConsoleRoute)
TEST_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

SPECS: tuple[Spec, ...] = (
    Spec("name", "Name", section="Route"),
    Spec("path", "Path pattern", hint="/orders/{id} or /files/*", section="Route"),
    Spec("methods", "Methods", "list", hint="GET, POST", section="Route"),
    Spec("status", "Status", "select", ("ACTIVE", "INACTIVE"), section="Route"),
    Spec("targetUrl", "Target URL", hint="https://orders.internal.example.com", section="Route"),
    Spec(
        "targets",
        "More targets (round robin)",
        "list",
        hint="https://a…, https://b…",
        section="Route",
    ),
    Spec("targetService", "Target service (registry name)", section="Route"),
    Spec("targetEndpoint", "Target endpoint", hint="/v2/orders/{id}", section="Route"),
    Spec("timeoutSeconds", "Timeout (s)", "number", hint="30", section="Route"),
    Spec(
        "authentication",
        "Authentication",
        "json",
        hint='{"type": "API_KEY"} or {"type": "JWT", "jwt": {"secret": "…16+ chars…"}}; '
        "the JWT secret is shown masked and kept when left masked",
        section="Policies",
    ),
    Spec(
        "authorization",
        "Authorization",
        "json",
        hint='{"roles": ["admin"], "scopes": []}',
        section="Policies",
    ),
    Spec(
        "rateLimiting",
        "Rate limits",
        "json",
        hint='{"perClient": {"maxRequests": 100, "windowSeconds": 60}}',
        section="Policies",
    ),
    Spec(
        "caching", "Caching", "json", hint='{"enabled": true, "ttlSeconds": 60}', section="Policies"
    ),
    Spec(
        "transformation",
        "Transforms",
        "json",
        hint='{"request": {"headers": {"set": {"X-From": "gw"}}}}',
        section="Policies",
    ),
    Spec(
        "versioning",
        "Versioning",
        "json",
        hint='{"strategy": "path", "version": "v1"}',
        section="Policies",
    ),
    Spec("monitoring", "Monitoring", "json", hint='{"enabled": true}', section="Policies"),
    Spec("healthCheck", "Health check", "json", hint='{"path": "/health"}', section="Policies"),
    Spec(
        "security",
        "Route security (else the tenant's)",
        "json",
        hint='{"requireHttps": true, "ipRules": {"allow": ["10.0.0.0/8"]}}',
        section="Policies",
    ),
)
SECTIONS = tuple(dict.fromkeys(s.section for s in SPECS))


@router.get("")
async def index(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    status = ctx.query("status")
    if status and status not in ("ACTIVE", "INACTIVE"):
        raise ValidationError("status must be ACTIVE or INACTIVE")
    page = await ctx.svc.gateway.route_page(tenant, ctx.page(), status or None)
    routes = [route_body(r) for r in page.items]
    health = await check_health(ctx.svc.gateway, tenant, active=False)
    healthy = {r["routeId"]: r["healthy"] for r in health["routes"]}
    services = [service_body(s) for s in await ctx.svc.registry.all(tenant)]
    return render(
        ctx, "requests_in/gateway_list.html", page=page, routes=routes, healthy=healthy,
        services=services, chosen=status, base=str(request.base_url).rstrip("/"),
    )  # fmt: skip


def _form(ctx: Ctx, values: dict[str, str], errors: dict[str, str], item: Any) -> Response:
    return render(
        ctx,
        "requests_in/gateway_form.html",
        400 if errors else 200,
        specs=SPECS,
        sections=SECTIONS,
        values=values,
        errors=errors,
        item=item,
    )


@router.get("/new")
async def new(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_tenant()
    return _form(ctx, {"methods": "GET", "status": "ACTIVE"}, {}, None)


async def _save(ctx: Ctx, route_id: str | None) -> tuple[str | None, dict[str, str]]:
    """Configure the route from the form: its id, or the problems by field."""
    values = {spec.name: ctx.field(spec.name) for spec in SPECS}
    body, errors = body_of(SPECS, values)
    if route_id is not None:
        body["routeId"] = route_id
    parsed = None
    if not errors:
        parsed, errors = validated(RouteIn, body)
    if parsed is None:
        return None, errors
    try:
        data, secret = stored_route(parsed)
        record, _ = await ctx.svc.gateway.configure(ctx.require_tenant(), data, secret)
    except ValidationError as exc:
        return None, problems_by_field(exc) or {"_": exc.message}
    return record.id, {}


@router.post("/new")
async def create(request: Request) -> Response:
    ctx = await context(request)
    ctx.require_tenant()
    route_id, errors = await _save(ctx, None)
    if route_id is None:
        return _form(ctx, {s.name: ctx.field(s.name) for s in SPECS}, errors, None)
    return redirect(ctx, ctx.url(f"/gateway/routes/{route_id}", flash="Created."))


@router.get("/routes/{route_id}")
async def detail(request: Request, route_id: str) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    record = await ctx.svc.gateway.route(tenant, route_id)
    body = route_body(record)
    hours = _hours(ctx)
    stats = await ctx.svc.gateway.analytics(tenant, hours, route_id)
    total = stats["total"]
    clients = [(c["client"], float(c["requests"])) for c in total["topClients"]]
    health = await check_health(ctx.svc.gateway, tenant, active=False)
    upstreams: list[dict[str, Any]] = next(
        (r["upstreams"] for r in health["routes"] if r["routeId"] == route_id), []
    )
    percentiles = [(f"p{p}", float(total[f"p{p}Ms"] or 0)) for p in (50, 95, 99)]
    if not total["requests"]:
        percentiles = []  # "nothing to show" rather than three empty bars
    return render(
        ctx,
        "requests_in/gateway_detail.html",
        item=record,
        route=body,
        document=pretty(body),
        hours=hours,
        total=total,
        latency_chart=hbars(percentiles, title="Latency percentiles (ms)"),
        clients_chart=hbars(clients, title="Top clients (requests)"),
        upstreams=upstreams,
        methods=TEST_METHODS,
        gateway_url=str(request.base_url).rstrip("/") + body["gatewayPath"],
        flash=ctx.query("flash"),
    )


def _hours(ctx: Ctx) -> int:
    raw = ctx.query("hours")
    if raw and (not raw.isdigit() or not 1 <= int(raw) <= 24 * 90):
        raise ValidationError("hours must be between 1 and 2160")
    return int(raw) if raw else 24


@router.get("/routes/{route_id}/edit")
async def edit(request: Request, route_id: str) -> Response:
    ctx = await context(request)
    record = await ctx.svc.gateway.route(ctx.require_tenant(), route_id)
    return _form(ctx, values_of(SPECS, route_body(record)), {}, record)


@router.post("/routes/{route_id}/edit")
async def update(request: Request, route_id: str) -> Response:
    ctx = await context(request)
    record = await ctx.svc.gateway.route(ctx.require_tenant(), route_id)  # 404 if not ours
    saved, errors = await _save(ctx, route_id)
    if saved is None:
        return _form(ctx, {s.name: ctx.field(s.name) for s in SPECS}, errors, record)
    return redirect(ctx, ctx.url(f"/gateway/routes/{route_id}", flash="Saved."))


@router.post("/routes/{route_id}/delete")
async def delete(request: Request, route_id: str) -> Response:
    ctx = await context(request)
    await ctx.svc.gateway.delete(ctx.require_tenant(), route_id)
    return redirect(ctx, ctx.url("/gateway", flash=f"Deleted {route_id}."))


@router.post("/test")
async def test(request: Request) -> Response:
    """The dry run: how a request would be matched, checked and sent upstream (not sent)."""
    ctx = await context(request)
    tenant = ctx.require_tenant()
    body: Any = None
    raw_body = ctx.field("body")
    if raw_body:
        body, problem = parse_json_text(raw_body, "the body")
        if problem:
            return render(ctx, "requests_in/gateway_test.html", result=None, error=problem)
    headers, problem = _headers(ctx.field("headers"))
    if problem:
        return render(ctx, "requests_in/gateway_test.html", result=None, error=problem)
    document = {
        "routeId": ctx.field("routeId") or None,
        "method": ctx.field("method") or "GET",
        "path": ctx.field("path"),
        "query": ctx.field("query"),
        "headers": headers,
        "body": body,
        "clientIp": ctx.field("clientIp") or "203.0.113.10",
    }
    parsed, errors = validated(TestIn, document)
    if parsed is None:
        message = "; ".join(f"{k}: {v}" for k, v in errors.items())
        return render(ctx, "requests_in/gateway_test.html", result=None, error=message)
    try:
        result = await dry_run(parsed, tenant, ctx.svc, request)
    except JunctionboxError as exc:
        return render(ctx, "requests_in/gateway_test.html", result=None, error=exc.message)
    return render(ctx, "requests_in/gateway_test.html", result=pretty(result), error=None)


def _headers(raw: str) -> tuple[dict[str, str], str | None]:
    """``Name: value`` lines as a header map."""
    found: dict[str, str] = {}
    for line in raw.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return {}, f"a header line must be 'Name: value', not {line.strip()[:40]!r}"
        found[name.strip()] = value.strip()
    return found, None


# --- tenant-wide settings ---

SETTINGS_SPECS: tuple[Spec, ...] = (
    Spec(
        "cors",
        "CORS",
        "json",
        hint='{"allowedOrigins": ["https://app.example.com"], "allowedMethods": ["GET"]}',
        section="Security",
    ),
    Spec(
        "ipRules",
        "IP allow/deny",
        "json",
        hint='{"allow": [], "deny": ["198.51.100.0/24"]}',
        section="Security",
    ),
    Spec("requireHttps", "Require HTTPS", "check", section="Security"),
    Spec(
        "perClient",
        "Default limit per client",
        "json",
        hint='{"maxRequests": 600, "windowSeconds": 60}',
        section="Rate limits",
    ),
    Spec(
        "perRoute",
        "Default limit per route",
        "json",
        hint='{"maxRequests": 6000, "windowSeconds": 60}',
        section="Rate limits",
    ),
)


@router.get("/settings")
async def settings(request: Request) -> Response:
    ctx = await context(request)
    stored = await ctx.svc.gateway.settings(ctx.require_tenant())
    values = values_of(SETTINGS_SPECS, {**stored.security, **stored.rate_limits})
    return _settings_form(ctx, values, {}, ctx.query("flash"))


def _settings_form(
    ctx: Ctx, values: dict[str, str], errors: dict[str, str], flash: str
) -> Response:
    return render(
        ctx, "requests_in/gateway_settings.html", 400 if errors else 200,
        specs=SETTINGS_SPECS, values=values, errors=errors, flash=flash,
    )  # fmt: skip


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    ctx = await context(request)
    tenant = ctx.require_tenant()
    values = {spec.name: ctx.field(spec.name) for spec in SETTINGS_SPECS}
    body, errors = body_of(SETTINGS_SPECS, values)
    security_in = {k: body[k] for k in ("cors", "ipRules", "requireHttps") if k in body}
    limits_in = {k: body[k] for k in ("perClient", "perRoute") if k in body}
    security = limits = None
    if not errors:
        security, errors = validated(SecurityUpdate, security_in)
    if not errors:
        limits, errors = validated(RateLimitsIn, limits_in)
    if security is None or limits is None:
        return _settings_form(ctx, values, errors, "")
    try:
        await ctx.svc.gateway.set_security(tenant, None, _dump(security))
        await ctx.svc.gateway.set_rate_limits(tenant, None, _dump(limits))
    except ValidationError as exc:
        return _settings_form(ctx, values, problems_by_field(exc) or {"_": exc.message}, "")
    return redirect(ctx, ctx.url("/gateway/settings", flash="Saved."))


def _dump(model: SecurityUpdate | RateLimitsIn) -> dict[str, Any]:
    """As the API stores it (camelCase, no routeId)."""
    return model.model_dump(by_alias=True, exclude_none=True, exclude={"route_id"}, mode="json")


@router.get("/health")
async def health(request: Request) -> Response:
    """Upstream health: passive by default; ``?active=1`` also probes each upstream once."""
    ctx = await context(request)
    active = ctx.query("active") == "1"
    found = await check_health(ctx.svc.gateway, ctx.require_tenant(), active=active)
    return render(ctx, "requests_in/gateway_health.html", health=found)


@router.get("/analytics")
async def analytics(request: Request) -> Response:
    ctx = await context(request)
    hours = _hours(ctx)
    stats = await ctx.svc.gateway.analytics(ctx.require_tenant(), hours, None)
    requests = [
        (r["name"] or r["path"] or r["routeId"], float(r["requests"])) for r in stats["routes"]
    ]
    p95 = [
        (r["name"] or r["path"] or r["routeId"], float(r["p95Ms"] or 0)) for r in stats["routes"]
    ]
    return render(
        ctx, "requests_in/gateway_analytics.html", stats=stats, hours=hours,
        requests_chart=hbars(sorted(requests, key=lambda x: -x[1])[:15], title="Requests per route"),
        p95_chart=hbars(sorted(p95, key=lambda x: -x[1])[:15], title="p95 latency per route (ms)"),
    )  # fmt: skip
