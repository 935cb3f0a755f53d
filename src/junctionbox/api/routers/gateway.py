"""/api/v1/integration/api-gateway: seed 000's API management endpoints.

Routes belong to the tenant named by ``orgId`` and are served at ``/gw/{orgId}/…``
(``api/gateway_proxy.py``). Validation happens at save time: a bad pattern, URL, header,
CIDR or expression is a 400 whose ``details`` give the location.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field, JsonValue, field_validator

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.gateway_proxy import PREFIX
from junctionbox.api.schemas import RequestModel
from junctionbox.domain.gateway import METHODS, safe_request_path
from junctionbox.errors import NotFoundError, ValidationError
from junctionbox.services.gateway import MASK, check_health
from junctionbox.services.gateway_model import CompiledRoute
from junctionbox.services.gateway_requests import authorize, plan
from junctionbox.store.queries.gateway import RouteRecord

router = APIRouter(prefix="/api/v1/integration/api-gateway", tags=["api-gateway"])

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


# --- bodies ---


class Window(RequestModel):
    enabled: bool = True
    max_requests: int = Field(ge=1, le=10_000_000)
    window_seconds: float = Field(60.0, gt=0, le=86_400)


class RateLimiting(RequestModel):
    per_client: Window | None = None
    per_route: Window | None = None


class JwtConfig(RequestModel):
    algorithms: (
        list[
            Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
        ]
        | None
    ) = Field(None, min_length=1, description="Default HS256.")
    secret: str | None = Field(
        None, max_length=4096, description="HMAC key (16+ characters); write-only."
    )
    public_key: str | None = Field(None, max_length=16_384, description="PEM, for RS/ES/PS.")
    issuer: str | None = Field(None, max_length=500)
    audience: str | None = Field(None, max_length=500)
    roles_claim: str = Field("roles", max_length=100)
    scopes_claim: str = Field("scope", max_length=100)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and value != MASK and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class Authentication(RequestModel):
    type: Literal["NONE", "API_KEY", "JWT"] = "NONE"
    api_key_header: str = Field("X-API-Key", max_length=128)
    jwt: JwtConfig | None = None


class Authorization(RequestModel):
    roles: list[str] = Field(default_factory=list, max_length=50)
    scopes: list[str] = Field(default_factory=list, max_length=50)


class Caching(RequestModel):
    enabled: bool = False
    ttl_seconds: float = Field(60.0, gt=0, le=86_400)


class HeaderChanges(RequestModel):
    set: dict[str, str] = Field(default_factory=dict, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class BodyTransform(RequestModel):
    mode: Literal["SIMPLE", "JSONATA", "SCRIPT"]
    field_mappings: list[dict[str, Any]] | None = None
    script: str | None = Field(None, max_length=100_000)


class Direction(RequestModel):
    headers: HeaderChanges | None = None
    body: BodyTransform | None = None


class Transformation(RequestModel):
    request: Direction | None = None
    response: Direction | None = None


class VersioningIn(RequestModel):
    strategy: Literal["none", "path", "header"] = "none"
    version: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    header: str = Field("X-API-Version", max_length=128)
    deprecated: bool = False
    deprecated_at: datetime | None = None
    sunset: datetime | None = None
    link: str | None = Field(None, max_length=2000)


class Monitoring(RequestModel):
    enabled: bool = True


class HealthCheck(RequestModel):
    path: str | None = Field(None, pattern=r"^/[^\s?#]*$", max_length=500)


class Cors(RequestModel):
    allowed_origins: list[str] = Field(default_factory=list, max_length=100)
    allowed_methods: list[Method] = Field(default_factory=list)
    allowed_headers: list[str] = Field(default_factory=list, max_length=100)
    allow_credentials: bool = False
    max_age_seconds: int = Field(600, ge=0, le=86_400)


class IpRulesIn(RequestModel):
    allow: list[str] = Field(default_factory=list, max_length=1000)
    deny: list[str] = Field(default_factory=list, max_length=1000)


class SecurityIn(RequestModel):
    cors: Cors | None = None
    ip_rules: IpRulesIn | None = None
    require_https: bool = False


class RouteIn(RequestModel):
    route_id: str | None = Field(None, max_length=40, description="Update this route.")
    name: str | None = Field(None, max_length=200)
    path: str = Field(min_length=1, max_length=500, description="/orders/{id} or /files/*")
    method: Method | None = Field(None, description="One method (seed 000).")
    methods: list[Method] | None = Field(None, description="Or several.")
    target_service: str | None = Field(
        None, max_length=2000, description="A registered service (name or id), or a URL."
    )
    target_url: str | None = Field(None, max_length=2000)
    targets: list[str] | None = Field(None, max_length=20, description="Round robin.")
    target_endpoint: str | None = Field(
        None, max_length=2000, description="Upstream path (prefix), e.g. /v2/x/{id}."
    )
    timeout_seconds: float = Field(30.0, gt=0, le=300)
    authentication: Authentication | None = None
    authorization: Authorization | None = None
    rate_limiting: RateLimiting | None = None
    caching: Caching | None = None
    transformation: Transformation | None = None
    versioning: VersioningIn | None = None
    monitoring: Monitoring | None = None
    health_check: HealthCheck | None = None
    security: SecurityIn | None = None
    status: Literal["ACTIVE", "INACTIVE"] = "ACTIVE"

    @field_validator("target_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c in value for c in "?# \r\n")):
            raise ValueError("must start with / and contain no query, fragment or whitespace")
        return value


class RateLimitsIn(RateLimiting):
    route_id: str | None = Field(None, max_length=40, description="Else the tenant default.")


class SecurityUpdate(SecurityIn):
    route_id: str | None = Field(None, max_length=40, description="Else tenant-wide.")


class TestIn(RequestModel):
    route_id: str | None = Field(None, max_length=40)
    method: Method = "GET"
    path: str = Field(min_length=1, max_length=2000, description="As after /gw/{orgId}.")
    query: str = Field("", max_length=4000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=100)
    body: JsonValue = None
    client_ip: str = Field("203.0.113.10", max_length=64)


# --- helpers ---


def route_body(record: RouteRecord) -> dict[str, Any]:
    config = dict(record.config)
    auth = dict(config.get("authentication") or {})
    if auth.get("jwt") is not None:
        jwt_config = dict(auth["jwt"])
        jwt_config["secret"] = MASK if record.sealed_secrets else None
        auth["jwt"] = jwt_config
        config["authentication"] = auth
    version = config.get("versioning") or {}
    prefix = f"/{version['version']}" if version.get("strategy") == "path" else ""
    return {
        **config,
        "routeId": record.id,
        "orgId": record.org_id,
        "name": record.name,
        "status": record.status,
        "gatewayPath": f"{PREFIX}/{record.org_id}{prefix}{record.path}",
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
    }


def stored_route(body: RouteIn) -> tuple[dict[str, Any], str | None]:
    """The route as stored (camelCase, no secret) and its JWT secret, if one was sent."""
    data = body.model_dump(by_alias=True, exclude_none=True, mode="json")
    methods = list(dict.fromkeys([*(body.methods or []), *([body.method] if body.method else [])]))
    data.pop("method", None)
    data["methods"] = methods or ["GET"]
    if not set(data["methods"]) <= METHODS:
        raise ValidationError("unknown method")
    secret = None
    jwt_config = data.get("authentication", {}).get("jwt")
    if jwt_config is not None:
        secret = jwt_config.pop("secret", None)
        if secret == MASK:
            secret = None  # the masked value sent back: keep the stored secret
    return data, secret


# --- routes ---


@router.get("/routes", summary="List the tenant's gateway routes")
async def list_routes(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    status: Annotated[Literal["ACTIVE", "INACTIVE"] | None, Query()] = None,
) -> dict[str, Any]:
    found = await svc.gateway.route_page(tenant, page, status)
    return {
        "routes": [route_body(r) for r in found.items],
        "total": found.total,
        "page": page.page,
        "limit": page.limit,
        "hasMore": found.has_more,
    }


@router.post("/configure", summary="Create a gateway route, or update one (routeId)")
async def configure(
    body: RouteIn, tenant: TenantDep, svc: ServicesDep, response: Response
) -> dict[str, Any]:
    data, secret = stored_route(body)
    record, created = await svc.gateway.configure(tenant, data, secret)
    response.status_code = 201 if created else 200
    return route_body(record)


@router.put("/rate-limits", summary="Set per-client and per-route limits")
async def rate_limits(body: RateLimitsIn, tenant: TenantDep, svc: ServicesDep) -> dict[str, Any]:
    limits = body.model_dump(by_alias=True, exclude_none=True, exclude={"route_id"}, mode="json")
    saved = await svc.gateway.set_rate_limits(tenant, body.route_id, limits)
    return {"routeId": body.route_id, "scope": "route" if body.route_id else "tenant", **saved}


@router.get("/analytics", summary="Per-route requests, error rate, latency percentiles")
async def analytics(
    tenant: TenantDep,
    svc: ServicesDep,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    route_id: Annotated[str | None, Query(alias="routeId", max_length=40)] = None,
) -> dict[str, Any]:
    return await svc.gateway.analytics(tenant, hours, route_id)


@router.put("/security", summary="CORS, IP allow/deny lists and HTTPS, tenant-wide or per route")
async def security(body: SecurityUpdate, tenant: TenantDep, svc: ServicesDep) -> dict[str, Any]:
    data = body.model_dump(by_alias=True, exclude_none=True, exclude={"route_id"}, mode="json")
    saved = await svc.gateway.set_security(tenant, body.route_id, data)
    return {"routeId": body.route_id, "scope": "route" if body.route_id else "tenant", **saved}


@router.get("/health", summary="Upstreams' health (passive; active=true also probes them)")
async def health(
    tenant: TenantDep, svc: ServicesDep, active: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    return await check_health(svc.gateway, tenant, active=active)


@router.post("/test", summary="Dry-run a request through a route: nothing is sent")
async def dry_run(
    body: TestIn, tenant: TenantDep, svc: ServicesDep, request: Request
) -> dict[str, Any]:
    if not body.path.startswith("/") or not safe_request_path(body.path):
        raise ValidationError("path must start with / and contain no dot segments")
    table = await svc.gateway.table(tenant.org_id)
    headers = {k.lower(): v for k, v in body.headers.items()}
    found = table.match(body.method, body.path, headers, serving=False)
    if found is None or isinstance(found, list):
        allowed = found if isinstance(found, list) else []
        return {"matched": False, "allowedMethods": allowed}
    route = found.route
    if body.route_id and route.id != body.route_id:
        raise NotFoundError(
            f"{body.method} {body.path} matches route {route.id}, not {body.route_id}"
        )
    security = route.security or table.security
    raw = b"" if body.body is None else _json_bytes(body.body)
    upstream = plan(
        found, body.method, list(body.headers.items()), body.query, raw,
        target=_next_target(route), client_ip=body.client_ip, scheme="https",
        host=request.headers.get("host"), prefix=f"{PREFIX}/{tenant.org_id}", request_id=None,
    )  # fmt: skip
    return {
        "matched": True,
        "routeId": route.id,
        "params": found.params,
        "checks": {
            "ipAllowed": security.ip.permits(body.client_ip),
            "authentication": route.auth_type,
            "authorization": {"roles": sorted(route.roles), "scopes": sorted(route.scopes)},
            "cached": route.cache_ttl is not None and body.method in ("GET", "HEAD"),
            "versionHeaders": route.versioning.headers(),
        },
        "upstream": upstream.masked(),
        "service": _service_summary(route),
        "sent": False,
    }


def _next_target(route: CompiledRoute) -> str:
    """The upstream the next request would likely reach, without moving the round robin."""
    targets = route.balancer.targets
    now = time.monotonic()
    count = len(targets)
    for step in range(count):
        candidate = targets[(route.balancer.cursor + step) % count]
        if candidate.is_up(now):
            return candidate.url
    return targets[0].url


def _service_summary(route: CompiledRoute) -> dict[str, Any] | None:
    service = route.service
    if service is None:
        return None
    return {
        "serviceId": service.id,
        "serviceName": service.name,
        "status": service.status,
        "inService": service.in_service,
        "endpoints": [{"url": e.url, "weight": e.weight} for e in service.endpoints],
    }


def _json_bytes(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


@router.delete("/route/{routeId}", status_code=204, summary="Delete a gateway route")
async def delete_route(
    route_id: Annotated[str, Path(alias="routeId", min_length=1, max_length=40)],
    tenant: TenantDep,
    svc: ServicesDep,
) -> Response:
    await svc.gateway.delete(tenant, route_id)
    return Response(status_code=204)


__all__ = ["authorize", "router"]
