"""``/api/v1/webhook-sources``: where partners' webhooks come in, and how they are verified.

Any authenticated caller of the tenant (USER, API_KEY, or ADMIN acting for it with
``orgId``) may manage its sources, as with outbound integrations: a source reaches no
network, it only accepts requests. Sources of another tenant answer 404.

Secrets are write-only: responses show a hint (the last four characters) of each active
secret; a secret the server generated (none given at creation or rotation) is returned
once, in ``secret``, by the response that generated it. ``receiveUrl`` is the address to
give the partner (``JB_WEBHOOKS_PUBLIC_URL`` sets its base; default: this request's).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, page_body, paged
from junctionbox.domain.webhook_sources import EventTypeFrom
from junctionbox.domain.webhook_verification import Encoding, Scheme
from junctionbox.errors import FieldProblem, ValidationError
from junctionbox.services.webhook_intake import RECEIVE_PATH
from junctionbox.services.webhook_sources import Revealed, WebhookSource

router = APIRouter(prefix="/api/v1/webhook-sources", tags=["webhook sources"])

SourceId = Annotated[
    str, Path(min_length=1, max_length=40, description="Webhook source id (whsrc_…).")
]


# --- bodies ---


class VerificationIn(RequestModel):
    scheme: Scheme | None = Field(
        None,
        description="STANDARD_WEBHOOKS, HMAC_SHA256, GITHUB, STRIPE, BASIC or API_KEY "
        "(required at creation).",
    )
    header: str | None = Field(
        None, description="HMAC_SHA256: the signature header; API_KEY: the key header."
    )
    encoding: Encoding | None = Field(None, description="HMAC_SHA256: HEX (default) or BASE64.")
    prefix: str | None = Field(
        None, description="HMAC_SHA256: text before the signature, e.g. sha256=."
    )
    username: str | None = Field(None, description="BASIC: the expected username.")
    secret: str | None = Field(
        None,
        description="Write-only. The shared secret (BASIC: the password; STANDARD_WEBHOOKS: "
        "whsec_… or the sender's whpk_ public key). Omitted at creation: one is generated.",
    )


class SourceFields(RequestModel):
    description: str | None = Field(None, max_length=2000)
    stream: str | None = Field(None, description="Stream the events go to; default 'default'.")
    event_type_from: EventTypeFrom | None = Field(
        None, description="FIXED (default), HEADER or BODY."
    )
    event_type: str | None = Field(
        None,
        description="FIXED: the event type; HEADER: the header holding it; BODY: its dot path "
        "in the JSON body (e.g. type or data.kind).",
    )
    event_type_prefix: str | None = Field(
        None, description="Put before the type found, e.g. github."
    )
    tolerance_seconds: int | None = Field(
        None, description="STANDARD_WEBHOOKS, STRIPE: timestamp tolerance both ways; 300."
    )
    message_id_header: str | None = Field(
        None, description="Header with the sender's message id (default per scheme)."
    )
    message_id_path: str | None = Field(
        None, description="Dot path of the message id in the JSON body (STRIPE: id)."
    )
    max_body_bytes: int | None = Field(None, description="Largest body; default 1 MiB.")
    reject_duplicates: bool | None = Field(
        None, description="Answer 409 to a re-sent message id instead of acknowledging it."
    )


class SourceIn(SourceFields):
    name: str = Field(min_length=1, max_length=200)
    is_active: bool = True
    verification: VerificationIn

    def config(self) -> dict[str, Any]:
        document = self.model_dump(
            by_alias=True, exclude_none=True, exclude={"name", "description", "is_active"}
        )
        document["verification"].pop("secret", None)
        return document


class SourcePatch(SourceFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    is_active: bool | None = None
    verification: VerificationIn | None = None

    def changes(self) -> dict[str, Any]:
        changes = self.model_dump(by_alias=True, exclude_unset=True)
        for name in ("name", "isActive", "verification", "eventType"):
            if name in changes and changes[name] is None:
                message = "must not be null"
                raise ValidationError(
                    f"{name}: {message}", problems=[FieldProblem(("body", name), message)]
                )
        return changes


class RotateIn(RequestModel):
    secret: str | None = Field(None, description="The new secret; omitted: one is generated.")
    overlap_seconds: int | None = Field(
        None, description="How long the previous secret keeps verifying; default 86400, 0: none."
    )


# --- responses ---


class VerificationOut(ApiModel):
    scheme: str
    header: str | None
    encoding: str
    prefix: str
    username: str | None


class SecretOut(ApiModel):
    hint: str = Field(description="The last four characters.")
    created_at: datetime
    expires_at: datetime | None = Field(description="null: the current secret.")
    current: bool


class SourceOut(ApiModel):
    id: str
    org_id: int
    name: str
    description: str | None
    is_active: bool
    receive_url: str = Field(description="Where the partner sends its webhooks (POST).")
    stream: str
    event_type_from: str
    event_type: str
    event_type_prefix: str
    verification: VerificationOut
    tolerance_seconds: int
    message_id_header: str | None
    message_id_path: str | None
    max_body_bytes: int
    reject_duplicates: bool
    secrets: list[SecretOut] = Field(description="The active secrets (at most two).")
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: WebhookSource, base_url: str) -> SourceOut:
        return cls.model_validate(_values(view, base_url))


class RevealedOut(SourceOut):
    secret: str | None = Field(
        description="The secret generated by this request, shown this once; null if given."
    )

    @classmethod
    def revealed(cls, found: Revealed, base_url: str) -> RevealedOut:
        return cls.model_validate({**_values(found.source, base_url), "secret": found.secret})


def _values(view: WebhookSource, base_url: str) -> dict[str, Any]:
    return {
        **view.config.to_json(),
        "id": view.id,
        "orgId": view.org_id,
        "name": view.name,
        "description": view.description,
        "isActive": view.is_active,
        "receiveUrl": base_url + RECEIVE_PATH.format(source_id=view.id),
        "secrets": [SecretOut.model_validate(s) for s in view.secrets],
        "createdBy": view.created_by,
        "createdAt": view.created_at,
        "updatedAt": view.updated_at,
    }


SourcePage = paged("sources", SourceOut)


def _base_url(request: Request, svc: ServicesDep) -> str:
    configured = svc.settings.webhooks_public_url.strip()
    return (configured or str(request.base_url)).rstrip("/")


# --- routes ---


@router.post("", response_model=RevealedOut, status_code=201, summary="Create a webhook source")
async def create_source(
    body: SourceIn, request: Request, tenant: TenantDep, svc: ServicesDep
) -> RevealedOut:
    if body.verification.scheme is None:
        message = "verification.scheme is required"
        raise ValidationError(
            message, problems=[FieldProblem(("body", "verification", "scheme"), message)]
        )
    found = await svc.webhook_sources.create(
        tenant,
        name=body.name,
        description=body.description,
        is_active=body.is_active,
        config=body.config(),
        secret=body.verification.secret,
    )
    return RevealedOut.revealed(found, _base_url(request, svc))


@router.get("", response_model=SourcePage, summary="List the tenant's webhook sources")
async def list_sources(
    request: Request,
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> Any:
    found = await svc.webhook_sources.page(tenant, page, is_active=is_active)
    base = _base_url(request, svc)
    return page_body("sources", found, lambda view: SourceOut.of(view, base))


@router.get("/{source_id}", response_model=SourceOut, summary="Get a webhook source")
async def get_source(
    source_id: SourceId, request: Request, tenant: TenantDep, svc: ServicesDep
) -> SourceOut:
    view = await svc.webhook_sources.get(tenant, source_id)
    return SourceOut.of(view, _base_url(request, svc))


@router.patch("/{source_id}", response_model=SourceOut, summary="Change a webhook source")
async def update_source(
    source_id: SourceId, body: SourcePatch, request: Request, tenant: TenantDep, svc: ServicesDep
) -> SourceOut:
    found = await svc.webhook_sources.update(tenant, source_id, body.changes())
    return SourceOut.of(found.source, _base_url(request, svc))


@router.post(
    "/{source_id}/rotate",
    response_model=RevealedOut,
    summary="Make a new secret current; the previous one keeps verifying for overlapSeconds",
)
async def rotate_secret(
    source_id: SourceId, body: RotateIn, request: Request, tenant: TenantDep, svc: ServicesDep
) -> RevealedOut:
    overlap = None if body.overlap_seconds is None else timedelta(seconds=body.overlap_seconds)
    found = await svc.webhook_sources.rotate(tenant, source_id, secret=body.secret, overlap=overlap)
    return RevealedOut.revealed(found, _base_url(request, svc))


@router.delete("/{source_id}", status_code=204, summary="Delete a webhook source")
async def delete_source(source_id: SourceId, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.webhook_sources.delete(tenant, source_id)
    return Response(status_code=204)
