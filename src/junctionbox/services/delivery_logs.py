"""Delivery logs and execution traces: list, filter, detail, export.

Rows are written by the delivery worker (one per attempt); this service reads them for the
tenant a request acts for (an organization sees its units' rows too, see ``LogScope``).
Headers, target URLs and curl commands pass through the redactor once more on the way out,
so a credential the writer failed to mask is still not shown.

Exports stream: rows are read in keyset batches of ``export_batch`` (each batch its own short
read transaction) and encoded as they come, so memory stays flat and no transaction stays
open while a slow client downloads. An export stops after ``export_max_rows`` rows; the
response says how many matched (``X-Total-Count``) and whether it was cut
(``X-Export-Truncated``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

import orjson

from junctionbox.domain.identity import TenantContext
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.redaction import redact, redact_text
from junctionbox.errors import NotFoundError
from junctionbox.services.outbound_request import curl_command
from junctionbox.store.database import Database
from junctionbox.store.queries import delivery_logs as queries
from junctionbox.store.queries.delivery_attempts import cap_text
from junctionbox.store.queries.delivery_logs import (
    LogFilter,
    LogRecord,
    LogScope,
    LogSummary,
    StatusCount,
)

EXPORT_MAX_ROWS: Final = 100_000
EXPORT_BATCH: Final = 1_000
TRACE_ATTEMPTS: Final = 100

S = TypeVar("S", bound=LogSummary)

# Cells that spreadsheets would read as a formula (or that hide one after a quote) get a
# leading apostrophe: OWASP's advice against CSV injection.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r", "\n")

# (header, attribute) of every export; ``full`` exports add the payload columns.
SUMMARY_COLUMNS: Final = (
    ("id", "id"),
    ("createdAt", "created_at"),
    ("status", "status"),
    ("orgId", "org_id"),
    ("integrationId", "integration_id"),
    ("integrationName", "integration_name"),
    ("direction", "direction"),
    ("eventId", "event_id"),
    ("eventType", "event_type"),
    ("deliveryId", "delivery_id"),
    ("traceId", "trace_id"),
    ("correlationId", "correlation_id"),
    ("triggerType", "trigger_type"),
    ("actionName", "action_name"),
    ("actionIndex", "action_index"),
    ("targetUrl", "target_url"),
    ("httpMethod", "http_method"),
    ("responseStatus", "response_status"),
    ("responseTimeMs", "response_time_ms"),
    ("attemptCount", "attempt_count"),
    ("errorCategory", "error_category"),
    ("errorMessage", "error_message"),
    ("shouldRetry", "should_retry"),
    ("deliveredAt", "delivered_at"),
    ("jobId", "job_id"),
)
PAYLOAD_COLUMNS: Final = (
    ("requestHeaders", "request_headers"),
    ("requestBody", "request_body"),
    ("responseHeaders", "response_headers"),
    ("responseBody", "response_body"),
    ("originalPayload", "original_payload"),
    ("signature", "signature"),
)


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@dataclass(frozen=True)
class ExecutionTrace:
    """One attempt's step-by-step trace and the other attempts of the same delivery."""

    record: LogRecord
    attempts: list[LogSummary]

    @property
    def curl(self) -> str | None:
        for step in self.record.steps or ():
            if isinstance(step, Mapping) and step.get("step") == "request":
                detail = step.get("detail")
                if isinstance(detail, Mapping) and isinstance(detail.get("curl"), str):
                    return str(detail["curl"])
        return None


@dataclass(frozen=True)
class LogStats:
    total: int
    by_status: dict[str, int]
    success_rate: float | None
    avg_response_time_ms: float | None


@dataclass(frozen=True)
class LogExport:
    """An export ready to stream: ``chunks`` yields the encoded body."""

    total: int
    rows: int
    truncated: bool
    media_type: str
    filename: str
    chunks: AsyncIterator[bytes]


def scope_of(tenant: TenantContext) -> LogScope:
    return LogScope(tenant.org_id, with_units=not tenant.entity.is_unit)


