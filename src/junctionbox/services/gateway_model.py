"""A stored gateway route (its JSON form) compiled into what serving needs, once.

The same compile runs when a route is saved (so a bad pattern, URL, header, CIDR or
expression is a 400 naming its location) and when the route table is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from junctionbox.domain.gateway import (
    Balancer,
    CorsPolicy,
    HeaderOps,
    IpRules,
    PathPattern,
    TargetHealth,
    Versioning,
    compile_pattern,
    header_ops,
    invalid,
    parse_networks,
)
from junctionbox.domain.netguard import parse_outbound_url
from junctionbox.domain.service_registry import ServiceTarget, weighted_order
from junctionbox.domain.token_bucket import BucketConfig
from junctionbox.errors import JunctionboxError
from junctionbox.expr import Transformer, compile_transformer

Loc = tuple[str | int, ...]
AUTH_TYPES = ("NONE", "API_KEY", "JWT")
JWT_HMAC = ("HS256", "HS384", "HS512")


@dataclass(frozen=True)
class Security:
    cors: CorsPolicy = field(default_factory=CorsPolicy)
    ip: IpRules = field(default_factory=IpRules)
    require_https: bool = False


@dataclass(frozen=True)
class JwtSpec:
    algorithms: tuple[str, ...]
    key: str  # the HMAC secret or the PEM public key
    issuer: str | None
    audience: str | None
    roles_claim: str
    scopes_claim: str


@dataclass
class CompiledRoute:
    id: str
    org_id: int
    name: str
    active: bool
    methods: frozenset[str]
    pattern: PathPattern
    versioning: Versioning
    balancer: Balancer
    target_endpoint: str | None
    timeout: float
    auth_type: str
    api_key_header: str
    jwt: JwtSpec | None
    roles: frozenset[str]
    scopes: frozenset[str]
    per_client: BucketConfig | None
    per_route: BucketConfig | None
    cache_ttl: float | None
    request_headers: HeaderOps
    response_headers: HeaderOps
    request_body: Transformer | None
    response_body: Transformer | None
    monitoring: bool
    security: Security | None
    health_path: str | None
    service: ServiceTarget | None = None  # the registered service it targets, if any
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (self.pattern.literals, -int(self.pattern.wildcard), len(self.pattern.text))


def bucket(limit: Mapping[str, Any] | None, loc: Loc) -> BucketConfig | None:
    if not limit or limit.get("enabled") is False:
        return None
    try:
        return BucketConfig.from_window(
            int(limit["maxRequests"]), float(limit.get("windowSeconds", 60))
        )
    except (KeyError, TypeError, ValueError, JunctionboxError):
        raise invalid(loc, "needs maxRequests >= 1 and windowSeconds > 0") from None


def compile_security(data: Mapping[str, Any] | None, loc: Loc) -> Security:
    data = data or {}
    cors = data.get("cors") or {}
    ip = data.get("ipRules") or {}
    return Security(
        cors=CorsPolicy(
            origins=tuple(cors.get("allowedOrigins") or ()),
            methods=tuple(m.upper() for m in cors.get("allowedMethods") or ()),
            headers=tuple(cors.get("allowedHeaders") or ()),
            credentials=bool(cors.get("allowCredentials", False)),
            max_age=int(cors.get("maxAgeSeconds", 600)),
        ),
        ip=IpRules(
            allow=parse_networks(ip.get("allow") or (), (*loc, "ipRules", "allow")),
            deny=parse_networks(ip.get("deny") or (), (*loc, "ipRules", "deny")),
        ),
        require_https=bool(data.get("requireHttps", False)),
    )


@dataclass(frozen=True)
class Upstreams:
    """Where a route sends requests: URLs with weights, and the service they come from."""

    urls: list[tuple[str, int]]
    service: ServiceTarget | None = None


def _targets(data: Mapping[str, Any], services: Mapping[str, ServiceTarget]) -> Upstreams:
    urls = list(data.get("targets") or ())
    if data.get("targetUrl"):
        urls.insert(0, data["targetUrl"])
    service = data.get("targetService")
    if service and "://" not in service:
        if urls:
            raise invalid(
                ("body", "targetService"),
                "name a registered service or give targetUrl/targets, not both",
            )
        return _service_upstreams(service, services)
    if service and not urls:
        urls.append(service)
    if not urls:
        raise invalid(
            ("body", "targetUrl"), "a route needs targetUrl, targets or a registered targetService"
        )
    for index, url in enumerate(urls):
        try:
            parse_outbound_url(url)
        except JunctionboxError as exc:
            raise invalid(("body", "targets", index), f"bad URL: {exc.message}") from None
        if "?" in url or "#" in url:
            raise invalid(("body", "targets", index), "a target URL has no query or fragment")
    return Upstreams([(u.rstrip("/"), 1) for u in urls])


def _service_upstreams(name: str, services: Mapping[str, ServiceTarget]) -> Upstreams:
    found = services.get(name)
    if found is None:
        raise invalid(
            ("body", "targetService"),
            f"no registered service {name!r}: register it under "
            "/api/v1/integration/api-gateway/services, or give a URL",
        )
    return Upstreams([(e.url, e.weight) for e in found.endpoints], found)


def balancer_for(urls: Sequence[tuple[str, int]]) -> Balancer:
    """Round robin over the URLs, each visited in proportion to its weight (one shared
    health record per URL however often it appears in the cycle)."""
    health = {url: TargetHealth(url) for url, _ in urls}
    if all(weight == 1 for _, weight in urls):
        return Balancer(list(health.values()))
    order = weighted_order([weight for _, weight in urls])
    return Balancer([health[urls[index][0]] for index in order])


def _body(data: Mapping[str, Any] | None, loc: Loc) -> Transformer | None:
    if not data or not data.get("mode"):
        return None
    mode = str(data["mode"]).upper()
    config: Sequence[Any] | str = (
        data.get("fieldMappings") or [] if mode == "SIMPLE" else data.get("script") or ""
    )
    return compile_transformer(mode, config, loc=loc)


def _headers(data: Mapping[str, Any] | None, loc: Loc) -> HeaderOps:
    data = data or {}
    return header_ops(data.get("set") or {}, data.get("remove") or (), loc)


def _jwt(data: Mapping[str, Any], secrets: Mapping[str, str]) -> JwtSpec:
    loc: Loc = ("body", "authentication", "jwt")
    algorithms = tuple(data.get("algorithms") or ("HS256",))
    hmac = all(a in JWT_HMAC for a in algorithms)
    if not hmac and any(a in JWT_HMAC for a in algorithms):
        raise invalid((*loc, "algorithms"), "do not mix HMAC and public-key algorithms")
    key = secrets.get("jwtSecret") if hmac else data.get("publicKey")
    if not key:
        needed = "secret" if hmac else "publicKey"
        raise invalid((*loc, needed), f"{'/'.join(algorithms)} needs {needed}")
    return JwtSpec(
        algorithms,
        key,
        data.get("issuer"),
        data.get("audience"),
        data.get("rolesClaim") or "roles",
        data.get("scopesClaim") or "scope",
    )


def _versioning(data: Mapping[str, Any] | None) -> Versioning:
    data = data or {}
    strategy = str(data.get("strategy") or "none").lower()
    version = data.get("version")
    if strategy != "none" and not version:
        raise invalid(("body", "versioning", "version"), f"strategy {strategy} needs a version")
    return Versioning(
        strategy=strategy,
        version=version,
        header=data.get("header") or "X-API-Version",
        deprecated=bool(data.get("deprecated", False)),
        deprecated_at=_date(data.get("deprecatedAt")),
        sunset=_date(data.get("sunset")),
        link=data.get("link"),
    )


def _date(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def compile_route(
    route_id: str,
    org_id: int,
    data: Mapping[str, Any],
    secrets: Mapping[str, str],
    services: Mapping[str, ServiceTarget] | None = None,
) -> CompiledRoute:
    """``services`` are the tenant's registered services by id and name (``targetService``)."""
    auth = data.get("authentication") or {}
    auth_type = str(auth.get("type") or "NONE").upper()
    if auth_type not in AUTH_TYPES:
        raise invalid(("body", "authentication", "type"), f"must be one of {AUTH_TYPES}")
    authz = data.get("authorization") or {}
    limits = data.get("rateLimiting") or {}
    caching = data.get("caching") or {}
    transform = data.get("transformation") or {}
    request, response = transform.get("request") or {}, transform.get("response") or {}
    tloc: Loc = ("body", "transformation")
    upstreams = _targets(data, services or {})
    return CompiledRoute(
        id=route_id,
        org_id=org_id,
        name=data.get("name") or data["path"],
        active=str(data.get("status") or "ACTIVE").upper() == "ACTIVE",
        methods=frozenset(m.upper() for m in data.get("methods") or ("GET",)),
        pattern=compile_pattern(data["path"]),
        versioning=_versioning(data.get("versioning")),
        balancer=balancer_for(upstreams.urls),
        service=upstreams.service,
        target_endpoint=data.get("targetEndpoint"),
        timeout=float(data.get("timeoutSeconds") or 30.0),
        auth_type=auth_type,
        api_key_header=(auth.get("apiKeyHeader") or "X-API-Key").lower(),
        jwt=_jwt(auth.get("jwt") or {}, secrets) if auth_type == "JWT" else None,
        roles=frozenset(authz.get("roles") or ()),
        scopes=frozenset(authz.get("scopes") or ()),
        per_client=bucket(limits.get("perClient"), ("body", "rateLimiting", "perClient")),
        per_route=bucket(limits.get("perRoute"), ("body", "rateLimiting", "perRoute")),
        cache_ttl=float(caching["ttlSeconds"]) if caching.get("enabled") else None,
        request_headers=_headers(request.get("headers"), (*tloc, "request", "headers")),
        response_headers=_headers(response.get("headers"), (*tloc, "response", "headers")),
        request_body=_body(request.get("body"), (*tloc, "request", "body")),
        response_body=_body(response.get("body"), (*tloc, "response", "body")),
        monitoring=bool((data.get("monitoring") or {}).get("enabled", True)),
        security=compile_security(data["security"], ("body", "security"))
        if data.get("security")
        else None,
        health_path=(data.get("healthCheck") or {}).get("path"),
    )
