"""/api/v1/integration/api-gateway/services: the service registry (seed 000's
``ServiceRegistration``), which gateway routes name as ``targetService``.

A service is addressed by its id or its name. ``status`` in answers is the effective one
(UNHEALTHY when the heartbeat is late or the active check fails); ``registeredStatus`` is the
one that was set. Same credentials as the route endpoints: any user or API key of the tenant,
so that a service can register itself and send heartbeats with its tenant's API key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, JsonValue

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import RequestModel
from junctionbox.domain.service_registry import heartbeat_expired
from junctionbox.services.service_registry import api_form, status_of
from junctionbox.store.queries.service_registry import ServiceRecord
from junctionbox.store.types import utcnow

router = APIRouter(prefix="/api/v1/integration/api-gateway/services", tags=["api-gateway"])

ServiceType = Literal["REST", "GRAPHQL", "SOAP", "WEBHOOK", "OTHER"]
SettableStatus = Literal["ACTIVE", "INACTIVE", "DEREGISTERED"]
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
ServiceIdPath = Annotated[str, Path(alias="serviceId", min_length=1, max_length=200)]


class EndpointIn(RequestModel):
    url: str = Field(max_length=2000, description="http(s) base URL; vetted like route targets.")
    weight: int = Field(1, ge=1, le=100, description="Relative share of the route's traffic.")


class HealthCheckIn(RequestModel):
    interval_seconds: float = Field(10.0, ge=1, le=3600)
    timeout_seconds: float = Field(2.0, gt=0, le=60)
    unhealthy_threshold: int = Field(3, ge=1, le=100, description="Failures in a row: down.")
    healthy_threshold: int = Field(2, ge=1, le=100, description="Successes in a row: up.")


class ConfigurationIn(RequestModel):
    heartbeat_ttl_seconds: int | None = Field(
        None, ge=1, le=7 * 86_400, description="No heartbeat for this long: UNHEALTHY."
    )
    health_check: HealthCheckIn | None = None


class DependencyIn(RequestModel):
    service_name: str = Field(max_length=200)
    version: str | None = Field(None, max_length=64)
    optional: bool = False


class ServiceIn(RequestModel):
    service_name: str = Field(pattern=NAME, description="Unique in the tenant; routes use it.")
    service_version: str = Field("1.0.0", min_length=1, max_length=64)
    service_type: ServiceType = "REST"
    endpoints: list[EndpointIn] = Field(min_length=1, max_length=50)
    health_check_url: str | None = Field(
        None, max_length=2000, description="A URL, or a path (/health) probed on every endpoint."
    )
    dependencies: list[DependencyIn] = Field(default_factory=list, max_length=100)
    capabilities: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    configuration: ConfigurationIn | None = None
    metadata: dict[str, JsonValue] = Field(
        default_factory=dict, max_length=100, description="Free-form; stored, not interpreted."
    )
    status: SettableStatus = "ACTIVE"


class ServicePatch(RequestModel):
    service_name: str | None = Field(None, pattern=NAME)
    service_version: str | None = Field(None, min_length=1, max_length=64)
    service_type: ServiceType | None = None
    endpoints: list[EndpointIn] | None = Field(None, min_length=1, max_length=50)
    health_check_url: str | None = Field(None, max_length=2000)
    dependencies: list[DependencyIn] | None = Field(None, max_length=100)
    capabilities: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=100)
    configuration: ConfigurationIn | None = None
    metadata: dict[str, JsonValue] | None = Field(None, max_length=100)
    status: SettableStatus | None = None


def service_body(record: ServiceRecord) -> dict[str, Any]:
    now = utcnow()
    late = heartbeat_expired(
        record.heartbeat_ttl_seconds, record.last_heartbeat, record.registered_at, now
    )
    return {
        "serviceId": record.id,
        "orgId": record.org_id,
        **api_form(record),
        "status": status_of(record, now),
        "registeredStatus": record.status,
        "registrationTime": record.registered_at,
        "lastHeartbeat": record.last_heartbeat,
        "updatedAt": record.updated_at,
        "health": {
            "heartbeatExpired": late,
            "activeCheck": {
                "checkedAt": record.health.get("checkedAt"),
                "probes": record.health.get("probes") or {},
            },
        },
    }


def _registration(body: ServiceIn | ServicePatch, *, partial: bool) -> dict[str, Any]:
    if partial:
        return body.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return body.model_dump(by_alias=True, mode="json")


@router.get("", summary="List the tenant's registered services")
async def list_services(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    service_type: Annotated[ServiceType | None, Query(alias="serviceType")] = None,
) -> dict[str, Any]:
    found = await svc.registry.page(tenant, page, service_type)
    return {
        "services": [service_body(r) for r in found.items],
        "total": found.total,
        "page": page.page,
        "limit": page.limit,
        "hasMore": found.has_more,
    }


@router.post("", summary="Register a service (the same serviceName replaces its registration)")
async def register(
    body: ServiceIn, tenant: TenantDep, svc: ServicesDep, response: Response
) -> dict[str, Any]:
    record, created = await svc.registry.register(tenant, _registration(body, partial=False))
    response.status_code = 201 if created else 200
    return service_body(record)


@router.get("/{serviceId}", summary="A registered service, by id or name")
async def get_service(service_id: ServiceIdPath, tenant: TenantDep, svc: ServicesDep) -> Any:
    return service_body(await svc.registry.get(tenant, service_id))


@router.put("/{serviceId}", summary="Replace a service's registration")
async def replace_service(
    service_id: ServiceIdPath, body: ServiceIn, tenant: TenantDep, svc: ServicesDep
) -> dict[str, Any]:
    data = _registration(body, partial=False)
    return service_body(await svc.registry.update(tenant, service_id, data, partial=False))


@router.patch("/{serviceId}", summary="Change some fields of a service's registration")
async def patch_service(
    service_id: ServiceIdPath, body: ServicePatch, tenant: TenantDep, svc: ServicesDep
) -> dict[str, Any]:
    data = _registration(body, partial=True)
    return service_body(await svc.registry.update(tenant, service_id, data, partial=True))


@router.delete("/{serviceId}", status_code=204, summary="Deregister (delete) a service")
async def deregister(service_id: ServiceIdPath, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.registry.deregister(tenant, service_id)
    return Response(status_code=204)


@router.post("/{serviceId}/heartbeat", summary="The service reports itself alive")
async def heartbeat(service_id: ServiceIdPath, tenant: TenantDep, svc: ServicesDep) -> Any:
    record = await svc.registry.heartbeat(tenant, service_id)
    now = utcnow()
    return {
        "serviceId": record.id,
        "serviceName": record.name,
        "status": status_of(record, now),
        "lastHeartbeat": record.last_heartbeat,
        "heartbeatTtlSeconds": record.heartbeat_ttl_seconds,
    }
