"""``/api/v1/integration/events/sources``: SQL table event sources (seed 003's poller).

A source's connection string reaches a database in the platform's network, so creating,
changing, testing, deleting and repositioning sources needs the ADMIN role (acting for the
tenant named by ``orgId``); the tenant's users and keys may list and read them (connection
string masked) and poll them now. The connection string is write-only: responses show it
with the password masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import Field

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, page_body, paged
from junctionbox.domain.identity import TenantContext
from junctionbox.errors import FieldProblem, ForbiddenError, ValidationError
from junctionbox.services.event_sources import EventSource, PollReport, PreviewRow, TestResult

router = APIRouter(prefix="/api/v1/integration/events/sources", tags=["event sources"])

SourceId = Annotated[str, Path(min_length=1, max_length=40, description="Source id (src_…).")]


async def admin_tenant(tenant: TenantDep) -> TenantContext:
    if not tenant.principal.is_admin:
        raise ForbiddenError("configuring an event source needs the ADMIN role")
    return tenant


AdminTenantDep = Annotated[TenantContext, Depends(admin_tenant)]


# --- bodies ---


class ConfigFields(RequestModel):
    """What to read and how; omitted fields keep their default (or, in a PATCH, their value)."""

    table: str | None = Field(None, description="[schema.]table; default notification_queue.")
    id_column: str | None = Field(None, description="Ordered id, the checkpoint; default id.")
    type_column: str | None = Field(None, description="Event type; default event_type.")
    payload_column: str | None = Field(None, description="JSON data; default payload.")
    tenant_column: str | None = Field(None, description="Entity (org or unit) id; entity_rid.")
    timestamp_column: str | None = Field(None, description="Event time; created_at, or null.")
    payload_id_path: str | None = Field(None, description="Dot path of the dedupe id; id.")
    subject_column: str | None = Field(None, description="CloudEvents subject (optional).")
    partition_key_column: str | None = Field(None, description="Partition key (optional).")
    stream: str | None = Field(None, description="Stream to append to; default.")
    poll_interval_seconds: int | None = Field(None, description="1-86400; default 5.")
    batch_size: int | None = Field(None, description="Rows per read, 1-1000; default 100.")
    max_event_age_days: int | None = Field(None, description="Skip rows older than this.")
    allowed_parent_rids: list[int] | None = Field(
        None, description="Only rows of these organizations (or their units)."
    )
    start_from: Literal["beginning", "latest"] | None = Field(
        None, description="Where a new source starts: beginning (default) or latest."
    )

    def config(self) -> dict[str, Any]:
        names = set(ConfigFields.model_fields) & self.model_fields_set
        return self.model_dump(by_alias=True, include=names)


class SourceIn(ConfigFields):
    name: str = Field(min_length=1, max_length=200)
    connection_string: str = Field(
        min_length=1,
        max_length=2000,
        description="SQLAlchemy URL: sqlite:///path, postgresql://…, mysql://… or mariadb://…",
    )
    is_active: bool = True


class SourcePatch(ConfigFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    connection_string: str | None = Field(None, min_length=1, max_length=2000)
    is_active: bool | None = None

    def changes(self) -> dict[str, Any]:
        changes = self.config()
        for name, alias in (
            ("name", "name"),
            ("connection_string", "connectionString"),
            ("is_active", "isActive"),
        ):
            value = getattr(self, name)
            if name in self.model_fields_set and value is not None:
                changes[alias] = value
            elif name in self.model_fields_set:
                message = "must not be null"
                raise ValidationError(
                    f"{alias}: {message}", problems=[FieldProblem(("body", alias), message)]
                )
        return changes


class TestIn(ConfigFields):
    connection_string: str = Field(min_length=1, max_length=2000)


class CheckpointIn(RequestModel):
    checkpoint: str | int | None = Field(
        None, description="Rows with a greater id are read next; null: from the beginning."
    )
    latest: bool = Field(False, description="Skip to the table's highest id now.")


# --- responses ---


class SourceOut(ApiModel):
    id: str
    org_id: int
    name: str
    kind: str
    is_active: bool
    connection_string: str = Field(description="Masked: the password is never returned.")
    table: str
    id_column: str
    type_column: str
    payload_column: str
    tenant_column: str
    timestamp_column: str | None
    payload_id_path: str
    subject_column: str | None
    partition_key_column: str | None
    stream: str
    poll_interval_seconds: int
    batch_size: int
    max_event_age_days: int | None
    allowed_parent_rids: list[int] | None
    start_from: str
    checkpoint: str | None
    events_ingested: int
    last_polled_at: datetime | None
    last_error: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EventSource) -> SourceOut:
        values = {name: getattr(view, name) for name in vars(view) if name != "config"}
        return cls.model_validate(
            {**values, **view.config.to_json(), "connection_string": view.connection}
        )


SourcePage = paged("sources", SourceOut)


class PollOut(ApiModel):
    source_id: str
    status: str = Field(
        description="ok; error; fenced (lease lost or checkpoint reset meanwhile); scheduled "
        "(another node holds the lease and polls it within a second)."
    )
    polled_at: datetime
    rows_read: int
    appended: int
    duplicates: int = Field(description="Rows whose event was already in the log.")
    deduplicated: int = Field(description="Rows dropped by the 5-minute dedupe window.")
    skipped: dict[str, int] = Field(description="Rows filtered out, by reason.")
    checkpoint_before: str | None
    checkpoint_after: str | None
    error: str | None
    more: bool = Field(description="The batch was full: more rows are waiting.")

    @classmethod
    def of(cls, report: PollReport) -> PollOut:
        return cls.model_validate(report)


class PreviewOut(ApiModel):
    row_id: str | None
    outcome: str = Field(description="ingest, or why the row would be skipped.")
    detail: str | None
    event_id: str | None
    type: str | None
    org_id: int | None
    time: datetime | None
    subject: str | None
    partition_key: str | None
    data: Any = None

    @classmethod
    def of(cls, row: PreviewRow) -> PreviewOut:
        return cls.model_validate(row)


class TestOut(ApiModel):
    connection_string: str
    table: str
    after_checkpoint: str | None
    rows: list[PreviewOut]

    @classmethod
    def of(cls, result: TestResult) -> TestOut:
        return cls(
            connection_string=result.connection,
            table=result.table,
            after_checkpoint=result.after_checkpoint,
            rows=[PreviewOut.of(r) for r in result.rows],
        )


# --- routes ---


@router.post("", response_model=SourceOut, status_code=201, summary="Create a SQL table source")
async def create_source(body: SourceIn, tenant: AdminTenantDep, svc: ServicesDep) -> SourceOut:
    view = await svc.sources.create(
        tenant,
        name=body.name,
        connection_string=body.connection_string,
        config=body.config(),
        is_active=body.is_active,
    )
    return SourceOut.of(view)


@router.get("", response_model=SourcePage, summary="List the tenant's event sources")
async def list_sources(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> Any:
    found = await svc.sources.list(tenant, page, is_active=is_active)
    return page_body("sources", found, SourceOut.of)


@router.post(
    "/test",
    response_model=TestOut,
    summary="Try an unsaved configuration: connect and map up to 10 rows (nothing is logged)",
)
async def test_config(body: TestIn, tenant: AdminTenantDep, svc: ServicesDep) -> TestOut:
    result = await svc.sources.test(
        tenant, connection_string=body.connection_string, config=body.config()
    )
    return TestOut.of(result)


@router.get("/{source_id}", response_model=SourceOut, summary="Get a source and its progress")
async def get_source(source_id: SourceId, tenant: TenantDep, svc: ServicesDep) -> SourceOut:
    return SourceOut.of(await svc.sources.get(tenant, source_id))


@router.patch("/{source_id}", response_model=SourceOut, summary="Change a source")
async def update_source(
    source_id: SourceId, body: SourcePatch, tenant: AdminTenantDep, svc: ServicesDep
) -> SourceOut:
    return SourceOut.of(await svc.sources.update(tenant, source_id, body.changes()))


@router.delete("/{source_id}", status_code=204, summary="Delete a source")
async def delete_source(source_id: SourceId, tenant: AdminTenantDep, svc: ServicesDep) -> Response:
    await svc.sources.delete(tenant, source_id)
    return Response(status_code=204)


@router.post(
    "/{source_id}/test",
    response_model=TestOut,
    summary="Connect and map up to 10 rows after the checkpoint (nothing is logged)",
)
async def test_source(source_id: SourceId, tenant: AdminTenantDep, svc: ServicesDep) -> TestOut:
    return TestOut.of(await svc.sources.test(tenant, source_id))


@router.post(
    "/{source_id}/checkpoint",
    response_model=SourceOut,
    summary="Move the checkpoint (null: read from the beginning; latest: skip to now)",
)
async def reset_checkpoint(
    source_id: SourceId, body: CheckpointIn, tenant: AdminTenantDep, svc: ServicesDep
) -> SourceOut:
    if body.latest and body.checkpoint is not None:
        message = "give a checkpoint or latest=true, not both"
        raise ValidationError(message, problems=[FieldProblem(("body", "latest"), message)])
    view = await svc.sources.reset_checkpoint(
        tenant, source_id, body.checkpoint, latest=body.latest
    )
    return SourceOut.of(view)


@router.post(
    "/{source_id}/poll",
    response_model=PollOut,
    summary="Poll now (status scheduled: the node holding the lease polls within a second)",
)
async def poll_source(source_id: SourceId, tenant: TenantDep, svc: ServicesDep) -> PollOut:
    return PollOut.of(await svc.sources.poll_now(tenant, source_id))
