"""``/api/v1/outbound-integrations``: webhook integrations (seed 003 OUTBOUND).

Any authenticated caller of the tenant (USER, API_KEY, or ADMIN acting for it) may read and
change its integrations, as with the tenant's other resources (event types, streams): the
URLs they configure are reached only through the SSRF-guarded client, unlike event sources,
whose connection strings reach the platform's own network and need ADMIN. Integrations of
another tenant answer 404.

Credentials in ``outgoingAuthConfig`` are write-only (masked in every response); the
signing secret is returned by the creation and by ``GET /{id}/secret``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, model_validator

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import (
    ApiModel,
    RequestModel,
    VersionOut,
    VersionsOut,
    page_body,
    paged,
)
from junctionbox.domain.outbound import StoredIntegration
from junctionbox.services.integrations import (
    READ_ONLY_FIELDS,
    ActionPreview,
    SampleEvent,
    SecretInfo,
    TestReport,
    VersionDetail,
    integration_view,
)

router = APIRouter(prefix="/api/v1/outbound-integrations", tags=["outbound integrations"])

IntegrationId = Annotated[
    str, Path(alias="id", min_length=1, max_length=40, description="Integration id (int_…).")
]
VersionNumber = Annotated[int, Path(alias="version", ge=1, description="Version number.")]


# --- request bodies ---


class RateLimitsIn(RequestModel):
    enabled: bool | None = None
    max_requests: int | None = Field(default=None, description="Requests per window, 1-1000000.")
    window_seconds: float | None = Field(default=None, description="Window length, 0.001-86400 s.")


class RetryPolicyIn(RequestModel):
    """Seed 001's RetryConfig, in milliseconds."""

    max_retries: int | None = Field(default=None, description="0-50; default 5.")
    initial_delay: float | None = Field(default=None, description="Base delay in ms.")
    max_delay: float | None = Field(default=None, description="Largest delay in ms.")
    multiplier: float | None = Field(default=None, description="1-10; default 2.")
    jitter_factor: float | None = Field(default=None, description="0-1; default 0.2.")


class OrderingIn(RequestModel):
    mode: str | None = Field(default=None, description="NONE (default) or FIFO.")
    key: str | None = Field(
        default=None, description="FIFO: dot path of the ordering key (default subject)."
    )


class SigningIn(RequestModel):
    algorithm: str | None = Field(
        default=None, description="HMAC_SHA256 (default), ED25519 or NONE."
    )
    hex_header: bool | None = Field(
        default=None, description="Also send seed 001's hex HMAC header."
    )
    rotation_overlap_seconds: int | None = Field(
        default=None, description="How long a rotated-out key keeps signing (default 86400)."
    )


class SchedulingConfigIn(RequestModel):
    delay_ms: int | None = Field(
        default=None, description="DELAYED: send this long after the event."
    )
    at: str | None = Field(default=None, description="DELAYED: send at this ISO 8601 instant.")
    type: str | None = Field(default=None, description="RECURRING: CRON (default) or INTERVAL.")
    expression: str | None = Field(default=None, description="RECURRING CRON: a cron expression.")
    interval_ms: int | None = Field(default=None, description="RECURRING INTERVAL: period in ms.")
    timezone: str | None = Field(default=None, description="IANA zone; default the tenant's.")
    max_occurrences: int | None = None
    end_at: str | None = None


class ActionIn(RequestModel):
    """One of several sequential deliveries; omitted fields inherit the integration's."""

    name: str | None = None
    target_url: str | None = None
    http_method: str | None = None
    delay_ms: int | None = Field(
        default=None, description="Wait after the previous action succeeded."
    )
    transformation_mode: str | None = None
    field_mappings: list[dict[str, Any]] | None = None
    transform_script: str | None = None


