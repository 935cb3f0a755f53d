"""``/api/v1/dlq``: the dead-letter queue of outbound deliveries (seed 003).

Tenant-scoped: an organization sees its own entries and its units', a unit its own. Any
caller of the tenant may list, inspect, retry and delete entries; retries and deletions are
audited. A retry is asynchronous (202): the entry turns RETRYING and a delivery job is
enqueued with the same ``webhook-id``; the entry disappears when that delivery succeeds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, as_utc, page_body, paged
from junctionbox.domain.delivery import DlqStatus
from junctionbox.domain.redaction import redact
from junctionbox.services.dlq import MAX_BULK, BulkResult, DlqDetail, DlqFilter, DlqRecord, Redrive

router = APIRouter(prefix="/api/v1/dlq", tags=["dlq"])

EntryId = Annotated[
    str, Path(alias="id", min_length=1, max_length=40, description="DLQ entry id (dlq_…).")
]
EntryIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=40)]],
    Field(min_length=1, max_length=MAX_BULK, description=f"Up to {MAX_BULK} entry ids."),
]


# --- bodies ---


class BulkIn(RequestModel):
    ids: EntryIds


# --- responses ---


class DlqEntryOut(ApiModel):
    id: str
    org_id: int
    integration_id: str
    integration_name: str | None
    direction: str
    delivery_id: str = Field(description="The webhook-id every attempt of this delivery carries.")
    event_id: str | None
    event_type: str | None
    status: DlqStatus
    target_url: str | None
    http_method: str | None
    last_error: str | None
    error_category: str | None
    delivery_attempts: int = Field(description="Attempts of the delivery before it got here.")
    attempt_count: int = Field(description="Retries from the DLQ so far.")
    max_retries: int
    next_retry_at: datetime | None
    trace_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, entry: DlqRecord) -> DlqEntryOut:
        return cls.model_validate(entry)


DlqPage = paged("entries", DlqEntryOut)


class AttemptOut(ApiModel):
    """One attempt of the delivery, as ``delivery_logs`` keeps it."""

    id: str
    job_id: str | None
    status: str
    trigger_type: str
    attempt_count: int
    action_index: int | None
    action_name: str | None
    target_url: str | None
    http_method: str | None
    response_status: int | None
    response_time_ms: int | None
    error_message: str | None
    error_category: str | None
    request_headers: Any = None
    request_body: str | None
    response_headers: Any = None
    response_body: str | None
    signature: str | None
    correlation_id: str | None
    trace_id: str | None
    steps: Any = None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> AttemptOut:
        values = {name: row[name] for name in cls.model_fields}
        values["request_headers"] = redact(values["request_headers"])  # a second net
        return cls.model_validate(values)


class DlqEntryDetailOut(DlqEntryOut):
    original_payload: str | None
    job: dict[str, Any] = Field(description="The delivery job a retry sends again.")
    trace: list[AttemptOut] = Field(description="The delivery's attempts, newest first.")

    @classmethod
    def of_detail(cls, detail: DlqDetail) -> DlqEntryDetailOut:
        base = DlqEntryOut.of(detail.entry).model_dump()
        return cls.model_validate(
            {
                **base,
                "original_payload": detail.entry.original_payload,
                "job": detail.entry.job,
                "trace": [AttemptOut.of(row) for row in detail.trace],
            }
        )


class DlqStatsOut(ApiModel):
    total: int
    by_status: dict[DlqStatus, int]


class RetryOut(ApiModel):
    id: str
    job_id: str
    status: DlqStatus = DlqStatus.RETRYING
    attempt: int = Field(description="The number of this retry (1 = the first).")
    trigger: str

    @classmethod
    def of(cls, redrive: Redrive) -> RetryOut:
        return cls(
            id=redrive.entry_id,
            job_id=redrive.job_id,
            attempt=redrive.attempt,
            trigger=redrive.trigger.value,
        )


class BulkItemOut(ApiModel):
    id: str
    status: str = Field(description="RETRYING or DELETED; NOT_FOUND or CONFLICT with an error.")
    job_id: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, result: BulkResult) -> BulkItemOut:
        return cls.model_validate(result)


class BulkRetryOut(ApiModel):
    retried: int
    failed: int
    results: list[BulkItemOut]


class BulkDeleteOut(ApiModel):
    deleted: int
    failed: int
    results: list[BulkItemOut]


def _counted(results: list[BulkResult], success: str) -> tuple[int, int, list[BulkItemOut]]:
    done = sum(1 for r in results if r.status == success)
    return done, len(results) - done, [BulkItemOut.of(r) for r in results]


# --- routes (fixed paths before /{id}) ---


@router.get("", response_model=DlqPage, summary="List dead-letter entries, newest first")
async def list_entries(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    status: DlqStatus | None = None,
    integration_id: Annotated[str | None, Query(alias="integrationId", max_length=40)] = None,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=200)] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    search: Annotated[
        str | None,
        Query(max_length=200, description="In event id, delivery id, integration, error, URL."),
    ] = None,
) -> Any:
    where = DlqFilter(
        status=status,
        integration_id=integration_id,
        event_type=event_type,
        since=as_utc(since),
        until=as_utc(until),
        search=search,
    )
    found = await svc.dlq.list(tenant, page, where)
    return page_body("entries", found, DlqEntryOut.of)


@router.get("/stats", response_model=DlqStatsOut, summary="Count entries by status")
async def stats(tenant: TenantDep, svc: ServicesDep) -> DlqStatsOut:
    counts = await svc.dlq.stats(tenant)
    return DlqStatsOut(total=sum(counts.values()), by_status=counts)


@router.post(
    "/retry", response_model=BulkRetryOut, summary=f"Retry up to {MAX_BULK} entries (per id)"
)
async def retry_many(body: BulkIn, tenant: TenantDep, svc: ServicesDep) -> BulkRetryOut:
    results = await svc.dlq.retry_many(tenant, body.ids)
    retried, failed, items = _counted(results, "RETRYING")
    return BulkRetryOut(retried=retried, failed=failed, results=items)


@router.post(
    "/delete", response_model=BulkDeleteOut, summary=f"Delete up to {MAX_BULK} entries (per id)"
)
async def delete_many(body: BulkIn, tenant: TenantDep, svc: ServicesDep) -> BulkDeleteOut:
    results = await svc.dlq.delete_many(tenant, body.ids)
    deleted, failed, items = _counted(results, "DELETED")
    return BulkDeleteOut(deleted=deleted, failed=failed, results=items)


@router.get(
    "/{id}", response_model=DlqEntryDetailOut, summary="An entry with its delivery's attempts"
)
async def get_entry(entry_id: EntryId, tenant: TenantDep, svc: ServicesDep) -> DlqEntryDetailOut:
    return DlqEntryDetailOut.of_detail(await svc.dlq.get(tenant, entry_id))


@router.post(
    "/{id}/retry",
    response_model=RetryOut,
    status_code=202,
    summary="Retry an entry now (same webhook-id; 409 while a retry is in progress)",
)
async def retry_entry(entry_id: EntryId, tenant: TenantDep, svc: ServicesDep) -> RetryOut:
    return RetryOut.of(await svc.dlq.retry(tenant, entry_id))


@router.delete(
    "/{id}", status_code=204, summary="Delete an entry (409 while a retry is in progress)"
)
async def delete_entry(entry_id: EntryId, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.dlq.delete(tenant, entry_id)
    return Response(status_code=204)