class DeliveryLogService:
    def __init__(
        self,
        db: Database,
        *,
        export_max_rows: int = EXPORT_MAX_ROWS,
        export_batch: int = EXPORT_BATCH,
    ) -> None:
        self.db = db
        self.export_max_rows = export_max_rows
        self.export_batch = export_batch

    async def list(
        self, tenant: TenantContext, where: LogFilter, page: PageRequest
    ) -> Page[LogSummary]:
        """Attempts matching ``where``, newest first (also the execution-log list: filter
        with ``trace_statuses``)."""
        async with self.db.read() as conn:
            items, total = await queries.list_page(conn, scope_of(tenant), where, page)
        return Page([presented(i) for i in items], total, page)

    async def get(self, tenant: TenantContext, log_id: str) -> LogRecord:
        async with self.db.read() as conn:
            record = await queries.get(conn, scope_of(tenant), log_id)
        if record is None:
            raise NotFoundError("delivery log not found")
        return presented(record)

    async def trace(self, tenant: TenantContext, trace_id: str) -> ExecutionTrace:
        """The attempt with ``trace_id`` (or, failing that, with this log id) and its
        delivery's attempts, oldest first."""
        scope = scope_of(tenant)
        async with self.db.read() as conn:
            record = await queries.by_trace(conn, scope, trace_id)
            if record is None:
                record = await queries.get(conn, scope, trace_id)
            if record is None:
                raise NotFoundError("execution trace not found")
            attempts: list[LogSummary] = [record]
            if record.delivery_id:
                attempts = await queries.attempts_of(
                    conn, scope, record.delivery_id, TRACE_ATTEMPTS
                )
        return ExecutionTrace(presented(record), [presented(a) for a in attempts])

    async def stats(self, tenant: TenantContext, where: LogFilter) -> LogStats:
        async with self.db.read() as conn:
            counts = await queries.status_counts(conn, scope_of(tenant), where)
        return summarize(counts)

    async def export(
        self, tenant: TenantContext, where: LogFilter, fmt: ExportFormat, *, full: bool = False
    ) -> LogExport:
        scope = scope_of(tenant)
        async with self.db.read() as conn:
            total = await queries.count(conn, scope, where)
        rows = min(total, self.export_max_rows)
        columns = SUMMARY_COLUMNS + (PAYLOAD_COLUMNS if full else ())
        records = self._records(scope, where, rows, full=full)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if fmt is ExportFormat.CSV:
            chunks, media = csv_chunks(columns, records), "text/csv; charset=utf-8"
        else:
            chunks, media = json_chunks(columns, records), "application/json"
        return LogExport(
            total=total,
            rows=rows,
            truncated=total > rows,
            media_type=media,
            filename=f"delivery-logs-{tenant.org_id}-{stamp}.{fmt.value}",
            chunks=chunks,
        )

    async def _records(
        self, scope: LogScope, where: LogFilter, limit: int, *, full: bool
    ) -> AsyncIterator[LogSummary]:
        after: tuple[datetime, str] | None = None
        sent = 0
        while sent < limit:
            size = min(self.export_batch, limit - sent)
            async with self.db.read() as conn:
                batch = await queries.batch_after(conn, scope, where, after, size, full=full)
            for record in batch:
                yield presented(record)
            sent += len(batch)
            if len(batch) < size:
                return
            after = (batch[-1].created_at, batch[-1].id)


# --- presentation ---


def presented(record: S) -> S:
    """``record`` with secrets masked once more (same type as given)."""
    changes: dict[str, Any] = {}
    if record.target_url:
        changes["target_url"] = redact_text(record.target_url)
    if isinstance(record, LogRecord):
        changes["request_headers"] = redact(record.request_headers)
        changes["response_headers"] = redact(record.response_headers)
        changes["steps"] = _mask_steps(with_curl(record))
    return replace(record, **changes) if changes else record


def with_curl(record: LogRecord) -> Any:
    """The record's trace steps with the logged request's curl command back in its request
    step: an attempt leaves it out when the row's own columns give it back exactly (see
    ``engine.delivery_attempt``), and it is rebuilt here from them."""
    steps = record.steps
    if not isinstance(steps, list) or record.http_method is None or not record.target_url:
        return steps
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if not (isinstance(step, Mapping) and step.get("step") == "request"):
            continue
        detail = step.get("detail")
        if not isinstance(detail, Mapping) or "curl" in detail:
            return steps
        headers = record.request_headers if isinstance(record.request_headers, Mapping) else {}
        curl = curl_command(
            record.http_method, record.target_url, headers.items(), record.request_body or ""
        )
        rebuilt = {**step, "detail": {**detail, "curl": cap_text(curl)}}
        return [*steps[:index], rebuilt, *steps[index + 1 :]]
    return steps


def _mask_steps(value: Any, key: str = "") -> Any:
    if key.lower().endswith("headers") and isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _mask_steps(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_steps(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def summarize(counts: Iterable[StatusCount]) -> LogStats:
    counts = list(counts)
    total = sum(c.count for c in counts)
    by_status = {c.status: c.count for c in counts}
    timed = [(c.avg_response_time_ms, c.count) for c in counts if c.avg_response_time_ms]
    weight = sum(n for _, n in timed)
    average = sum(a * n for a, n in timed) / weight if weight else None
    rate = by_status.get("SUCCESS", 0) / total if total else None
    return LogStats(total, by_status, rate, average)


# --- export encodings ---


def csv_cell(value: Any) -> str:
    """One CSV cell: JSON for structures, ISO 8601 for times, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime):
        return _iso(value)
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return "'" + text if text.startswith(_FORMULA_START) else text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def csv_chunks(
    columns: tuple[tuple[str, str], ...], records: AsyncIterator[Any], rows_per_chunk: int = 200
) -> AsyncIterator[bytes]:
    """A header row, then one row per record, flushed every ``rows_per_chunk`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([header for header, _ in columns])
    pending = 0
    async for record in records:
        writer.writerow([csv_cell(getattr(record, name)) for _, name in columns])
        pending += 1
        if pending >= rows_per_chunk:
            yield _drain(buffer)
            pending = 0
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


async def json_chunks(
    columns: tuple[tuple[str, str], ...], records: AsyncIterator[Any]
) -> AsyncIterator[bytes]:
    """A JSON array of objects with the columns' (camelCase) names, one per line."""
    separator = b"[\n"
    async for record in records:
        item = {header: getattr(record, name) for header, name in columns}
        yield separator + orjson.dumps(item, option=orjson.OPT_UTC_Z)
        separator = b",\n"
    yield b"[]\n" if separator == b"[\n" else b"\n]\n"
