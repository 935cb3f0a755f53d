"""Gateway routes per tenant: management, the compiled route table, rollups and health.

Route tables are compiled once per tenant and cached; a write on this node drops the
tenant's table at once, other nodes notice within ``table_ttl`` seconds (5 s by default,
as the other read caches). Rollups are accumulated in memory per (route, hour) and added to
the stored rollup at most every ``flush_seconds`` and whenever analytics are read, so the
analytics endpoint never scans request rows. Rollups not yet flushed when a node dies are
lost (at most ``flush_seconds`` of counts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.gateway import TargetHealth, safe_request_path
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.route_stats import Rollup, summary
from junctionbox.domain.secretbox import SecretBox
from junctionbox.domain.service_registry import ServiceTarget
from junctionbox.errors import JunctionboxError, NotFoundError, ServiceUnavailableError
from junctionbox.services import audit
from junctionbox.services.gateway_cache import ResponseCache
from junctionbox.services.gateway_model import CompiledRoute, Security, bucket, compile_route
from junctionbox.services.gateway_model import compile_security as _compile_security
from junctionbox.services.rate_limit_backends import RateLimitBackend
from junctionbox.services.service_registry import service_targets, status_of
from junctionbox.store.database import Database
from junctionbox.store.queries import gateway as queries
from junctionbox.store.queries import service_registry as service_queries
from junctionbox.store.queries.gateway import RouteRecord, SettingsRecord, StatsRow
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
MASK = "********"


@dataclass(frozen=True)
class Match:
    route: CompiledRoute
    params: dict[str, str]
    upstream_path: str


@dataclass
class RouteTable:
    org_id: int
    routes: list[CompiledRoute]
    security: Security
    default_limits: dict[str, Any]
    root_org_id: int | None = None  # the organization of a unit's routes (API keys are per org)
    loaded_at: float = field(default_factory=time.monotonic)

    def match(
        self, method: str, path: str, header: Mapping[str, str], *, serving: bool = True
    ) -> Match | list[str] | None:
        """The route for the request; the allowed methods if only the method differs.

        When ``serving``, a route whose registered service is out of service (INACTIVE or
        DEREGISTERED) is a 503: the route exists, its upstream is switched off."""
        allowed: list[str] = []
        found: list[Match] = []
        for route in self.routes:
            if not route.active:
                continue
            candidate = _strip_version(route, path)
            if candidate is None:
                continue
            params = route.pattern.match(candidate)
            if params is None:
                continue
            if method not in route.methods and not (
                method == "OPTIONS" or (method == "HEAD" and "GET" in route.methods)
            ):
                allowed.extend(route.methods)
                continue
            found.append(Match(route, _clean(params), _upstream_path(route, params, candidate)))
        if found:
            best = _by_version(found, header)
            service = best.route.service
            if serving and service is not None and not service.in_service:
                raise ServiceUnavailableError(
                    f"service {service.name} is {service.status.lower()}",
                    headers={"retry-after": "30"},
                )
            return best
        return sorted(set(allowed)) or None


def _clean(params: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in params.items() if v is not None}


def _strip_version(route: CompiledRoute, path: str) -> str | None:
    versioning = route.versioning
    if versioning.strategy != "path":
        return path
    prefix = f"/{versioning.version}"
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :] or "/"
    return None


def _upstream_path(route: CompiledRoute, params: dict[str, Any], path: str) -> str:
    if route.target_endpoint is None:
        return path
    rendered = route.pattern.render(route.target_endpoint, _clean(params))
    rest = params.get("rest")
    if route.pattern.wildcard and rest and "{rest}" not in route.target_endpoint:
        rendered = rendered.rstrip("/") + "/" + rest
    return rendered


def _by_version(found: list[Match], header: Mapping[str, str]) -> Match:
    def rank(m: Match) -> tuple[int, tuple[int, int, int], str]:
        versioning = m.route.versioning
        if versioning.strategy != "header":
            return (1, m.route.specificity, "")
        wanted = header.get(versioning.header.lower())
        exact = wanted is not None and wanted == versioning.version
        return (2 if exact else 0, m.route.specificity, versioning.version or "")

    return max(found, key=rank)


class GatewayService:
    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        backend: RateLimitBackend,
        http: GuardedHttpClient,
        *,
        table_ttl: float = 5.0,
        flush_seconds: float = 5.0,
    ) -> None:
        self.db = db
        self.backend = backend
        self.http = http
        self._box = secretbox
        self._tables: dict[int, RouteTable] = {}
        self._table_ttl = table_ttl
        self._flush_seconds = flush_seconds
        self._pending: dict[tuple[str, datetime], tuple[int, Rollup]] = {}
        self._last_flush = time.monotonic()
        self._flush_lock = asyncio.Lock()
        self._health: dict[str, Any] = {}  # route id -> Balancer, kept across table reloads
        self.cache = ResponseCache()

    # --- management ---

    async def route_page(
        self, tenant: TenantContext, page: PageRequest, status: str | None = None
    ) -> Page[RouteRecord]:
        async with self.db.read() as conn:
            rows, total = await queries.route_page(conn, tenant.org_id, page, status)
        return Page(rows, total, page)

    async def route(self, tenant: TenantContext, route_id: str) -> RouteRecord:
        async with self.db.read() as conn:
            found = await queries.get_route(conn, tenant.org_id, route_id)
        if found is None:
            raise NotFoundError(f"gateway route {route_id} not found")
        return found

    async def configure(
        self, tenant: TenantContext, data: dict[str, Any], jwt_secret: str | None
    ) -> tuple[RouteRecord, bool]:
        """Create the route, or update it when ``data`` names an existing ``routeId``."""
        route_id = data.pop("routeId", None)
        existing = await self.route(tenant, route_id) if route_id else None
        route_id = route_id or new_id("gwr")
        secrets = self._secrets(existing) if existing else {}
        if jwt_secret:
            secrets["jwtSecret"] = jwt_secret
        async with self.db.read() as conn:
            services = await service_queries.list_services(conn, tenant.org_id)
        now = utcnow()
        compiled = compile_route(
            route_id, tenant.org_id, data, secrets, service_targets(services, now)
        )
        values = {
            "name": compiled.name,
            "path": data["path"],
            "version": compiled.versioning.version,
            "status": "ACTIVE" if compiled.active else "INACTIVE",
            "config": data,
            "sealed_secrets": self._seal(route_id, secrets),
            "updated_at": now,
        }
        async with self.db.write() as conn:
            if existing:
                await queries.update_route(conn, tenant.org_id, route_id, values)
            else:
                await queries.insert_route(
                    conn, {"id": route_id, "org_id": tenant.org_id, "created_at": now, **values}
                )
            action = "gateway_route.update" if existing else "gateway_route.create"
            await audit.record(
                conn, tenant.principal, action, "gateway_route", route_id,
                org_id=tenant.org_id, after={"path": data["path"], "name": compiled.name},
            )  # fmt: skip
        self.forget(tenant.org_id)
        self.cache.forget_route(route_id)
        return await self.route(tenant, route_id), existing is None

    async def delete(self, tenant: TenantContext, route_id: str) -> None:
        async with self.db.write() as conn:
            if not await queries.delete_route(conn, tenant.org_id, route_id):
                raise NotFoundError(f"gateway route {route_id} not found")
            await audit.record(
                conn, tenant.principal, "gateway_route.delete", "gateway_route", route_id,
                org_id=tenant.org_id,
            )  # fmt: skip
        self.forget(tenant.org_id)
        self.cache.forget_route(route_id)
        self._health.pop(route_id, None)

    async def set_rate_limits(
        self, tenant: TenantContext, route_id: str | None, limits: dict[str, Any]
    ) -> dict[str, Any]:
        for name in ("perClient", "perRoute"):
            bucket(limits.get(name), ("body", name))  # validate
        if route_id:
            await self._patch_route(tenant, route_id, "rateLimiting", limits)
        else:
            await self._patch_settings(tenant, rate_limits=limits)
        return limits

    async def set_security(
        self, tenant: TenantContext, route_id: str | None, security: dict[str, Any]
    ) -> dict[str, Any]:
        _compile_security(security, ("body",))  # validate
        if route_id:
            await self._patch_route(tenant, route_id, "security", security)
        else:
            await self._patch_settings(tenant, security=security)
        return security

    async def settings(self, tenant: TenantContext) -> SettingsRecord:
        async with self.db.read() as conn:
            found = await queries.get_settings(conn, tenant.org_id)
        return found or SettingsRecord(tenant.org_id, {}, {}, utcnow())

    async def _patch_route(
        self, tenant: TenantContext, route_id: str, key: str, value: dict[str, Any]
    ) -> None:
        existing = await self.route(tenant, route_id)
        data = {**existing.config, key: value, "routeId": route_id}
        await self.configure(tenant, data, None)

    async def _patch_settings(self, tenant: TenantContext, **changes: Any) -> None:
        current = await self.settings(tenant)
        updated = replace(current, updated_at=utcnow(), **changes)
        async with self.db.write() as conn:
            await queries.save_settings(conn, updated)
            await audit.record(
                conn, tenant.principal, "gateway_settings.update", "gateway_settings",
                tenant.org_id, org_id=tenant.org_id, after=changes,
            )  # fmt: skip
        self.forget(tenant.org_id)

    def _secrets(self, record: RouteRecord) -> dict[str, str]:
        if not record.sealed_secrets:
            return {}
        opened: dict[str, str] = orjson.loads(self._box.open(record.sealed_secrets, record.id))
        return opened

    def _seal(self, route_id: str, secrets: dict[str, str]) -> str | None:
        return self._box.seal(orjson.dumps(secrets).decode(), route_id) if secrets else None

    # --- serving ---

    def forget(self, org_id: int) -> None:
        self._tables.pop(org_id, None)

    def forget_services(self, org_id: int) -> None:
        """A registered service changed: reload the tenant's routes and drop the cached
        answers of its routes that target services (they may come from the old endpoints)."""
        table = self._tables.pop(org_id, None)
        for route in table.routes if table is not None else ():
            if route.service is not None:
                self.cache.forget_route(route.id)

    async def table(self, org_id: int) -> RouteTable:
        cached = self._tables.get(org_id)
        if cached is not None and time.monotonic() - cached.loaded_at < self._table_ttl:
            return cached
        async with self.db.read() as conn:
            records = await queries.list_routes(conn, org_id)
            settings = await queries.get_settings(conn, org_id)
            root = await queries.root_of(conn, org_id)
            services = service_targets(await service_queries.list_services(conn, org_id), utcnow())
        compiled = (self._compile(record, services) for record in records)
        routes = [r for r in compiled if r is not None]
        routes.sort(key=lambda r: r.specificity, reverse=True)
        table = RouteTable(
            org_id,
            routes,
            _compile_security(settings.security if settings else {}, ("security",)),
            settings.rate_limits if settings else {},
            root,
        )
        self._tables[org_id] = table
        return table

    def _compile(
        self, record: RouteRecord, services: Mapping[str, ServiceTarget]
    ) -> CompiledRoute | None:
        try:
            compiled = compile_route(
                record.id, record.org_id, record.config, self._secrets(record), services
            )
        except JunctionboxError:
            log.exception("gateway route %s does not compile; skipped", record.id)
            return None
        kept = self._health.get(record.id)
        urls = [t.url for t in compiled.balancer.targets]
        if kept is not None and [t.url for t in kept.targets] == urls:
            compiled.balancer = kept  # keep passive health across reloads
        self._health[record.id] = compiled.balancer
        return compiled

    # --- rollups ---

    def record(self, route: CompiledRoute, status: int, latency_ms: float, client: str) -> None:
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        key = (route.id, hour)
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = (route.org_id, Rollup())
        entry[1].record(status, latency_ms, client)

    def flush_due(self) -> bool:
        return bool(self._pending) and (time.monotonic() - self._last_flush >= self._flush_seconds)

    async def flush(self) -> None:
        async with self._flush_lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            if not pending:
                return
            try:
                async with self.db.write() as conn:
                    for (route_id, hour), (org_id, rollup) in pending.items():
                        await _add_rollup(conn, route_id, hour, org_id, rollup)
            except JunctionboxError:
                log.warning("gateway rollups not stored; keeping them for the next flush")
                for key, value in pending.items():
                    self._merge_back(key, value)

    def _merge_back(self, key: tuple[str, datetime], value: tuple[int, Rollup]) -> None:
        current = self._pending.get(key)
        self._pending[key] = value if current is None else (value[0], value[1].merge(current[1]))

    async def analytics(
        self, tenant: TenantContext, hours: int, route_id: str | None
    ) -> dict[str, Any]:
        await self.flush()
        since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
            hours=hours - 1
        )
        async with self.db.read() as conn:
            rows = await queries.stats_since(conn, tenant.org_id, since, route_id)
            names = {r.id: r for r in await queries.list_routes(conn, tenant.org_id)}
        per_route: dict[str, Rollup] = {}
        for row in rows:
            per_route[row.route_id] = per_route.get(row.route_id, Rollup()).merge(_rollup(row))
        total = Rollup()
        for rollup in per_route.values():
            total = total.merge(rollup)
        routes = [
            {
                "routeId": rid,
                "path": names[rid].path if rid in names else None,
                "name": names[rid].name if rid in names else None,
                **summary(rollup),
            }
            for rid, rollup in sorted(per_route.items())
        ]
        return {"since": since, "hours": hours, "total": summary(total), "routes": routes}


def _rollup(row: StatsRow) -> Rollup:
    return Rollup(
        row.requests,
        row.errors,
        row.client_errors,
        row.latency_ms_sum,
        list(row.latency_histogram),
        dict(row.clients),
    )


async def _add_rollup(conn: Any, route_id: str, hour: datetime, org_id: int, add: Rollup) -> None:
    stored = await queries.get_stats_row(conn, route_id, hour)
    merged = _rollup(stored).merge(add) if stored else Rollup().merge(add)
    row = StatsRow(
        route_id,
        hour,
        org_id,
        merged.requests,
        merged.errors,
        merged.client_errors,
        merged.latency_ms_sum,
        merged.histogram,
        merged.clients,
    )
    await queries.put_stats_row(conn, row, exists=stored is not None)


__all__ = ["MASK", "GatewayService", "Match", "RouteTable", "safe_request_path"]


async def check_health(
    gateway: GatewayService, tenant: TenantContext, *, active: bool, probe_seconds: float = 2.0
) -> dict[str, Any]:
    """Upstreams' health: passive (recent results through the gateway) and, when ``active``,
    one GET per upstream (its route's ``healthCheck.path``, else its base URL) through the
    guarded client. A status below 500 counts as up."""
    table = await gateway.table(tenant.org_id)
    now = time.monotonic()
    routes = []
    for route in table.routes:
        targets = []
        for target in _distinct(route.balancer.targets):
            if active:
                url = target.url + (route.health_path or "")
                try:
                    result = await gateway.http.send("GET", url, timeout_seconds=probe_seconds)
                    ok, detail = result.status < 500, f"HTTP {result.status}"
                    target.last_status = result.status
                except JunctionboxError as exc:
                    ok, detail = False, exc.message
                target.record(ok, now, route.balancer.threshold, route.balancer.cooldown, detail)
            targets.append(
                {
                    "url": target.url,
                    "healthy": target.is_up(now) and target.failures == 0,
                    "markedDown": not target.is_up(now),
                    "consecutiveFailures": target.failures,
                    "lastStatus": target.last_status,
                    "lastError": target.last_error,
                }
            )
        healthy = all(t["healthy"] for t in targets)
        service = route.service
        routes.append(
            {"routeId": route.id, "path": route.pattern.text, "healthy": healthy,
             "serviceId": service.id if service else None,
             "serviceName": service.name if service else None, "upstreams": targets}
        )  # fmt: skip
    services = await _services_health(gateway, tenant)
    backend = gateway.backend.status()
    healthy = all(r["healthy"] for r in routes) and all(
        s["status"] != "UNHEALTHY" for s in services
    )
    return {
        "status": "healthy" if healthy else "degraded",
        "checked": "active" if active else "passive",
        "routes": routes,
        "services": services,
        "rateLimitBackend": {
            "backend": backend.backend,
            "healthy": backend.healthy,
            "note": backend.note,
        },
    }


def _distinct(targets: list[TargetHealth]) -> list[TargetHealth]:
    """Each upstream once (a weighted cycle lists an upstream as often as its weight)."""
    return list({id(t): t for t in targets}.values())


async def _services_health(gateway: GatewayService, tenant: TenantContext) -> list[dict[str, Any]]:
    """Each registered service's status, heartbeat and the active checker's last results."""
    async with gateway.db.read() as conn:
        records = await service_queries.list_services(conn, tenant.org_id)
    now = utcnow()
    return [
        {
            "serviceId": record.id,
            "serviceName": record.name,
            "status": status_of(record, now),
            "lastHeartbeat": record.last_heartbeat,
            "heartbeatTtlSeconds": record.heartbeat_ttl_seconds,
            "healthCheckUrl": record.health_check_url,
            "activeCheck": record.health.get("probes") or {},
        }
        for record in records
    ]
