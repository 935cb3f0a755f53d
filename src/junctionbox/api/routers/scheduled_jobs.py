"""``/api/v1/scheduled-jobs``: time-driven jobs that fetch, transform and deliver (seed 003
SCHEDULED), their runs and a data source test.

Any caller of the tenant may manage jobs with an API data source; SQL data sources need the
ADMIN role (they read databases directly). Another tenant's jobs answer 404. Credentials
(``outgoingAuthConfig`` secrets, ``dataSource.connectionString``) are write-only: masked in
every response, and a masked value sent back keeps the stored one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import Field

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, paged
from junctionbox.domain.paging import Page
from junctionbox.services.scheduled_jobs import StoredJob
from junctionbox.store.queries.scheduled_jobs import RunRecord

router = APIRouter(prefix="/api/v1/scheduled-jobs", tags=["scheduled jobs"])

JobId = Annotated[str, Path(alias="id", min_length=1, max_length=40, description="sjb_…")]
RunId = Annotated[str, Path(alias="logId", min_length=1, max_length=40, description="sjr_…")]
JobBody = Annotated[
    dict[str, Any],
    Body(
        description=(
            "name, type, description, isActive, targetUrl, httpMethod, schedule "
            "{type CRON|INTERVAL, expression, timezone, intervalMs, catchUp ONCE|ALL|SKIP}, "
            "dataSource {type SQL, query, connectionString} | {type API, url, method, "
            "headers, body}, transformation {mode SCRIPT|JSONATA, script}, "
            "outgoingAuthType, outgoingAuthConfig, retryPolicy, timeoutMs"
        )
    ),
]
RunStatus = Literal["QUEUED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]


class JobOut(ApiModel):
    """A scheduled job as stored, credentials masked."""

    id: str
    org_id: int
    name: str
    type: str | None
    description: str | None
    is_active: bool
    target_url: str
    http_method: str
    schedule: dict[str, Any] = Field(
        description="type, expression, intervalMs, timezone (as configured), catchUp, "
        "effectiveTimezone (the zone ticks are computed in)."
    )
    data_source: dict[str, Any] = Field(description="connectionString masked.")
    transformation: dict[str, Any] | None
    outgoing_auth_type: str
    outgoing_auth_config: dict[str, Any] = Field(description="Credentials masked.")
    retry_policy: dict[str, Any]
    timeout_ms: int
    next_run_at: datetime | None = Field(description="The next tick (UTC); null when paused.")
    last_run_at: datetime | None
    last_status: str | None
    version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


JobPage = paged("scheduledJobs", JobOut)


class RunOut(ApiModel):
    """One run (seed 003's ``scheduled_job_logs``)."""

    id: str
    integration_id: str = Field(description="The scheduled job's id (seed 003's name).")
    job_id: str
    tenant_id: int
    trigger: str = Field(description="SCHEDULE or MANUAL.")
    scheduled_for: datetime
    status: str
    stage: str | None = Field(description="The stage reached (or running).")
    attempt: int
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    data_fetch_stage: str | None
    records_fetched: int | None
    data_fetched: Any = Field(description="Fetched data, capped at 50 KB.")
    data_truncated: bool
    transformation_stage: str | None
    transformed_payload: Any
    delivery_stage: str | None
    http_request: dict[str, Any] | None
    curl_command: str | None
    response_status: int | None
    response_headers: dict[str, Any] | None
    response_body: str | None
    delivery_attempts: int
    error_context: dict[str, Any] | None
    created_at: datetime
    trace_id: str | None = Field(
        None, description="The run's trace id (the traceparent sent with its delivery)."
    )

    @classmethod
    def of(cls, run: RunRecord) -> RunOut:
        fields = {name: getattr(run, name) for name in cls.model_fields if hasattr(run, name)}
        return cls(**fields, integration_id=run.job_id, tenant_id=run.org_id)


RunPage = paged("logs", RunOut)


class TestSourceIn(RequestModel):
    data_source: dict[str, Any] = Field(description="As in a job's dataSource.")
    timezone: str | None = Field(None, description="Zone of {{date.*}}; default the org's.")


class TestSourceOut(ApiModel):
    success: bool
    records_fetched: int
    sample: Any = Field(description="At most 10 records.")
    duration_ms: int


def _page(name: str, page: Page[Any], convert: Any) -> dict[str, Any]:
    return {
        name: [convert(item) for item in page.items],
        "total": page.total,
        "page": page.request.page,
        "limit": page.request.limit,
        "hasMore": page.has_more,
    }


def _view(job: StoredJob) -> JobOut:
    return JobOut.model_validate(job.view())


@router.post("", status_code=201, response_model=JobOut, summary="Create a scheduled job")
async def create_job(body: JobBody, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.create(tenant, body))


@router.get("", response_model=JobPage, summary="List the tenant's scheduled jobs")
async def list_jobs(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
) -> dict[str, Any]:
    found = await svc.scheduled_jobs.list(tenant, is_active, page)
    return _page("scheduledJobs", found, _view)


@router.post(
    "/test-datasource",
    response_model=TestSourceOut,
    summary="Run a data source and return at most 10 records (nothing is delivered)",
)
async def test_datasource(body: TestSourceIn, tenant: TenantDep, svc: ServicesDep) -> TestSourceOut:
    result = await svc.scheduled_jobs.test_source(tenant, body.data_source, body.timezone)
    return TestSourceOut(
        success=True,
        records_fetched=result.records,
        sample=result.sample,
        duration_ms=result.duration_ms,
    )


@router.get("/{id}", response_model=JobOut, summary="Get a scheduled job")
async def get_job(job_id: JobId, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.get(tenant, job_id))


@router.put("/{id}", response_model=JobOut, summary="Replace a scheduled job")
async def replace_job(job_id: JobId, body: JobBody, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.update(tenant, job_id, body, partial=False))


@router.patch("/{id}", response_model=JobOut, summary="Change some fields of a scheduled job")
async def patch_job(job_id: JobId, body: JobBody, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.update(tenant, job_id, body, partial=True))


@router.delete("/{id}", status_code=204, summary="Delete a scheduled job and its runs")
async def delete_job(job_id: JobId, tenant: TenantDep, svc: ServicesDep) -> Response:
    await svc.scheduled_jobs.delete(tenant, job_id)
    return Response(status_code=204)


@router.post("/{id}/pause", response_model=JobOut, summary="Stop scheduling runs")
async def pause_job(job_id: JobId, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.set_active(tenant, job_id, False))


@router.post(
    "/{id}/resume", response_model=JobOut, summary="Schedule runs again from the next tick"
)
async def resume_job(job_id: JobId, tenant: TenantDep, svc: ServicesDep) -> JobOut:
    return _view(await svc.scheduled_jobs.set_active(tenant, job_id, True))


@router.post(
    "/{id}/execute",
    status_code=202,
    response_model=RunOut,
    summary="Run now (queued at once; follow it in the logs)",
)
async def execute_job(job_id: JobId, tenant: TenantDep, svc: ServicesDep) -> RunOut:
    return RunOut.of(await svc.scheduled_jobs.execute_now(tenant, job_id))


@router.get("/{id}/logs", response_model=RunPage, summary="Runs of a scheduled job, newest first")
async def list_runs(
    job_id: JobId,
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    status: Annotated[RunStatus | None, Query()] = None,
) -> dict[str, Any]:
    found = await svc.scheduled_jobs.runs(tenant, job_id, status, page)
    return _page("logs", found, RunOut.of)


@router.get("/{id}/logs/{logId}", response_model=RunOut, summary="One run")
async def get_run(job_id: JobId, run_id: RunId, tenant: TenantDep, svc: ServicesDep) -> RunOut:
    return RunOut.of(await svc.scheduled_jobs.run(tenant, job_id, run_id))
