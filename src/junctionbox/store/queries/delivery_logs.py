"""Reading delivery logs (one row per attempt) and their execution traces.

The delivery worker inserts the rows; this module only reads them: filtered pages, one row,
the attempts of one delivery, keyset batches for exports and per-status counts.

A tenant's view (:class:`LogScope`) is the entity it acts for and, when that entity is an
organization, its units too: an organization's integrations deliver its units' events, and
whoever may act for the organization may act for its units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.database import Database
from junctionbox.store.queries.common import fetch_page, purge, record_of
from junctionbox.store.tables import delivery_logs, entities
from junctionbox.store.types import UTCDateTime

_log = delivery_logs.c

# The execution-log status of an attempt (seed 003 ``execution_logs.status``), computed in
# SQL so that lists can filter on it: the circuit breaker refused the send (no request went
# out) -> SKIPPED; another attempt is scheduled -> PENDING; failed or abandoned -> FAILED.
TRACE_STATUS: ColumnElement[str] = case(
    (_log.status == "SUCCESS", literal("SUCCESS")),
    (_log.error_category == "CIRCUIT_OPEN", literal("SKIPPED")),
    (_log.status == "RETRYING", literal("PENDING")),
    else_=literal("FAILED"),
).label("trace_status")

# Columns searched by ``search`` (case-insensitive substring).
_SEARCHED = (
    _log.event_id,
    _log.integration_name,
    _log.error_message,
    _log.correlation_id,
    _log.delivery_id,
    _log.trace_id,
    _log.id,
)


@dataclass(frozen=True)
class LogScope:
    """Whose rows: the entity ``org_id`` and, with ``with_units``, its units."""

    org_id: int
    with_units: bool = False

    def condition(self) -> ColumnElement[bool]:
        if not self.with_units:
            return _log.org_id == self.org_id
        family = select(entities.c.id).where(
            or_(entities.c.id == self.org_id, entities.c.parent_id == self.org_id)
        )
        return _log.org_id.in_(family.scalar_subquery())


@dataclass(frozen=True)
class LogFilter:
    """The list filters; every field narrows, None/empty means any. ``until`` is exclusive."""

    statuses: Sequence[str] = ()
    trace_statuses: Sequence[str] = ()
    event_type: str | None = None
    integration_id: str | None = None
    trigger_type: str | None = None
    direction: str | None = None
    delivery_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    def conditions(self, scope: LogScope) -> list[ColumnElement[bool]]:
        optional: list[ColumnElement[bool] | None] = [
            _log.status.in_(list(self.statuses)) if self.statuses else None,
            TRACE_STATUS.in_(list(self.trace_statuses)) if self.trace_statuses else None,
            _log.event_type == self.event_type if self.event_type else None,
            _log.integration_id == self.integration_id if self.integration_id else None,
            _log.trigger_type == self.trigger_type if self.trigger_type else None,
            _log.direction == self.direction if self.direction else None,
            _log.delivery_id == self.delivery_id if self.delivery_id else None,
            _log.created_at >= self.since if self.since else None,
            _log.created_at < self.until if self.until else None,
            _search(self.search) if self.search else None,
        ]
        return [scope.condition(), *(c for c in optional if c is not None)]


def _search(term: str) -> ColumnElement[bool]:
    # icontains escapes % and _ (autoescape) and is ILIKE on PostgreSQL, lower() LIKE on SQLite.
    return or_(*(column.icontains(term, autoescape=True) for column in _SEARCHED))


@dataclass(frozen=True)
class LogSummary:
    """A row as lists show it (no headers, bodies or steps)."""

    id: str
    org_id: int
    integration_id: str | None
    integration_name: str | None
    direction: str
    delivery_id: str | None
    job_id: str | None
    event_id: str | None
    event_type: str | None
    status: str
    trace_status: str
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


@dataclass(frozen=True)
class LogRecord(LogSummary):
    """A whole row: the summary plus what was sent and received and the trace steps."""

    original_payload: str | None = None
    request_headers: Any = None
    request_body: str | None = None
    response_headers: Any = None
    response_body: str | None = None
    signature: str | None = None
    steps: Any = field(default=None)


_DETAIL_ONLY = {
    "original_payload",
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "signature",
    "steps",
}
_SUMMARY_COLUMNS = [c for c in delivery_logs.c if c.name not in _DETAIL_ONLY]
_NEWEST_FIRST = (_log.created_at.desc(), _log.id.desc())


def _select(*, full: bool) -> Select[Any]:
    columns = list(delivery_logs.c) if full else _SUMMARY_COLUMNS
    return select(*columns, TRACE_STATUS)


def _record(row: Any, *, full: bool) -> LogSummary:
    return record_of(LogRecord, row) if full else record_of(LogSummary, row)


async def list_page(
    conn: AsyncConnection, scope: LogScope, where: LogFilter, page: PageRequest
) -> tuple[list[LogSummary], int]:
    query = _select(full=False).where(*where.conditions(scope))
    rows, total = await fetch_page(conn, query, page, *_NEWEST_FIRST)
    return [_record(r, full=False) for r in rows], total


async def count(conn: AsyncConnection, scope: LogScope, where: LogFilter) -> int:
    query = select(func.count()).select_from(delivery_logs).where(*where.conditions(scope))
    return int((await conn.execute(query)).scalar_one())


async def get(conn: AsyncConnection, scope: LogScope, log_id: str) -> LogRecord | None:
    query = _select(full=True).where(scope.condition(), _log.id == log_id)
    row = (await conn.execute(query)).mappings().first()
    return record_of(LogRecord, row) if row else None


async def by_trace(conn: AsyncConnection, scope: LogScope, trace_id: str) -> LogRecord | None:
    """The newest attempt carrying ``trace_id`` (the writer gives each attempt its own)."""
    query = _select(full=True).where(scope.condition(), _log.trace_id == trace_id)
    row = (await conn.execute(query.order_by(*_NEWEST_FIRST).limit(1))).mappings().first()
    return record_of(LogRecord, row) if row else None


async def attempts_of(
    conn: AsyncConnection, scope: LogScope, delivery_id: str, limit: int
) -> list[LogSummary]:
    """The attempts of one delivery (same ``delivery_id``), oldest first, at most ``limit``."""
    newest = (
        _select(full=False)
        .where(scope.condition(), _log.delivery_id == delivery_id)
        .order_by(*_NEWEST_FIRST)
        .limit(limit)
    )
    rows = list((await conn.execute(newest)).mappings())
    return [_record(r, full=False) for r in reversed(rows)]


async def batch_after(
    conn: AsyncConnection,
    scope: LogScope,
    where: LogFilter,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    full: bool,
) -> list[LogSummary]:
    """Up to ``limit`` rows, newest first, strictly after the keyset position ``after``
    (the last row's ``(created_at, id)`` of the previous batch). Each batch is a short
    read, so an export never holds a transaction open while the client downloads."""
    query = _select(full=full).where(*where.conditions(scope))
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(_log.created_at < created, and_(_log.created_at == created, _log.id < last_id))
        )
    rows = await conn.execute(query.order_by(*_NEWEST_FIRST).limit(limit))
    return [_record(r, full=full) for r in rows.mappings()]


@dataclass(frozen=True)
class StatusCount:
    status: str
    count: int
    avg_response_time_ms: float | None


async def status_counts(
    conn: AsyncConnection, scope: LogScope, where: LogFilter
) -> list[StatusCount]:
    query = (
        select(_log.status, func.count(), func.avg(_log.response_time_ms))
        .where(*where.conditions(scope))
        .group_by(_log.status)
        .order_by(_log.status)
    )
    return [
        StatusCount(str(status), int(n), None if avg is None else float(avg))
        for status, n, avg in (await conn.execute(query)).all()
    ]


# --- retention ---


async def purge_before(db: Database, cutoff: datetime) -> int:
    """Delete the rows written before ``cutoff``, tenant by tenant, in short transactions;
    how many were deleted. Each tenant's old rows are found on its ``(org_id, created_at)``
    index (a search across tenants by time alone would read the whole table)."""
    async with db.read() as conn:
        found = await conn.execute(_OWNERS_WITH_ROWS_BEFORE, {"cutoff": cutoff})
        owners = list(found.scalars())
    total = 0
    for org_id in owners:
        old = and_(delivery_logs.c.org_id == org_id, delivery_logs.c.created_at < cutoff)
        total += await purge(db, delivery_logs, old)
    return total


_OWNERS_WITH_ROWS_BEFORE = select(entities.c.id).where(
    select(delivery_logs.c.id)
    .where(
        delivery_logs.c.org_id == entities.c.id,
        delivery_logs.c.created_at < bindparam("cutoff", type_=UTCDateTime()),
    )
    .exists()
)
