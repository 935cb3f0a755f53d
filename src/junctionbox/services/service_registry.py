"""The service registry: a tenant's named upstreams that gateway routes target by name or id.

Registering a name that exists replaces that registration (as a Consul agent re-registers
a service): the id, registration time and heartbeat stay, and the routes naming it move to
the new endpoints. Every write drops the tenant's gateway route table on this node at once
(``on_change``); other nodes pick the change up within the table's TTL (5 s by default).
A service that routes use cannot be deleted, nor renamed while a route names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from junctionbox.domain.gateway import invalid
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.netguard import parse_outbound_url
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.service_registry import (
    MAX_WEIGHT,
    SERVICE_TYPES,
    SETTABLE_STATUSES,
    Endpoint,
    HealthCheckPolicy,
    ServiceTarget,
    check_failing,
    effective_status,
    heartbeat_expired,
    usable_endpoints,
)
from junctionbox.errors import ConflictError, JunctionboxError, NotFoundError
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import gateway as route_queries
from junctionbox.store.queries import service_registry as queries
from junctionbox.store.queries.service_registry import ServiceRecord
from junctionbox.store.types import utcnow

Loc = tuple[str | int, ...]


def endpoints_of(record: ServiceRecord) -> list[Endpoint]:
    return [Endpoint(e["url"], int(e.get("weight", 1))) for e in record.endpoints]


def status_of(record: ServiceRecord, now: datetime) -> str:
    endpoints = endpoints_of(record)
    return effective_status(
        record.status,
        heartbeat_late=heartbeat_expired(
            record.heartbeat_ttl_seconds, record.last_heartbeat, record.registered_at, now
        ),
        check_failing=check_failing(endpoints, record.health_check_url, record.health),
    )


def service_targets(records: Iterable[ServiceRecord], now: datetime) -> dict[str, ServiceTarget]:
    """The tenant's services keyed by id and by name, as gateway routes resolve them."""
    found: dict[str, ServiceTarget] = {}
    for record in records:
        usable = usable_endpoints(endpoints_of(record), record.health_check_url, record.health)
        target = ServiceTarget(record.id, record.name, status_of(record, now), tuple(usable))
        found[record.id] = found[record.name] = target
    return found