class IntegrationFields(RequestModel):
    """Seed 003's OUTBOUND fields plus filter, retry policy, timeout, ordering and signing.

    Fields of a response that are the server's (``id``, ``version``, ``createdAt`` ...) are
    accepted and ignored, so a document read back can be sent again as it is.
    """

    direction: Literal["OUTBOUND"] | None = Field(
        default=None, description="Seed 003's discriminator; only OUTBOUND here."
    )
    name: str | None = Field(default=None, description="Unique in the tenant.")
    description: str | None = None
    event_type: str | None = Field(
        default=None, description="Exact type, '*' or a prefix pattern such as 'appointment.*'."
    )
    is_active: bool | None = None
    target_url: str | None = Field(default=None, description="http(s) URL of the receiver.")
    http_method: str | None = Field(default=None, description="POST (default), PUT or PATCH.")
    transformation_mode: str | None = Field(
        default=None, description="SIMPLE, SCRIPT or JSONATA; none sends the event data unchanged."
    )
    field_mappings: list[dict[str, Any]] | None = Field(
        default=None, description="SIMPLE mappings."
    )
    transform_script: str | None = Field(
        default=None,
        description="SCRIPT: JavaScript body of (payload, context); JSONATA: expression.",
    )
    outgoing_auth_type: str | None = Field(
        default=None, description="NONE, API_KEY, BEARER, BASIC, OAUTH2 or CUSTOM_HEADERS."
    )
    outgoing_auth_config: dict[str, Any] | None = Field(
        default=None,
        description="API_KEY {name, value, in: header|query}; BEARER {token}; BASIC "
        "{username, password}; OAUTH2 {tokenUrl, clientId, clientSecret, scope?, audience?}; "
        "CUSTOM_HEADERS {headers: {name: value}}. Credentials are write-only: a masked value "
        "sent back keeps the stored one.",
    )
    scheduling_mode: str | None = Field(
        default=None, description="IMMEDIATE, DELAYED or RECURRING."
    )
    scheduling_config: SchedulingConfigIn | None = None
    actions: list[ActionIn] | None = None
    rate_limits: RateLimitsIn | None = None
    scope: str | None = Field(default=None, description="ALL_ENTITIES (default) or ENTITY_ONLY.")
    excluded_entity_rids: list[int] | None = None
    filter: str | None = Field(default=None, description="CEL expression over the event.")
    retry_policy: RetryPolicyIn | None = None
    timeout_ms: int | None = Field(
        default=None, description="Per attempt, 1-300000; default 30000."
    )
    ordering: OrderingIn | None = None
    signing: SigningIn | None = None
    disable_after_failures: int | None = Field(
        default=None, description="Consecutive failed deliveries before auto-disable (0: never)."
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k == "direction" or k not in READ_ONLY_FIELDS}
        return data

    def document(self) -> dict[str, Any]:
        """The fields the caller sent, camelCase (explicit nulls included)."""
        return self.model_dump(by_alias=True, exclude_unset=True, exclude={"direction"})


class EventSampleIn(RequestModel):
    type: str | None = Field(
        default=None, max_length=200, description="Default: the integration's."
    )
    data: Any = Field(default=None, description="The event data (JSON).")
    id: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=500)
    subject: str | None = Field(default=None, max_length=500)


class TestIn(RequestModel):
    event: EventSampleIn | None = None


class DisableIn(RequestModel):
    reason: str | None = Field(default=None, max_length=150)


class RotateIn(RequestModel):
    overlap_seconds: int | None = Field(
        default=None,
        description="How long the old key keeps signing beside the new one (0-2592000); "
        "default the integration's signing.rotationOverlapSeconds.",
    )
    secret: str | None = Field(
        default=None,
        max_length=200,
        description="Use this key instead of a generated one (whsec_… or, for ED25519, whsk_…).",
    )


# --- responses ---


class RateLimitsOut(ApiModel):
    enabled: bool
    max_requests: int
    window_seconds: float


class RetryPolicyOut(ApiModel):
    max_retries: int
    initial_delay: int
    max_delay: int
    multiplier: float
    jitter_factor: float


class OrderingOut(ApiModel):
    mode: str
    key: str | None


class SigningOut(ApiModel):
    algorithm: str
    hex_header: bool
    rotation_overlap_seconds: int


class ActionOut(ApiModel):
    name: str
    target_url: str
    http_method: str
    delay_ms: int
    transformation_mode: str | None
    field_mappings: list[dict[str, Any]]
    transform_script: str | None


class IntegrationConfigOut(ApiModel):
    name: str
    description: str | None
    event_type: str
    is_active: bool
    target_url: str
    http_method: str
    transformation_mode: str | None
    field_mappings: list[dict[str, Any]]
    transform_script: str | None
    outgoing_auth_type: str
    outgoing_auth_config: dict[str, Any] = Field(description="Credentials masked.")
    scheduling_mode: str
    scheduling_config: dict[str, Any] | None
    actions: list[ActionOut]
    rate_limits: RateLimitsOut
    scope: str
    excluded_entity_rids: list[int]
    filter: str | None
    retry_policy: RetryPolicyOut
    timeout_ms: int
    ordering: OrderingOut
    signing: SigningOut
    disable_after_failures: int


class IntegrationOut(IntegrationConfigOut):
    id: str
    org_id: int
    version: int
    consecutive_failures: int
    disabled_reason: str | None
    disabled_at: datetime | None
    signing_public_key: str | None = Field(description="ED25519: the whpk_ verification key.")
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stored: StoredIntegration) -> IntegrationOut:
        return cls.model_validate(integration_view(stored))


