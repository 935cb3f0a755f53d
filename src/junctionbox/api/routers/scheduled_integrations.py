"""``/api/v1/scheduled-integrations``: DELAYED and RECURRING deliveries (seed 003).

One entry per occurrence. List them by status, integration, event type and due date; read
one; cancel one (its job is cancelled, and a RECURRING series ends with it) or every pending
occurrence of an integration. An organization sees its own and its units' occurrences.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, as_utc, page_body, paged
from junctionbox.domain.delivery import ScheduleStatus
from junctionbox.services.schedules import MAX_REASON
from junctionbox.store.queries.scheduled_integrations import ScheduledFilter, ScheduledRecord

router = APIRouter(prefix="/api/v1/scheduled-integrations", tags=["scheduled-integrations"])

ScheduledId = Annotated[
    str, Path(alias="id", min_length=1, max_length=40, description="Occurrence id (sch_…).")
]


class ScheduledOut(ApiModel):
    id: str
    org_id: int
    integration_id: str
    integration_name: str | None
    original_event_id: str | None
    event_type: str | None
    scheduling_mode: str
    scheduled_for: datetime
    status: str
    occurrence: int = Field(description="0 for the first occurrence of a series.")
    message_id: str | None = Field(description="The webhook-id this occurrence is sent with.")
    job_id: str | None
    target_url: str | None
    http_method: str | None
    payload: dict[str, Any] = Field(description="The delivery job this occurrence runs.")
    recurring_config: dict[str, Any] | None
    cancellation_info: dict[str, Any] | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ScheduledRecord) -> ScheduledOut:
        return cls(
            id=record.id,
            org_id=record.org_id,
            integration_id=record.integration_id,
            integration_name=record.integration_name,
            original_event_id=record.original_event_id,
            event_type=record.event_type,
            scheduling_mode=record.mode,
            scheduled_for=record.scheduled_for,
            status=record.status,
            occurrence=record.occurrence,
            message_id=record.job.get("messageId"),
            job_id=record.job_id,
            target_url=record.target_url,
            http_method=record.http_method,
            payload=record.job,
            recurring_config=record.recurring_config,
            cancellation_info=record.cancellation_info,
            last_error=record.last_error,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


ScheduledPage = paged("scheduledIntegrations", ScheduledOut)


class CancelIn(RequestModel):
    reason: str | None = Field(None, max_length=MAX_REASON)


class CancelPendingIn(RequestModel):
    integration_id: str = Field(min_length=1, max_length=40)
    reason: str | None = Field(None, max_length=MAX_REASON)


class CancelPendingOut(ApiModel):
    cancelled: int
    not_cancelled: int = Field(description="Occurrences that started before the cancel.")
    remaining: int = Field(description="Pending occurrences left (beyond one request's cap).")


@router.get("", response_model=ScheduledPage, summary="List scheduled deliveries")
async def list_scheduled(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    status: Annotated[ScheduleStatus | None, Query()] = None,
    integration_id: Annotated[str | None, Query(alias="integrationId", max_length=40)] = None,
    event_type: Annotated[str | None, Query(alias="eventType", max_length=200)] = None,
    start_date: Annotated[
        datetime | None, Query(alias="startDate", description="Due at or after.")
    ] = None,
    end_date: Annotated[
        datetime | None, Query(alias="endDate", description="Due at or before.")
    ] = None,
) -> dict[str, Any]:
    where = ScheduledFilter(
        org_ids=(),
        status=status.value if status else None,
        integration_id=integration_id,
        event_type=event_type,
        since=as_utc(start_date),
        until=as_utc(end_date),
    )
    found = await svc.schedules.list(tenant, where, page)
    return page_body("scheduledIntegrations", found, ScheduledOut.of)


@router.post(
    "/cancel-pending",
    response_model=CancelPendingOut,
    summary="Cancel every pending occurrence of an integration",
)
async def cancel_pending(
    body: CancelPendingIn, tenant: TenantDep, svc: ServicesDep
) -> CancelPendingOut:
    result, remaining = await svc.schedules.cancel_pending(tenant, body.integration_id, body.reason)
    return CancelPendingOut(
        cancelled=result.cancelled, not_cancelled=result.not_cancelled, remaining=remaining
    )


@router.get("/{id}", response_model=ScheduledOut, summary="One scheduled delivery")
async def get_scheduled(
    scheduled_id: ScheduledId, tenant: TenantDep, svc: ServicesDep
) -> ScheduledOut:
    return ScheduledOut.of(await svc.schedules.get(tenant, scheduled_id))


@router.post(
    "/{id}/cancel",
    response_model=ScheduledOut,
    summary="Cancel a pending scheduled delivery (and the rest of its series)",
)
async def cancel_scheduled(
    scheduled_id: ScheduledId,
    tenant: TenantDep,
    svc: ServicesDep,
    body: CancelIn | None = None,
) -> ScheduledOut:
    reason = body.reason if body is not None else None
    return ScheduledOut.of(await svc.schedules.cancel(tenant, scheduled_id, reason))
