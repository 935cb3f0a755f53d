"""The schema registry: ``/api/v1/integration/events/schema`` and ``.../events/types`` (seed
000), and seed 003's ``/api/v1/field-schemas``, the field lists the console and SIMPLE
mappings use. Any authenticated caller of the tenant may read and change its event types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, field_validator

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, page_body, paged
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.schema_compat import CompatibilityMode, Incompatibility
from junctionbox.domain.schema_fields import SchemaField
from junctionbox.errors import FieldProblem, ValidationError
from junctionbox.services.schema_registry import EventTypeView, FieldList
from junctionbox.store.queries.event_types import EventTypeRecord

router = APIRouter(prefix="/api/v1", tags=["event types"])

EventTypeName = Annotated[str, Path(min_length=1, max_length=200, description="Event type name.")]
SchemaDocument = dict[str, Any] | bool


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class SchemaIn(RequestModel):
    event_type: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/]+$")
    schema_: SchemaDocument = Field(alias="schema", description="A draft 2020-12 JSON Schema.")
    compatibility: CompatibilityMode | None = Field(
        None, description="Sets the type's mode (BACKWARD for a new type when omitted)."
    )
    description: str | None = Field(None, max_length=5000)
    example: Any = Field(None, description="An example event data; must match the schema.")

    _mode = field_validator("compatibility", mode="before")(_upper)


class TypePatch(RequestModel):
    description: str | None = Field(None, max_length=5000)
    example: Any = None
    compatibility: CompatibilityMode | None = None

    _mode = field_validator("compatibility", mode="before")(_upper)


class CompatibilityIn(RequestModel):
    schema_: SchemaDocument = Field(alias="schema")


class EventTypeOut(ApiModel):
    id: str
    event_type: str
    org_id: int
    inherited: bool = Field(description="True when the type belongs to the unit's organization.")
    description: str | None
    example: Any = None
    compatibility: CompatibilityMode
    latest_version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(cls, record: EventTypeRecord, tenant: TenantContext, **extra: Any) -> Any:
        return cls.model_validate(
            {
                **vars(record),
                "event_type": record.name,
                "inherited": record.org_id != tenant.org_id,
                **extra,
            }
        )


class VersionSummaryOut(ApiModel):
    version: int
    fingerprint: str
    created_by: str | None
    created_at: datetime


class RegisteredOut(EventTypeOut):
    version: int
    fingerprint: str
    schema_: SchemaDocument = Field(alias="schema")


class EventTypeDetailOut(RegisteredOut):
    versions: list[VersionSummaryOut]


class VersionOut(ApiModel):
    event_type: str
    version: int
    latest_version: int
    fingerprint: str
    schema_: SchemaDocument = Field(alias="schema")
    created_by: str | None
    created_at: datetime


class ReasonOut(ApiModel):
    path: str = Field(description="JSON pointer into the schemas.")
    reason: str
    direction: Literal["backward", "forward"] | None
    version: int | None = Field(description="The previous version compared with.")
    message: str


class CompatibilityOut(ApiModel):
    compatible: bool
    compatibility: CompatibilityMode
    latest_version: int
    reasons: list[ReasonOut]


class FieldOut(ApiModel):
    path: str = Field(description="Dot path as SIMPLE mappings write it, e.g. lines[].sku.")
    type: str
    required: bool
    nullable: bool
    title: str | None
    description: str | None
    format: str | None
    enum: list[Any] | None


class FieldSchemaOut(ApiModel):
    event_type: str
    version: int
    fields: list[FieldOut]


EventTypePage = paged("eventTypes", EventTypeOut)


def _registered(view: EventTypeView) -> dict[str, Any]:
    return {
        "version": view.schema.version,
        "fingerprint": view.schema.fingerprint,
        "schema": view.schema.schema,
    }


def _field(field: SchemaField) -> FieldOut:
    values = vars(field)
    enum = None if field.enum is None else list(field.enum)
    return FieldOut.model_validate({**values, "enum": enum})


def _field_schema(found: FieldList) -> FieldSchemaOut:
    return FieldSchemaOut(
        event_type=found.event_type,
        version=found.version,
        fields=[_field(f) for f in found.fields],
    )


def _version_number(version: str) -> int | Literal["latest"]:
    if version == "latest":
        return "latest"
    if version.isdigit() and 0 < int(version) < 2**31:
        return int(version)
    message = "version is a positive integer or 'latest'"
    raise ValidationError(message, problems=[FieldProblem(("path", "version"), message)])


# --- registration -------------------------------------------------------------------------


@router.put(
    "/integration/events/schema",
    response_model=RegisteredOut,
    status_code=201,
    responses={
        200: {"model": RegisteredOut, "description": "The schema equals the latest version."},
        409: {"description": "The schema is incompatible with previous versions."},
    },
    summary="Register a schema version for an event type",
)
async def register_schema(
    body: SchemaIn, tenant: TenantDep, svc: ServicesDep, response: Response
) -> Any:
    view, created = await svc.schemas.register(
        tenant,
        body.event_type,
        body.schema_,
        compatibility=body.compatibility,
        description=body.description,
        example=body.example,
    )
    if not created:
        response.status_code = 200
    return RegisteredOut.build(view.type, tenant, **_registered(view))


# --- event types --------------------------------------------------------------------------


@router.get("/integration/events/types", response_model=EventTypePage, summary="List event types")
async def list_types(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    found = await svc.schemas.list_types(tenant, page, search=search)
    return page_body("eventTypes", found, lambda r: EventTypeOut.build(r, tenant))


@router.get(
    "/integration/events/types/{event_type}",
    response_model=EventTypeDetailOut,
    summary="An event type with its latest schema and its versions",
)
async def get_type(event_type: EventTypeName, tenant: TenantDep, svc: ServicesDep) -> Any:
    view = await svc.schemas.get_type(tenant, event_type)
    versions = [VersionSummaryOut.model_validate(v) for v in view.versions or []]
    return EventTypeDetailOut.build(view.type, tenant, versions=versions, **_registered(view))


@router.get(
    "/integration/events/types/{event_type}/versions/{version}",
    response_model=VersionOut,
    summary="One schema version (a number or 'latest')",
)
async def get_version(
    event_type: EventTypeName,
    version: Annotated[str, Path(max_length=12, description="A version number or 'latest'.")],
    tenant: TenantDep,
    svc: ServicesDep,
) -> Any:
    view = await svc.schemas.get_version(tenant, event_type, _version_number(version))
    return VersionOut.model_validate(
        {
            **vars(view.schema),
            "event_type": view.type.name,
            "latest_version": view.type.latest_version,
        }
    )


@router.patch(
    "/integration/events/types/{event_type}",
    response_model=EventTypeOut,
    summary="Change an event type's description, example or compatibility mode",
)
async def update_type(
    event_type: EventTypeName, body: TypePatch, tenant: TenantDep, svc: ServicesDep
) -> Any:
    given = body.model_fields_set
    if "compatibility" in given and body.compatibility is None:
        message = "compatibility cannot be null"
        raise ValidationError(message, problems=[FieldProblem(("body", "compatibility"), message)])
    changes: dict[str, Any] = {k: getattr(body, k) for k in given & {"description", "example"}}
    view = await svc.schemas.update_type(
        tenant, event_type, compatibility=body.compatibility, **changes
    )
    return EventTypeOut.build(view.type, tenant)


@router.delete(
    "/integration/events/types/{event_type}",
    status_code=204,
    summary="Delete an event type and all its versions",
)
async def delete_type(event_type: EventTypeName, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.schemas.delete_type(tenant, event_type)
    return Response(status_code=204)


@router.post(
    "/integration/events/types/{event_type}/compatibility",
    response_model=CompatibilityOut,
    summary="Whether a schema could be registered as the next version",
)
async def check_compatibility(
    event_type: EventTypeName, body: CompatibilityIn, tenant: TenantDep, svc: ServicesDep
) -> CompatibilityOut:
    record, found = await svc.schemas.check(tenant, event_type, body.schema_)
    return CompatibilityOut(
        compatible=not found,
        compatibility=CompatibilityMode(record.compatibility),
        latest_version=record.latest_version,
        reasons=[_reason(i) for i in found],
    )


def _reason(found: Incompatibility) -> ReasonOut:
    return ReasonOut(
        path=found.path,
        reason=found.reason,
        direction=found.direction,
        version=found.version,
        message=found.describe(),
    )


# --- field schemas (seed 003) -------------------------------------------------------------


@router.get(
    "/field-schemas",
    response_model=list[FieldSchemaOut],
    summary="The fields of every event type's latest schema (or of one)",
)
async def field_schemas(
    tenant: TenantDep,
    svc: ServicesDep,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=200)] = None,
) -> list[FieldSchemaOut]:
    found = await svc.schemas.field_lists(tenant, event_type)
    return [_field_schema(f) for f in found]


@router.get(
    "/field-schemas/{event_type}",
    response_model=FieldSchemaOut,
    summary="The fields of an event type's latest schema",
)
async def field_schema(
    event_type: EventTypeName, tenant: TenantDep, svc: ServicesDep
) -> FieldSchemaOut:
    return _field_schema(await svc.schemas.fields(tenant, event_type))