class CreatedOut(IntegrationOut):
    signing_secret: str | None = Field(
        description="HMAC: the whsec_ secret receivers verify with (also GET /{id}/secret). "
        "ED25519: null; see signingPublicKey."
    )


IntegrationPage = paged("integrations", IntegrationOut)


class VersionDetailOut(VersionOut):
    integration: IntegrationConfigOut

    @classmethod
    def detail(cls, found: VersionDetail) -> VersionDetailOut:
        return cls.model_validate(
            {**VersionOut.of(found.info).model_dump(), "integration": found.document}
        )


class KeyOut(ApiModel):
    created_at: datetime
    expires_at: datetime | None = Field(description="null for the current key.")
    current: bool


class SecretOut(ApiModel):
    algorithm: str
    signing_secret: str | None = Field(description="The current whsec_ secret (HMAC).")
    signing_public_key: str | None = Field(description="The current whpk_ key (ED25519).")
    keys: list[KeyOut] = Field(
        description="Every key signing now: the current one and those still in their overlap."
    )

    @classmethod
    def of(cls, info: SecretInfo) -> SecretOut:
        return cls.model_validate(info)


class HeaderOut(ApiModel):
    name: str
    value: str


class ActionPreviewOut(ApiModel):
    index: int
    name: str
    message_id: str = Field(description="The webhook-id this delivery would carry.")
    method: str
    url: str = Field(description="Credentials in the query masked.")
    headers: list[HeaderOut] = Field(description="In sending order; credentials masked.")
    body: str = Field(description="The exact body (UTF-8; invalid bytes replaced).")
    transformed: Any = Field(
        default=None, description="The transformation's result; null: no transform."
    )
    signature: str | None
    curl: str

    @classmethod
    def of(cls, preview: ActionPreview) -> ActionPreviewOut:
        values = {k: getattr(preview, k) for k in preview.__dataclass_fields__}
        values["headers"] = [HeaderOut(name=n, value=v) for n, v in preview.headers]
        return cls.model_validate(values)


class MatchOut(ApiModel):
    matches: bool = Field(description="The dispatcher would deliver this event.")
    is_active: bool
    type_matches: bool
    filter_matches: bool | None = Field(description="null: the integration has no filter.")
    filter_error: str | None = Field(
        description="Why the filter could not decide (a missing key ...): counted as no match."
    )


class TestOut(ApiModel):
    integration_id: str | None = Field(description="null for an unsaved configuration.")
    version: int
    sent: bool = Field(default=False, description="Always false: a test call sends nothing.")
    event: dict[str, Any] = Field(description="The sample event (CloudEvents JSON).")
    match: MatchOut
    actions: list[ActionPreviewOut]
    signing_secret: str | None = Field(
        default=None,
        description="Unsaved configurations only: the throwaway whsec_ secret that signed.",
    )

    @classmethod
    def of(cls, report: TestReport) -> TestOut:
        match = report.match
        return cls(
            integration_id=report.integration_id,
            version=report.version,
            event=report.event,
            match=MatchOut(
                matches=match.matches,
                is_active=match.is_active,
                type_matches=match.type_matches,
                filter_matches=match.filter_matches,
                filter_error=match.filter_error,
            ),
            actions=[ActionPreviewOut.of(a) for a in report.actions],
            signing_secret=report.signing_secret,
        )


class DraftTestIn(RequestModel):
    integration: IntegrationFields = Field(description="An unsaved integration body.")
    event: EventSampleIn | None = None


def _sample(event: EventSampleIn | None) -> SampleEvent:
    if event is None:
        return SampleEvent()
    return SampleEvent(event.type, event.data, event.id, event.source, event.subject)


# --- routes ---


@router.post("", response_model=CreatedOut, status_code=201, summary="Create an integration")
async def create_integration(
    body: IntegrationFields, tenant: TenantDep, svc: ServicesDep
) -> CreatedOut:
    created = await svc.integrations.create(tenant, body.document())
    view = integration_view(created.integration)
    return CreatedOut.model_validate({**view, "signingSecret": created.signing_secret})


@router.get("", response_model=IntegrationPage, summary="List the tenant's integrations")
async def list_integrations(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
    event_type: Annotated[
        str | None,
        Query(
            alias="eventType",
            max_length=200,
            description="Integrations an event of this type would match (patterns included).",
        ),
    ] = None,
    search: Annotated[
        str | None, Query(max_length=200, description="Part of the name, any case.")
    ] = None,
) -> Any:
    found = await svc.integrations.list(
        tenant, page, is_active=is_active, event_type=event_type, search=search
    )
    return page_body("integrations", found, IntegrationOut.of)


