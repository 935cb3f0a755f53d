"""``/api/v1/inbound-integrations``: real-time API proxy routes (seed 003 INBOUND).

Any authenticated caller of the tenant may read and change its inbound integrations, as
with outbound ones (the upstream is reached only through the SSRF-guarded client).
Integrations of another tenant answer 404. Credentials in ``outgoingAuthConfig`` and
``inboundAuthConfig`` are write-only: masked in every response; a masked value sent back
keeps the stored one. The proxy itself is ``/api/v1/integrations/{type}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, model_validator

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.routers.outbound_integrations import RateLimitsIn, RateLimitsOut
from junctionbox.api.schemas import (
    ApiModel,
    RequestModel,
    VersionOut,
    VersionsOut,
    page_body,
    paged,
)
from junctionbox.services.inbound import READ_ONLY_FIELDS, inbound_view
from junctionbox.store.queries.inbound import StoredInbound

router = APIRouter(prefix="/api/v1/inbound-integrations", tags=["inbound integrations"])

IntegrationId = Annotated[
    str, Path(alias="id", min_length=1, max_length=40, description="Integration id (inb_…).")
]
VersionNumber = Annotated[int, Path(alias="version", ge=1)]


class ProxyRetryIn(RequestModel):
    max_retries: int | None = Field(default=None, description="0-5; default 2 (3 attempts).")
    initial_delay: float | None = Field(default=None, description="ms, default 100.")
    max_delay: float | None = Field(default=None, description="ms, default 2000.")
    multiplier: float | None = Field(default=None, description="1-10; default 2.")
    retry_non_idempotent: bool | None = Field(
        default=None, description="Also retry POST and PATCH (default false)."
    )


class InboundFields(RequestModel):
    """Seed 003's INBOUND fields plus allowedMethods and the retry policy. Fields of a
    response that are the server's are accepted and ignored."""

    direction: Literal["INBOUND"] | None = None
    name: str | None = None
    type: str | None = Field(
        default=None, description="The proxy route's name (/api/v1/integrations/{type})."
    )
    description: str | None = None
    is_active: bool | None = None
    target_url: str | None = Field(default=None, description="http(s) URL of the upstream API.")
    http_method: str | None = Field(default=None, description="POST (default), GET, PUT ...")
    allowed_methods: list[str] | None = Field(
        default=None, description="Methods the route accepts (default [httpMethod])."
    )
    inbound_auth_type: str | None = Field(default=None, description="NONE, API_KEY, BEARER, BASIC.")
    inbound_auth_config: dict[str, Any] | None = Field(
        default=None,
        description="API_KEY {name (header, default X-Integration-Key), value}; BEARER {token};"
        " BASIC {username, password}. Write-only.",
    )
    outgoing_auth_type: str | None = None
    outgoing_auth_config: dict[str, Any] | None = None
    request_transformation_mode: str | None = Field(
        default=None, description="SIMPLE, SCRIPT, JSONATA."
    )
    request_field_mappings: list[dict[str, Any]] | None = None
    request_transform_script: str | None = None
    response_transformation_mode: str | None = None
    response_field_mappings: list[dict[str, Any]] | None = None
    response_transform_script: str | None = None
    rate_limits: RateLimitsIn | None = None
    timeout_ms: int | None = Field(
        default=None, description="Per attempt, 1-300000; default 30000."
    )
    retry_policy: ProxyRetryIn | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k == "direction" or k not in READ_ONLY_FIELDS}
        return data

    def document(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=True, exclude={"direction"})


class ProxyRetryOut(ApiModel):
    max_retries: int
    initial_delay: int
    max_delay: int
    multiplier: float
    retry_non_idempotent: bool


class InboundConfigOut(ApiModel):
    direction: str
    name: str
    type: str
    description: str | None
    is_active: bool
    target_url: str
    http_method: str
    allowed_methods: list[str]
    inbound_auth_type: str
    inbound_auth_config: dict[str, Any] = Field(description="Credentials masked.")
    outgoing_auth_type: str
    outgoing_auth_config: dict[str, Any] = Field(description="Credentials masked.")
    request_transformation_mode: str | None
    request_field_mappings: list[dict[str, Any]]
    request_transform_script: str | None
    response_transformation_mode: str | None
    response_field_mappings: list[dict[str, Any]]
    response_transform_script: str | None
    rate_limits: RateLimitsOut
    timeout_ms: int
    retry_policy: ProxyRetryOut


class InboundOut(InboundConfigOut):
    id: str
    org_id: int
    version: int
    proxy_url: str = Field(description="Where callers reach the upstream through junctionbox.")
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stored: StoredInbound) -> InboundOut:
        return cls.model_validate(inbound_view(stored))


InboundPage = paged("integrations", InboundOut)


class VersionDetailOut(VersionOut):
    integration: InboundConfigOut


@router.post("", response_model=InboundOut, status_code=201, summary="Create")
async def create_inbound(body: InboundFields, tenant: TenantDep, svc: ServicesDep) -> InboundOut:
    return InboundOut.of(await svc.inbound.create(tenant, body.document()))


@router.get("", response_model=InboundPage, summary="List the tenant's inbound integrations")
async def list_inbound(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
    kind: Annotated[str | None, Query(alias="type", max_length=100)] = None,
    search: Annotated[str | None, Query(max_length=200, description="In name or type.")] = None,
) -> Any:
    found = await svc.inbound.list(tenant, page, is_active=is_active, kind=kind, search=search)
    return page_body("integrations", found, InboundOut.of)


@router.get("/{id}", response_model=InboundOut, summary="Get")
async def get_inbound(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.get(tenant, integration_id))


@router.put("/{id}", response_model=InboundOut, summary="Replace")
async def replace_inbound(
    integration_id: IntegrationId, body: InboundFields, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.replace(tenant, integration_id, body.document()))


@router.patch("/{id}", response_model=InboundOut, summary="Change some fields")
async def patch_inbound(
    integration_id: IntegrationId, body: InboundFields, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.patch(tenant, integration_id, body.document()))


@router.delete("/{id}", status_code=204, summary="Delete with its history")
async def delete_inbound(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> Response:
    await svc.inbound.delete(tenant, integration_id)
    return Response(status_code=204)


@router.post("/{id}/enable", response_model=InboundOut, summary="Enable")
async def enable_inbound(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.set_active(tenant, integration_id, True))


@router.post("/{id}/disable", response_model=InboundOut, summary="Disable (the route answers 404)")
async def disable_inbound(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.set_active(tenant, integration_id, False))


@router.get("/{id}/versions", response_model=VersionsOut, summary="Version history, newest first")
async def list_versions(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> VersionsOut:
    found = await svc.inbound.versions(tenant, integration_id)
    return VersionsOut(versions=[VersionOut.of(v) for v in found])


@router.get("/{id}/versions/{version}", response_model=VersionDetailOut, summary="One version")
async def get_version(
    integration_id: IntegrationId, version: VersionNumber, tenant: TenantDep, svc: ServicesDep
) -> VersionDetailOut:
    info, document = await svc.inbound.version(tenant, integration_id, version)
    return VersionDetailOut.model_validate(
        {**VersionOut.of(info).model_dump(), "integration": document}
    )


@router.post(
    "/{id}/versions/{version}/restore",
    response_model=InboundOut,
    summary="Restore a version's configuration and credentials as a new version",
)
async def restore_version(
    integration_id: IntegrationId, version: VersionNumber, tenant: TenantDep, svc: ServicesDep
) -> InboundOut:
    return InboundOut.of(await svc.inbound.restore(tenant, integration_id, version))