def vet_endpoints(endpoints: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not endpoints:
        raise invalid(("body", "endpoints"), "a service needs at least one endpoint")
    vetted: list[dict[str, Any]] = []
    for index, endpoint in enumerate(endpoints):
        loc: Loc = ("body", "endpoints", index)
        url = _vet_url(str(endpoint.get("url") or ""), (*loc, "url"))
        weight = int(endpoint.get("weight", 1))
        if not 1 <= weight <= MAX_WEIGHT:
            raise invalid((*loc, "weight"), f"must be between 1 and {MAX_WEIGHT}")
        if any(v["url"] == url for v in vetted):
            raise invalid((*loc, "url"), "this endpoint is listed twice")
        vetted.append({"url": url, "weight": weight})
    return vetted


def vet_health_check_url(value: str | None) -> str | None:
    """An absolute URL (probed once for the service) or a path probed on every endpoint."""
    loc: Loc = ("body", "healthCheckUrl")
    if not value:
        return None
    if value.startswith("/"):
        if any(c in value for c in "# \t\r\n\\") or value.startswith("//"):
            raise invalid(loc, "a path must contain no fragment, whitespace or backslash")
        return value
    try:
        parse_outbound_url(value)
    except JunctionboxError as exc:
        raise invalid(loc, f"bad URL: {exc.message}") from None
    if "#" in value:
        raise invalid(loc, "a health-check URL has no fragment")
    return value


def _vet_url(url: str, loc: Loc) -> str:
    try:
        parse_outbound_url(url)
    except JunctionboxError as exc:
        raise invalid(loc, f"bad URL: {exc.message}") from None
    if "?" in url or "#" in url:
        raise invalid(loc, "an endpoint URL has no query or fragment")
    return url.rstrip("/")


def _row_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored columns of a registration in its API form (validated by the caller's
    schema for shape; URLs, weights and names are vetted here)."""
    if not data.get("serviceName"):
        raise invalid(("body", "serviceName"), "a service needs a name")
    service_type = str(data.get("serviceType") or "REST").upper()
    if service_type not in SERVICE_TYPES:
        raise invalid(("body", "serviceType"), f"must be one of {SERVICE_TYPES}")
    status = str(data.get("status") or "ACTIVE").upper()
    if status not in SETTABLE_STATUSES:
        raise invalid(
            ("body", "status"),
            f"must be one of {SETTABLE_STATUSES} (UNHEALTHY is derived from health, not set)",
        )
    configuration = dict(data.get("configuration") or {})
    ttl = configuration.pop("heartbeatTtlSeconds", None)
    HealthCheckPolicy.from_config(configuration.get("healthCheck"))
    return {
        "name": data["serviceName"],
        "version": data.get("serviceVersion") or "1.0.0",
        "service_type": service_type,
        "status": status,
        "endpoints": vet_endpoints(data.get("endpoints") or ()),
        "health_check_url": vet_health_check_url(data.get("healthCheckUrl")),
        "heartbeat_ttl_seconds": None if ttl is None else int(ttl),
        "dependencies": list(data.get("dependencies") or ()),
        "capabilities": list(data.get("capabilities") or ()),
        "configuration": configuration,
        "service_metadata": dict(data.get("metadata") or {}),
    }


def api_form(record: ServiceRecord) -> dict[str, Any]:
    """A registration as the API sends it (without derived status or health)."""
    configuration = dict(record.configuration)
    configuration["heartbeatTtlSeconds"] = record.heartbeat_ttl_seconds
    return {
        "serviceName": record.name,
        "serviceVersion": record.version,
        "serviceType": record.service_type,
        "endpoints": record.endpoints,
        "healthCheckUrl": record.health_check_url,
        "dependencies": record.dependencies,
        "capabilities": record.capabilities,
        "configuration": configuration,
        "metadata": record.service_metadata,
        "status": record.status,
    }


def _uses(route: route_queries.RouteRecord, record: ServiceRecord) -> bool:
    return route.config.get("targetService") in (record.id, record.name)


class ServiceRegistry:
    def __init__(self, db: Database, *, on_change: Callable[[int], None] | None = None) -> None:
        self.db = db
        self._on_change = on_change

    async def page(
        self, tenant: TenantContext, page: PageRequest, service_type: str | None = None
    ) -> Page[ServiceRecord]:
        async with self.db.read() as conn:
            rows, total = await queries.service_page(conn, tenant.org_id, page, service_type)
        return Page(rows, total, page)

    async def get(self, tenant: TenantContext, id_or_name: str) -> ServiceRecord:
        async with self.db.read() as conn:
            found = await queries.find_service(conn, tenant.org_id, id_or_name)
        if found is None:
            raise NotFoundError(f"service {id_or_name} not found")
        return found

    async def all(self, tenant: TenantContext) -> list[ServiceRecord]:
        async with self.db.read() as conn:
            return await queries.list_services(conn, tenant.org_id)

    async def register(
        self, tenant: TenantContext, data: Mapping[str, Any]
    ) -> tuple[ServiceRecord, bool]:
        """Register the service, or replace the registration of the same ``serviceName``."""
        values = _row_values(data)
        async with self.db.write() as conn:
            existing = await queries.find_service(conn, tenant.org_id, values["name"])
            if existing is not None and existing.name == values["name"]:
                await self._replace(conn, tenant, existing, values)
                service_id = existing.id
            else:
                service_id = new_id("svc")
                now = utcnow()
                await queries.insert_service(
                    conn,
                    {"id": service_id, "org_id": tenant.org_id, "health": {},
                     "registered_at": now, "last_heartbeat": None, "updated_at": now, **values},
                )  # fmt: skip
                await audit.record(
                    conn, tenant.principal, "gateway_service.register", "gateway_service",
                    service_id, org_id=tenant.org_id, after=_summary(values),
                )  # fmt: skip
        self._changed(tenant.org_id)
        return await self.get(tenant, service_id), existing is None

    async def update(
        self, tenant: TenantContext, service_id: str, data: Mapping[str, Any], *, partial: bool
    ) -> ServiceRecord:
        """PUT replaces the registration; PATCH (``partial``) changes the fields it names."""
        existing = await self.get(tenant, service_id)
        merged = {**api_form(existing), **data} if partial else dict(data)
        if partial and data.get("configuration") is not None:
            merged["configuration"] = {
                **api_form(existing)["configuration"],
                **data["configuration"],
            }
        values = _row_values(merged)
        async with self.db.write() as conn:
            await self._replace(conn, tenant, existing, values)
        self._changed(tenant.org_id)
        return await self.get(tenant, existing.id)

    async def deregister(self, tenant: TenantContext, service_id: str) -> None:
        existing = await self.get(tenant, service_id)
        async with self.db.write() as conn:
            await self._refuse_if_used(conn, existing, "deleted")
            await queries.delete_service(conn, tenant.org_id, existing.id)
            await audit.record(
                conn, tenant.principal, "gateway_service.deregister", "gateway_service",
                existing.id, org_id=tenant.org_id, before={"serviceName": existing.name},
            )  # fmt: skip
        self._changed(tenant.org_id)

    async def heartbeat(self, tenant: TenantContext, service_id: str) -> ServiceRecord:
        """The service says it is alive. Not audited: services call this every few seconds."""
        existing = await self.get(tenant, service_id)
        async with self.db.write() as conn:
            await queries.update_service(
                conn, tenant.org_id, existing.id, {"last_heartbeat": utcnow()}
            )
        return await self.get(tenant, existing.id)

    async def with_health_checks(self) -> list[ServiceRecord]:
        """Every tenant's ACTIVE services with a health check (for the checker's sweep)."""
        async with self.db.read() as conn:
            return await queries.services_with_health_checks(conn)

    async def save_health(self, record: ServiceRecord, health: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await queries.save_health(conn, record.org_id, record.id, health)

    async def routes_using(self, tenant: TenantContext, record: ServiceRecord) -> list[str]:
        async with self.db.read() as conn:
            routes = await route_queries.list_routes(conn, tenant.org_id)
        return [r.id for r in routes if _uses(r, record)]

    async def _replace(
        self, conn: Any, tenant: TenantContext, existing: ServiceRecord, values: dict[str, Any]
    ) -> None:
        if values["name"] != existing.name:
            await self._refuse_if_used(conn, existing, "renamed", by_name=True)
        # A new endpoint list or health check starts with a clean health record.
        same_probes = (values["endpoints"], values["health_check_url"]) == (
            existing.endpoints,
            existing.health_check_url,
        )
        health = existing.health if same_probes else {}
        await queries.update_service(
            conn, tenant.org_id, existing.id, {**values, "health": health, "updated_at": utcnow()}
        )
        await audit.record(
            conn, tenant.principal, "gateway_service.update", "gateway_service", existing.id,
            org_id=tenant.org_id, before=_summary(_row_of(existing)), after=_summary(values),
        )  # fmt: skip

    async def _refuse_if_used(
        self, conn: Any, record: ServiceRecord, what: str, *, by_name: bool = False
    ) -> None:
        routes = await route_queries.list_routes(conn, record.org_id)
        using = [
            r.id
            for r in routes
            if (r.config.get("targetService") == record.name if by_name else _uses(r, record))
        ]
        if using:
            raise ConflictError(
                f"service {record.name} is used by gateway routes {', '.join(using)}: "
                f"point them elsewhere before it is {what}"
            )

    def _changed(self, org_id: int) -> None:
        if self._on_change is not None:
            self._on_change(org_id)


def _row_of(record: ServiceRecord) -> dict[str, Any]:
    return {"name": record.name, "version": record.version, "endpoints": record.endpoints,
            "status": record.status}  # fmt: skip


def _summary(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "serviceName": values["name"],
        "serviceVersion": values["version"],
        "endpoints": [e["url"] for e in values["endpoints"]],
        "status": values["status"],
    }