@router.post(
    "/test",
    response_model=TestOut,
    summary="Show what an unsaved configuration would send for a sample event",
)
async def preview_draft(body: DraftTestIn, tenant: TenantDep, svc: ServicesDep) -> TestOut:
    report = await svc.integrations.test_draft(
        tenant, body.integration.document(), _sample(body.event), svc.requests
    )
    return TestOut.of(report)


@router.get("/{id}", response_model=IntegrationOut, summary="Get an integration")
async def get_integration(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> IntegrationOut:
    return IntegrationOut.of(await svc.integrations.get(tenant, integration_id))


@router.put("/{id}", response_model=IntegrationOut, summary="Replace an integration")
async def replace_integration(
    integration_id: IntegrationId, body: IntegrationFields, tenant: TenantDep, svc: ServicesDep
) -> IntegrationOut:
    stored = await svc.integrations.replace(tenant, integration_id, body.document())
    return IntegrationOut.of(stored)


@router.patch(
    "/{id}",
    response_model=IntegrationOut,
    summary="Change some fields (merged into the current document, then validated)",
)
async def patch_integration(
    integration_id: IntegrationId, body: IntegrationFields, tenant: TenantDep, svc: ServicesDep
) -> IntegrationOut:
    stored = await svc.integrations.patch(tenant, integration_id, body.document())
    return IntegrationOut.of(stored)


@router.delete("/{id}", status_code=204, summary="Delete an integration and its history")
async def delete_integration(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> Response:
    await svc.integrations.delete(tenant, integration_id)
    return Response(status_code=204)


@router.post(
    "/{id}/enable",
    response_model=IntegrationOut,
    summary="Enable (resets the consecutive-failure count)",
)
async def enable_integration(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> IntegrationOut:
    return IntegrationOut.of(await svc.integrations.set_active(tenant, integration_id, True))


@router.post("/{id}/disable", response_model=IntegrationOut, summary="Disable")
async def disable_integration(
    integration_id: IntegrationId,
    tenant: TenantDep,
    svc: ServicesDep,
    body: DisableIn | None = None,
) -> IntegrationOut:
    reason = body.reason if body else None
    stored = await svc.integrations.set_active(tenant, integration_id, False, reason=reason)
    return IntegrationOut.of(stored)


@router.get("/{id}/versions", response_model=VersionsOut, summary="Version history, newest first")
async def list_versions(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> VersionsOut:
    found = await svc.integrations.versions(tenant, integration_id)
    return VersionsOut(versions=[VersionOut.of(v) for v in found])


@router.get(
    "/{id}/versions/{version}",
    response_model=VersionDetailOut,
    summary="One version's configuration (credentials masked)",
)
async def get_version(
    integration_id: IntegrationId, version: VersionNumber, tenant: TenantDep, svc: ServicesDep
) -> VersionDetailOut:
    return VersionDetailOut.detail(await svc.integrations.version(tenant, integration_id, version))


@router.post(
    "/{id}/versions/{version}/restore",
    response_model=IntegrationOut,
    summary="Restore a version's configuration and credentials as a new version",
)
async def restore_version(
    integration_id: IntegrationId, version: VersionNumber, tenant: TenantDep, svc: ServicesDep
) -> IntegrationOut:
    return IntegrationOut.of(await svc.integrations.restore(tenant, integration_id, version))


@router.get("/{id}/secret", response_model=SecretOut, summary="The current signing secret")
async def get_secret(
    integration_id: IntegrationId, tenant: TenantDep, svc: ServicesDep
) -> SecretOut:
    return SecretOut.of(await svc.integrations.secret(tenant, integration_id))


@router.post(
    "/{id}/secret/rotate",
    response_model=SecretOut,
    summary="Rotate the signing secret (the old one keeps signing during the overlap)",
)
async def rotate_secret(
    integration_id: IntegrationId,
    tenant: TenantDep,
    svc: ServicesDep,
    body: RotateIn | None = None,
) -> SecretOut:
    info = await svc.integrations.rotate_secret(
        tenant,
        integration_id,
        overlap_seconds=body.overlap_seconds if body else None,
        secret=body.secret if body else None,
    )
    return SecretOut.of(info)


@router.post(
    "/{id}/test",
    response_model=TestOut,
    summary="Show what would be sent for a sample event, without sending it",
)
async def preview_integration(
    integration_id: IntegrationId,
    tenant: TenantDep,
    svc: ServicesDep,
    body: TestIn | None = None,
) -> TestOut:
    sample = _sample(body.event if body else None)
    report = await svc.integrations.test_call(tenant, integration_id, sample, svc.requests)
    return TestOut.of(report)
