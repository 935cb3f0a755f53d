"""DELAYED and RECURRING deliveries: occurrences, their outcome, listing and cancellation.

Each occurrence is a ``scheduled_integrations`` row and a delivery job due at its
``scheduled_for`` (the job queue does the waiting: no separate scheduler poll). The
dispatcher stores occurrence 0 with the event's other jobs; this service, as a
:class:`~junctionbox.services.delivery_hooks.DeliveryListener`, learns how each occurrence
ended inside the worker's final transaction, marks it, and for a RECURRING series stores
the next occurrence (row and job) in that same transaction, so a crash can neither lose
the series nor start it twice.

Outcomes: DELIVERED -> COMPLETED; dead-lettered or integration disabled -> FAILED (a later
successful DLQ redrive of that occurrence turns it COMPLETED); integration inactive or
deleted when it was due -> CANCELLED by the system. A series goes on after a delivered or
dead-lettered occurrence and ends when the integration was disabled or skipped, when an
occurrence is cancelled, at ``maxOccurrences`` or after ``endAt``. The series keeps the
schedule it was started with (``recurringConfig``), whatever later edits of the
integration say. Only the first action's job decides an occurrence (later actions of a
multi-action integration follow from it).

Each occurrence is a distinct message: its ``webhook-id`` is ``message_id(...,
occurrence=n)``, and its job's dedupe key makes storing the same occurrence twice a no-op.

Visibility: an occurrence belongs to the event's entity; an organization sees its own and
its units', a unit only its own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DeliveryOutcome,
    FinalState,
    ScheduleStatus,
    Trigger,
    delivery_dedupe_key,
    message_id,
)
from junctionbox.domain.identity import Principal, TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.outbound import SchedulingMode
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.schedule import Recurrence, ScheduleError, next_occurrence
from junctionbox.errors import ConflictError, NotFoundError
from junctionbox.queue.jobs import JobState, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import entities
from junctionbox.store.queries import scheduled_integrations as queries
from junctionbox.store.queries.scheduled_integrations import ScheduledFilter, ScheduledRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
MAX_CANCEL_PER_REQUEST: Final = 10_000
MAX_REASON: Final = 500
SCHEDULED_ID_PREFIX: Final = "sch"
PENDING, COMPLETED = ScheduleStatus.PENDING.value, ScheduleStatus.COMPLETED.value
FAILED, CANCELLED = ScheduleStatus.FAILED.value, ScheduleStatus.CANCELLED.value


# --- building occurrences (shared with the dispatcher) ---


@dataclass(frozen=True)
class DeliverySettings:
    """What an occurrence's job needs besides its payload; kept with a RECURRING series so
    later occurrences are queued alike without reading the integration."""

    source: str  # the event's source: part of every occurrence's message id
    max_attempts: int
    ordering_key: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "maxAttempts": self.max_attempts,
            "orderingKey": self.ordering_key,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeliverySettings:
        return cls(str(data["source"]), int(data["maxAttempts"]), data.get("orderingKey"))


@dataclass(frozen=True)
class Occurrence:
    """An occurrence ready to store: its job, and its row (``job_id`` filled in on insert)."""

    row: dict[str, Any]
    job: NewJob


@dataclass(frozen=True)
class Target:
    """Integration details shown with an occurrence (a snapshot taken when it was made)."""

    name: str | None
    url: str | None
    method: str | None


def new_occurrence(
    job: DeliveryJob,
    *,
    mode: SchedulingMode,
    due: datetime,
    occurrence: int,
    settings: DeliverySettings,
    target: Target,
    recurrence: Recurrence | None,
    now: datetime,
) -> Occurrence:
    """Occurrence ``occurrence`` of ``job``'s delivery, due at ``due``."""
    scheduled_id = new_id(SCHEDULED_ID_PREFIX)
    mid = message_id(job.org_id, settings.source, job.event_id, job.integration_id, 0, occurrence)
    payload = dataclasses.replace(
        job,
        message_id=mid,
        action_index=0,
        trigger=Trigger.SCHEDULED,
        scheduled_id=scheduled_id,
        dlq_entry_id=None,
    ).to_payload()
    recurring = None
    if recurrence is not None:
        recurring = {**recurrence.to_json(), "delivery": settings.to_json()}
    row = {
        "id": scheduled_id,
        "org_id": job.org_id,
        "integration_id": job.integration_id,
        "integration_name": target.name,
        "original_event_id": job.event_id,
        "event_type": job.event_type,
        "mode": mode.value,
        "scheduled_for": due,
        "status": PENDING,
        "occurrence": occurrence,
        "job": payload,
        "job_id": None,
        "target_url": target.url,
        "http_method": target.method,
        "recurring_config": recurring,
        "cancellation_info": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }
    new_job = NewJob(
        kind=DELIVERY_JOB_KIND,
        payload=payload,
        queue=DELIVERY_QUEUE,
        org_id=job.org_id,
        run_at=due,
        max_attempts=settings.max_attempts,
        ordering_key=settings.ordering_key,
        dedupe_key=delivery_dedupe_key(mid),
    )
    return Occurrence(row, new_job)


