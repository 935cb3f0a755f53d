"""/api/v1/logs (delivery logs) and /api/v1/execution-logs (step-by-step traces).

Every delivery attempt is one log row. Lists are newest first and take the same filters:
``status`` (repeatable or comma-separated), ``eventType``, ``integrationId``, ``triggerType``,
``direction``, ``deliveryId``, a date range on the creation time (``from``/``to``, or seed
003's ``startDate``/``endDate``; a bare date ``to`` includes that whole day) and ``search``
(substring of event id, integration name, error message, correlation, delivery or trace id).
Any tenant principal may read its logs; an organization's view includes its units'.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field, field_validator

from junctionbox.api.deps import PageDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, page_body, paged
from junctionbox.domain.delivery import AttemptStatus, Trigger
from junctionbox.errors import FieldProblem, ValidationError
from junctionbox.services.delivery_logs import ExecutionTrace, ExportFormat, LogStats
from junctionbox.store.queries.delivery_logs import LogFilter, LogRecord, LogSummary

router = APIRouter(tags=["logs"])

TRACE_STATUSES = ("SUCCESS", "FAILED", "PENDING", "SKIPPED")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Step states as the API promises them, whatever spelling the writer used.
_STEP_STATES = {"OK": "OK", "ERROR": "FAILED", "FAILED": "FAILED", "SKIPPED": "SKIPPED"}

LogId = Annotated[str, Path(alias="logId", min_length=1, max_length=40)]
TraceId = Annotated[str, Path(alias="traceId", min_length=1, max_length=64)]


# --- filters ---


def _statuses(values: list[str] | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    found = tuple(
        dict.fromkeys(p.strip().upper() for v in values or () for p in v.split(",") if p.strip())
    )
    wrong = [s for s in found if s not in allowed]
    if wrong:
        message = f"unknown status {', '.join(wrong)}: use {', '.join(allowed)}"
        raise ValidationError(message, problems=[FieldProblem(("query", "status"), message)])
    return found


def _moment(text: str | None, name: str, *, end: bool) -> datetime | None:
    """An ISO date or date-time (UTC when it names no offset); a bare end date is inclusive."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if _DATE_ONLY.match(text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        message = "not an ISO 8601 date or date-time"
        raise ValidationError(
            f"{name}: {message}", problems=[FieldProblem(("query", name), message)]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _one_of(first: str | None, second: str | None) -> str | None:
    return first if first is not None else second


StatusQuery = Annotated[
    list[str] | None,
    Query(description="Repeatable or comma-separated; any of them matches."),
]
DateQuery = Annotated[str | None, Query(max_length=40)]


def _common(
    event_type: Annotated[str | None, Query(alias="eventType", max_length=200)] = None,
    integration_id: Annotated[str | None, Query(alias="integrationId", max_length=40)] = None,
    trigger_type: Annotated[Trigger | None, Query(alias="triggerType")] = None,
    direction: Annotated[Literal["OUTBOUND", "INBOUND"] | None, Query()] = None,
    delivery_id: Annotated[
        str | None, Query(alias="deliveryId", max_length=40, description="The webhook-id.")
    ] = None,
    since: Annotated[
        str | None, Query(alias="from", max_length=40, description="Created at or after.")
    ] = None,
    until: Annotated[
        str | None,
        Query(alias="to", max_length=40, description="Created before (a date: through it)."),
    ] = None,
    start_date: Annotated[str | None, Query(alias="startDate", max_length=40)] = None,
    end_date: Annotated[str | None, Query(alias="endDate", max_length=40)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> LogFilter:
    return LogFilter(
        event_type=event_type or None,
        integration_id=integration_id or None,
        trigger_type=trigger_type.value if trigger_type else None,
        direction=direction,
        delivery_id=delivery_id or None,
        since=_moment(_one_of(since, start_date), "from", end=False),
        until=_moment(_one_of(until, end_date), "to", end=True),
        search=search.strip() if search and search.strip() else None,
    )


CommonFilter = Annotated[LogFilter, Depends(_common)]


def log_filter(common: CommonFilter, status: StatusQuery = None) -> LogFilter:
    """Filters of ``/logs``: ``status`` is the attempt's (SUCCESS, FAILED, RETRYING, ABANDONED)."""
    allowed = tuple(s.value for s in AttemptStatus)
    return replace(common, statuses=_statuses(status, allowed))


def trace_filter(common: CommonFilter, status: StatusQuery = None) -> LogFilter:
    """Filters of ``/execution-logs``: ``status`` is the trace's (SUCCESS, FAILED, PENDING,
    SKIPPED)."""
    return replace(common, trace_statuses=_statuses(status, TRACE_STATUSES))


LogFilterDep = Annotated[LogFilter, Depends(log_filter)]
TraceFilterDep = Annotated[LogFilter, Depends(trace_filter)]


# --- responses ---


class LogOut(ApiModel):
    id: str
    org_id: int
    integration_id: str | None
    integration_name: str | None
    direction: str
    delivery_id: str | None = Field(description="The webhook-id, the same on every attempt.")
    message_id: str | None = Field(description="Seed 003's name of deliveryId (same value).")
    job_id: str | None
    event_id: str | None
    event_type: str | None
    status: str = Field(description="SUCCESS, FAILED, RETRYING or ABANDONED.")
    target_url: str | None
    http_method: str | None
    response_status: int | None
    response_time_ms: int | None
    attempt_count: int
    error_message: str | None
    error_category: str | None
    correlation_id: str | None
    trace_id: str | None
    trigger_type: str
    action_name: str | None
    action_index: int | None
    should_retry: bool
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, record: LogSummary) -> Any:
        return cls.model_validate({**vars(record), "message_id": record.delivery_id})


class StepOut(ApiModel):
    """One step of the execution trace, as the delivery worker recorded it."""

    model_config = ConfigDict(extra="allow")

    step: str | None = Field(
        None, description="match, transform, auth, request, response, decision"
    )
    status: str | None = Field(None, description="OK, FAILED or SKIPPED.")
    at: str | None = None
    duration_ms: float | None = None
    detail: dict[str, Any] | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _state(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).upper()
        return _STEP_STATES.get(text, text)


def _steps(raw: Any) -> list[StepOut]:
    return [StepOut.model_validate(s) for s in raw or () if isinstance(s, dict)]


class LogDetailOut(LogOut):
    request_headers: dict[str, Any] | None
    request_body: str | None = Field(description="The bytes sent (capped at 64 KB).")
    response_headers: dict[str, Any] | None
    response_body: str | None = Field(description="The bytes received (capped at 64 KB).")
    original_payload: str | None = Field(description="The event data before the transform.")
    signature: str | None
    steps: list[StepOut]

    @classmethod
    def of(cls, record: LogSummary) -> Any:
        assert isinstance(record, LogRecord)
        values = {**vars(record), "message_id": record.delivery_id, "steps": _steps(record.steps)}
        return cls.model_validate(values)


class ExecutionOut(ApiModel):
    """Seed 003's ``execution_logs`` entry: one per attempt, projected from its log row."""

    trace_id: str | None
    log_id: str
    org_id: int
    integration_id: str | None
    integration_name: str | None
    event_id: str | None
    event_type: str | None
    delivery_id: str | None
    status: str = Field(description="SUCCESS, FAILED, PENDING (will retry) or SKIPPED.")
    delivery_status: str = Field(description="The log row's status.")
    error_category: str | None
    error_message: str | None
    response_status: int | None
    response_time_ms: int | None
    target_url: str | None
    http_method: str | None
    attempt_count: int
    trigger_type: str
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, record: LogSummary) -> Any:
        values = {
            **vars(record),
            "log_id": record.id,
            "status": record.trace_status,
            "delivery_status": record.status,
        }
        return cls.model_validate(values)


class ExecutionTraceOut(ExecutionOut):
    request_payload: str | None = Field(description="The body sent.")
    request_headers: dict[str, Any] | None
    response_body: str | None
    response_headers: dict[str, Any] | None
    original_payload: str | None
    steps: list[StepOut]
    curl: str | None = Field(description="The request as a curl command, secrets masked.")
    attempts: list[ExecutionOut] = Field(description="All attempts of this delivery, oldest first.")

    @classmethod
    def of_trace(cls, trace: ExecutionTrace) -> ExecutionTraceOut:
        record = trace.record
        values = {
            **vars(record),
            "log_id": record.id,
            "status": record.trace_status,
            "delivery_status": record.status,
            "request_payload": record.request_body,
            "steps": _steps(record.steps),
            "curl": trace.curl,
            "attempts": [ExecutionOut.of(a) for a in trace.attempts],
        }
        return cls.model_validate(values)


class LogStatsOut(ApiModel):
    total: int
    by_status: dict[str, int]
    success_rate: float | None = Field(description="SUCCESS attempts / all attempts.")
    avg_response_time_ms: float | None

    @classmethod
    def of(cls, stats: LogStats) -> LogStatsOut:
        return cls.model_validate(stats)


LogPage = paged("logs", LogOut)
ExecutionPage = paged("executionLogs", ExecutionOut)

_EXPORT_DESCRIPTION = (
    "CSV (header row; cells starting with = + - @ are prefixed with a quote) or a JSON "
    "array, streamed, newest first, at most 100,000 rows. X-Total-Count: matching rows; "
    "X-Export-Truncated: true when the cap cut the export."
)


# --- delivery logs ---


@router.get("/api/v1/logs", response_model=LogPage, summary="List delivery attempts")
async def list_logs(tenant: TenantDep, svc: ServicesDep, page: PageDep, where: LogFilterDep) -> Any:
    found = await svc.delivery_logs.list(tenant, where, page)
    return page_body("logs", found, LogOut.of)


@router.get(
    "/api/v1/logs/export",
    summary="Export delivery attempts (CSV or JSON, same filters as the list)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": _EXPORT_DESCRIPTION,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def export_logs(
    tenant: TenantDep,
    svc: ServicesDep,
    where: LogFilterDep,
    fmt: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.CSV,
    include_payloads: Annotated[
        bool, Query(alias="includePayloads", description="Add headers and bodies.")
    ] = False,
) -> StreamingResponse:
    export = await svc.delivery_logs.export(tenant, where, fmt, full=include_payloads)
    headers = {
        "content-disposition": f'attachment; filename="{export.filename}"',
        "x-total-count": str(export.total),
        "x-export-truncated": "true" if export.truncated else "false",
        "cache-control": "no-store",
    }
    return StreamingResponse(export.chunks, media_type=export.media_type, headers=headers)


@router.get(
    "/api/v1/logs/stats",
    response_model=LogStatsOut,
    summary="Attempts by status, success rate and mean response time (same filters)",
)
async def log_stats(tenant: TenantDep, svc: ServicesDep, where: LogFilterDep) -> LogStatsOut:
    return LogStatsOut.of(await svc.delivery_logs.stats(tenant, where))


@router.get(
    "/api/v1/logs/{logId}",
    response_model=LogDetailOut,
    summary="One attempt with its request and response headers and bodies and its trace",
)
async def get_log(log_id: LogId, tenant: TenantDep, svc: ServicesDep) -> Any:
    return LogDetailOut.of(await svc.delivery_logs.get(tenant, log_id))


# --- execution logs ---


@router.get(
    "/api/v1/execution-logs",
    response_model=ExecutionPage,
    summary="List execution traces (one per attempt)",
)
async def list_executions(
    tenant: TenantDep, svc: ServicesDep, page: PageDep, where: TraceFilterDep
) -> Any:
    found = await svc.delivery_logs.list(tenant, where, page)
    return page_body("executionLogs", found, ExecutionOut.of)


@router.get(
    "/api/v1/execution-logs/{traceId}",
    response_model=ExecutionTraceOut,
    summary="The step-by-step trace of an attempt (by trace id or log id), with a curl command",
)
async def get_execution(trace_id: TraceId, tenant: TenantDep, svc: ServicesDep) -> Any:
    return ExecutionTraceOut.of_trace(await svc.delivery_logs.trace(tenant, trace_id))