async def attach_occurrences(
    conn: AsyncConnection, occurrences: Sequence[Occurrence], job_ids: Sequence[str]
) -> int:
    """Insert the rows of occurrences whose jobs were just enqueued (``job_ids`` in the same
    order). A job that already existed (its dedupe key was known) already has its row."""
    if not occurrences:
        return 0
    known = await queries.with_jobs(conn, job_ids)
    rows = [
        {**occurrence.row, "job_id": job_id}
        for occurrence, job_id in zip(occurrences, job_ids, strict=True)
        if job_id not in known
    ]
    await queries.insert_rows(conn, rows)
    return len(rows)


# --- the service ---


@dataclass(frozen=True)
class CancelResult:
    cancelled: int
    not_cancelled: int  # finished (or started and finished) before the cancel reached it


class ScheduleService:
    def __init__(
        self, db: Database, queue: JobQueue, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.queue = queue
        self.clock = clock

    # - the delivery listener -

    def concerns(self, job: DeliveryJob, state: FinalState) -> bool:
        """Only the first action of a scheduled occurrence."""
        return job.scheduled_id is not None and job.action_index == 0

    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None:
        """Record how an occurrence ended and queue the next of its series (same
        transaction as the worker's final attempt)."""
        if job.scheduled_id is None or job.action_index != 0:
            return
        row = await queries.get(conn, job.scheduled_id, [job.org_id])
        if row is None:
            return
        now = self.clock()
        if row.status == FAILED and outcome.state is FinalState.DELIVERED:
            # A DLQ redrive of a failed occurrence got through; the series already went on.
            await queries.transition(
                conn, row.id, row.org_id, from_statuses=[FAILED], values=_completed(now)
            )
            return
        status, values = _final_values(outcome, now)
        changed = await queries.transition(
            conn, row.id, row.org_id, from_statuses=[PENDING], values=values
        )
        if changed and _series_goes_on(row, outcome, status):
            await self._store_next(conn, row, now)

    async def _store_next(self, conn: AsyncConnection, row: ScheduledRecord, now: datetime) -> None:
        config = row.recurring_config or {}
        try:
            recurrence = Recurrence.from_json(config)
            settings = DeliverySettings.from_json(config["delivery"])
            due = next_occurrence(recurrence, row.scheduled_for, row.occurrence + 1, now)
        except (ScheduleError, KeyError, TypeError, ValueError) as exc:
            log.error("scheduled delivery %s: cannot compute the next occurrence: %s", row.id, exc)
            return
        if due is None:
            log.info("scheduled delivery %s: series complete", row.id)
            return
        occurrence = new_occurrence(
            DeliveryJob.from_payload(row.job),
            mode=SchedulingMode.RECURRING,
            due=due,
            occurrence=row.occurrence + 1,
            settings=settings,
            target=Target(row.integration_name, row.target_url, row.http_method),
            recurrence=recurrence,
            now=now,
        )
        job_ids = await self.queue.enqueue(conn, [occurrence.job])
        await attach_occurrences(conn, [occurrence], job_ids)

    # - reading -

    async def list(
        self, tenant: TenantContext, where: ScheduledFilter, page: PageRequest
    ) -> Page[ScheduledRecord]:
        async with self.db.read() as conn:
            scoped = dataclasses.replace(where, org_ids=await visible_org_ids(conn, tenant))
            items, total = await queries.list_page(conn, scoped, page)
        return Page(items, total, page)

    async def get(self, tenant: TenantContext, scheduled_id: str) -> ScheduledRecord:
        async with self.db.read() as conn:
            found = await queries.get(conn, scheduled_id, await visible_org_ids(conn, tenant))
        if found is None:
            raise NotFoundError(f"scheduled delivery {scheduled_id} not found")
        return found

    # - cancelling -

    async def cancel(
        self, tenant: TenantContext, scheduled_id: str, reason: str | None
    ) -> ScheduledRecord:
        """Cancel one PENDING occurrence and its job (which ends a RECURRING series)."""
        row = await self.get(tenant, scheduled_id)
        if row.status != PENDING:
            raise ConflictError(
                f"scheduled delivery {scheduled_id} is {row.status}; only PENDING ones can be "
                "cancelled"
            )
        result = await self._cancel_rows(tenant.principal, [row], reason)
        if not result.cancelled:
            raise ConflictError(
                f"scheduled delivery {scheduled_id} started before it could be cancelled"
            )
        return await self.get(tenant, scheduled_id)

    async def cancel_pending(
        self, tenant: TenantContext, integration_id: str, reason: str | None
    ) -> tuple[CancelResult, int]:
        """Cancel every PENDING occurrence of an integration the tenant sees (up to
        ``MAX_CANCEL_PER_REQUEST``); the result and how many are still pending."""
        async with self.db.read() as conn:
            where = ScheduledFilter(
                await visible_org_ids(conn, tenant), integration_id=integration_id
            )
            rows = await queries.pending(conn, where, MAX_CANCEL_PER_REQUEST)
        result = await self._cancel_rows(tenant.principal, rows, reason)
        async with self.db.read() as conn:
            remaining = len(await queries.pending(conn, where, MAX_CANCEL_PER_REQUEST))
        return result, remaining

    async def _cancel_rows(
        self, actor: Principal, rows: Sequence[ScheduledRecord], reason: str | None
    ) -> CancelResult:
        # The job first: once it is cancelled no worker can start it (a running one loses
        # its lease). Then the rows whose job is cancelled (or already purged); a job that
        # finished first had its row decided by the worker, in the same transaction.
        for row in rows:
            if row.job_id is not None:
                await self.queue.cancel(row.job_id, org_id=row.org_id)
        now = self.clock()
        info = {
            "reason": (reason or "cancelled by request")[:MAX_REASON],
            "cancelledBy": actor.email or actor.id,
            "cancelledAt": now.isoformat(),
        }
        cancelled = 0
        async with self.db.write() as conn:
            states = await queries.job_states(conn, [r.job_id for r in rows if r.job_id])
            for row in rows:
                state = states.get(row.job_id) if row.job_id else None
                if state not in (None, JobState.CANCELLED.value):
                    continue
                if await queries.transition(
                    conn,
                    row.id,
                    row.org_id,
                    from_statuses=[PENDING],
                    values={"status": CANCELLED, "cancellation_info": info, "updated_at": now},
                ):
                    cancelled += 1
                    await audit.record(
                        conn,
                        actor,
                        "scheduled_integration.cancel",
                        "scheduled_integration",
                        row.id,
                        org_id=row.org_id,
                        before={"status": PENDING},
                        after={"status": CANCELLED, "reason": info["reason"]},
                    )
        return CancelResult(cancelled, len(rows) - cancelled)


async def visible_org_ids(conn: AsyncConnection, tenant: TenantContext) -> list[int]:
    """The entities whose occurrences the tenant sees: itself, and an organization's units."""
    if tenant.entity.is_unit:
        return [tenant.org_id]
    return [tenant.org_id, *await entities.unit_ids(conn, tenant.org_id)]


def _completed(now: datetime) -> dict[str, Any]:
    return {"status": COMPLETED, "last_error": None, "updated_at": now}


def _final_values(outcome: DeliveryOutcome, now: datetime) -> tuple[str, dict[str, Any]]:
    if outcome.state is FinalState.DELIVERED:
        return COMPLETED, _completed(now)
    if outcome.state is FinalState.SKIPPED:
        reason = outcome.error or "the integration was inactive or deleted when it was due"
        info = {"reason": reason, "cancelledBy": "system", "cancelledAt": now.isoformat()}
        return CANCELLED, {"status": CANCELLED, "cancellation_info": info, "updated_at": now}
    error = outcome.error or outcome.state.value
    return FAILED, {"status": FAILED, "last_error": error, "updated_at": now}


def _series_goes_on(row: ScheduledRecord, outcome: DeliveryOutcome, status: str) -> bool:
    if row.mode != SchedulingMode.RECURRING.value:
        return False
    # Disabled or skipped: the integration is off, so the series ends with it.
    return status == COMPLETED or outcome.state is FinalState.DEAD_LETTERED
