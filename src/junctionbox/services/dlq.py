"""The dead-letter queue: entries of failed deliveries, automatic and manual retries.

Life of an entry (seed 003 ``dlq``)::

    delivery fails for good ──► PENDING_RETRY ──(worker or API)──► RETRYING ──► deleted (delivered)
                                     ▲                                 │
                                     └──── failed, retries left ───────┤
                                                                       └──► ABANDONED (3 failed)

* **Creation.** The delivery worker tells every listener, inside the transaction that records
  the final attempt, how a job ended (:meth:`DlqService.on_final`). A job that was
  dead-lettered (or dead-lettered and its integration disabled: 410 Gone, auto-disable)
  becomes an entry due after ``backoff(0)``. One entry per (tenant, integration, webhook-id):
  a later failure of the same delivery (a replay) refreshes the entry instead of adding one.
* **Redrive.** A retry enqueues a fresh delivery job of the same delivery: same
  ``message_id`` (so the same ``webhook-id``; the worker signs with a fresh timestamp),
  ``dlq_entry_id`` set, trigger ``DLQ_RETRY`` (worker) or ``MANUAL`` (API), one attempt (the
  DLQ's own count governs) and dedupe key ``dlq:{entry}:{n}``, ``n`` the redrive's number, so
  a double click or two nodes cannot enqueue the same redrive twice. The entry moves to
  RETRYING in the same transaction as the enqueue, with a conditional write.
* **Outcome.** Delivered: the entry is deleted (its attempts stay in ``delivery_logs``).
  Failed: ``attempt_count`` + 1 and PENDING_RETRY after ``backoff(attempt_count)``, or
  ABANDONED once ``attempt_count`` reaches ``max_retries`` (an alert is raised unless the
  retry was manual, and the attempt's log row becomes ABANDONED). Skipped because the
  integration was deleted: ABANDONED; because it was disabled: PENDING_RETRY, uncounted.
* **Disabled integrations.** Entries of an inactive integration stay PENDING_RETRY but the
  worker passes them over, so a disabled endpoint is not hammered; re-enabling the
  integration lets the next cycle pick them up (a manual retry is refused while disabled).
* **Lost redrives.** A redrive job that ends without telling the DLQ (its worker died on the
  job's only attempt, so the queue dead-lettered it on lease expiry; or an operator
  cancelled it) would leave the entry RETRYING for ever. :meth:`reconcile_stuck` counts such
  a redrive as failed once the entry has been RETRYING for ``stuck_after`` and its job is
  neither ready nor running.

Tenancy: an entry belongs to the event's tenant (``job.org_id``). An organization sees its
own entries and its units'; a unit sees its own.
"""

from __future__ import annotations

import builtins
import logging
import random as _random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DeliveryOutcome,
    DlqStatus,
    FinalState,
    Trigger,
)
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.retry import RetryPolicy
from junctionbox.errors import ConflictError, NotFoundError
from junctionbox.queue.jobs import JobState, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import dlq as queries
from junctionbox.store.queries.alerts import raise_alert
from junctionbox.store.queries.dlq import DlqFilter, DlqRecord
from junctionbox.store.queries.entities import unit_ids
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES: Final = 3  # seed 003
BATCH_SIZE: Final = 50  # seed 003: retries per cycle
MAX_BULK: Final = 100  # seed 003: bulk retry of up to 100 entries
# Seed 003's DLQ strategy: min(1 s * 2^attempt, 5 s) plus up to 20 % jitter.
DLQ_POLICY: Final = RetryPolicy(
    max_retries=DEFAULT_MAX_RETRIES, base_delay=1.0, max_delay=5.0, multiplier=2.0
)
DEFAULT_STUCK_AFTER: Final = timedelta(minutes=15)
ALERT_KIND: Final = "DLQ_ABANDONED"
DIRECTION: Final = "OUTBOUND"
INTEGRATION_DELETED: Final = "the integration was deleted"
_FAILED = (FinalState.DEAD_LETTERED, FinalState.DISABLED)
_LIVE_JOB = {JobState.READY.value, JobState.RUNNING.value}
# Entries no retry is running for: a manual retry or a deletion may take them.
_AT_REST = (DlqStatus.PENDING_RETRY, DlqStatus.ABANDONED)

BulkStatus = Literal["RETRYING", "DELETED", "NOT_FOUND", "CONFLICT"]


@dataclass(frozen=True)
class Redrive:
    """A retry that was enqueued: ``attempt`` is the redrive's number (1 = the first)."""

    entry_id: str
    job_id: str
    attempt: int
    trigger: Trigger


@dataclass(frozen=True)
class BulkResult:
    id: str
    status: BulkStatus
    job_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class DlqDetail:
    entry: DlqRecord
    trace: list[RowMapping]


def redrive_key(entry_id: str, attempt: int) -> str:
    """The dedupe key of an entry's ``attempt``-th redrive."""
    return f"dlq:{entry_id}:{attempt}"


def redrive_job(entry: DlqRecord, trigger: Trigger) -> NewJob:
    """The delivery job that retries ``entry``: the same delivery (same message id), one
    attempt, no schedule (the DLQ, not the schedule, owns this run)."""
    original = DeliveryJob.from_payload(entry.job)
    job = replace(original, trigger=trigger, dlq_entry_id=entry.id, scheduled_id=None)
    return NewJob(
        kind=DELIVERY_JOB_KIND,
        queue=DELIVERY_QUEUE,
        payload=job.to_payload(),
        org_id=job.org_id,
        max_attempts=1,
        dedupe_key=redrive_key(entry.id, entry.attempt_count + 1),
    )


def retry_time(
    policy: RetryPolicy, now: datetime, retries_made: int, random_value: float
) -> datetime:
    """When an entry that has been retried ``retries_made`` times is due again."""
    return now + timedelta(seconds=policy.next_delay(retries_made, random_value))


@dataclass(frozen=True)
class _Failure:
    """Why a redrive failed; ``logged``: its attempt is in ``delivery_logs``; ``latest``:
    the attempt's view of the integration (renamed, new URL ...), kept where known."""

    error: str
    category: str | None = None
    logged: bool = False
    latest: Mapping[str, Any] = field(default_factory=dict)

    def values(self, now: datetime) -> dict[str, Any]:
        known = {key: value for key, value in self.latest.items() if value is not None}
        return {
            **known,
            "last_error": self.error,
            "error_category": self.category,
            "updated_at": now,
        }


async def _alert(conn: AsyncConnection, entry: DlqRecord, now: datetime) -> None:
    """Seed 003: an abandoned delivery is reported to the tenant's administrators."""
    target = entry.integration_name or entry.integration_id
    message = (
        f"Delivery {entry.delivery_id} to {target} abandoned after "
        f"{entry.attempt_count} retries: {entry.last_error}"
    )
    await raise_alert(
        conn,
        org_id=entry.org_id,
        kind=ALERT_KIND,
        severity="ERROR",
        subject_id=entry.id,
        message=message[:2000],
        details={
            "integrationId": entry.integration_id,
            "deliveryId": entry.delivery_id,
            "eventId": entry.event_id,
            "eventType": entry.event_type,
        },
        now=now,
    )


def _summary(entry: DlqRecord) -> dict[str, Any]:
    """What the audit trail keeps of an entry (not its payload)."""
    keys = ("id", "status", "integration_id", "delivery_id", "event_id", "attempt_count")
    return {key: getattr(entry, key) for key in keys}


class DlqService:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        policy: RetryPolicy | None = None,
        stuck_after: timedelta = DEFAULT_STUCK_AFTER,
        clock: Callable[[], datetime] = utcnow,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.db = db
        self.queue = queue
        self.max_retries = max_retries
        self.policy = policy or DLQ_POLICY
        self.stuck_after = stuck_after
        self.clock = clock
        self.random = random

    def next_retry_at(self, now: datetime, retries_made: int) -> datetime:
        return retry_time(self.policy, now, retries_made, self.random())

    # ------------------------------------------------------------------ listener

    def concerns(self, job: DeliveryJob, state: FinalState) -> bool:
        """A failure makes an entry; any end of a redrive settles its entry."""
        return job.dlq_entry_id is not None or state in _FAILED

    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None:
        """A delivery job ended for good (called in the worker's transaction)."""
        now = self.clock()
        if job.dlq_entry_id is None:
            if outcome.state in _FAILED:
                await self._dead_letter(conn, job, outcome, now)
            return
        await self._redrive_ended(conn, job, outcome, now)

    async def _dead_letter(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome, now: datetime
    ) -> None:
        job = replace(job, dlq_entry_id=None)
        existing = await queries.find_open_entry(
            conn, job.org_id, job.integration_id, job.message_id
        )
        failure = {"last_error": outcome.error, "error_category": outcome.error_category}
        if existing is not None and existing.status == DlqStatus.RETRYING:
            # A redrive of the same delivery is in flight: its outcome decides.
            await queries.update_entry(conn, existing.id, failure)
            return
        automatic = self.max_retries > 0  # with 0, entries wait for a manual retry
        values = {
            **failure,
            "status": (DlqStatus.PENDING_RETRY if automatic else DlqStatus.ABANDONED).value,
            "job": job.to_payload(),
            "original_payload": outcome.original_payload,
            "target_url": outcome.target_url,
            "http_method": outcome.http_method,
            "integration_name": outcome.integration_name,
            "delivery_attempts": outcome.attempts,
            "attempt_count": 0,
            "max_retries": self.max_retries,
            "next_retry_at": self.next_retry_at(now, 0) if automatic else None,
            "trace_id": outcome.trace_id,
            "updated_at": now,
        }
        if existing is not None:
            await queries.update_entry(conn, existing.id, values)
            log.info("DLQ entry %s refreshed by a new failure", existing.id)
            return
        entry_id = new_id("dlq")
        await queries.insert_entry(
            conn,
            {
                **values,
                "id": entry_id,
                "org_id": job.org_id,
                "integration_id": job.integration_id,
                "direction": DIRECTION,
                "delivery_id": job.message_id,
                "event_id": job.event_id,
                "event_type": job.event_type,
                "created_at": now,
            },
        )
        log.info("delivery %s dead-lettered as %s", job.message_id, entry_id)

    async def _redrive_ended(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome, now: datetime
    ) -> None:
        assert job.dlq_entry_id is not None
        entry = await queries.get_entry(conn, job.dlq_entry_id, for_update=True)
        if entry is None:
            # Deleted meanwhile. A failure must still end visibly somewhere.
            if outcome.state in _FAILED:
                await self._dead_letter(conn, job, outcome, now)
            return
        if outcome.state is FinalState.DELIVERED:
            await queries.delete_entry(conn, entry.id)
            log.info("DLQ entry %s delivered on retry", entry.id)
            return
        if entry.status != DlqStatus.RETRYING:
            log.info("DLQ entry %s: outcome of a stale retry ignored", entry.id)
            return
        if outcome.state is FinalState.SKIPPED:
            await self._skipped(conn, entry, outcome, now)
            return
        failure = _Failure(
            outcome.error or "the retry failed",
            outcome.error_category,
            logged=True,
            latest={
                "integration_name": outcome.integration_name,
                "target_url": outcome.target_url,
                "http_method": outcome.http_method,
                "trace_id": outcome.trace_id,
            },
        )
        await self._failed_retry(conn, entry, failure, now, alert=job.trigger is not Trigger.MANUAL)

    async def _skipped(
        self, conn: AsyncConnection, entry: DlqRecord, outcome: DeliveryOutcome, now: datetime
    ) -> None:
        if await queries.integration_state(conn, entry.integration_id) is None:
            await self._abandon(conn, entry, _Failure(INTEGRATION_DELETED), now, alert=False)
            return
        # Disabled meanwhile: wait, uncounted, until it is enabled again.
        await queries.update_entry(
            conn,
            entry.id,
            {
                "status": DlqStatus.PENDING_RETRY.value,
                "next_retry_at": now,
                "last_error": outcome.error or "the integration was inactive when retried",
                "updated_at": now,
            },
            expect=[DlqStatus.RETRYING],
        )

    async def _failed_retry(
        self,
        conn: AsyncConnection,
        entry: DlqRecord,
        failure: _Failure,
        now: datetime,
        *,
        alert: bool,
    ) -> None:
        """Count a failed redrive: due again after its backoff, or abandoned."""
        retries = entry.attempt_count + 1
        if retries >= entry.max_retries:
            await self._abandon(conn, entry, failure, now, alert=alert, retries=retries)
            return
        values = {
            "status": DlqStatus.PENDING_RETRY.value,
            "attempt_count": retries,
            "next_retry_at": self.next_retry_at(now, retries),
        }
        await queries.update_entry(
            conn, entry.id, {**failure.values(now), **values}, expect=[DlqStatus.RETRYING]
        )

    async def _abandon(
        self,
        conn: AsyncConnection,
        entry: DlqRecord,
        failure: _Failure,
        now: datetime,
        *,
        alert: bool,
        retries: int | None = None,
    ) -> None:
        values = {
            "status": DlqStatus.ABANDONED.value,
            "attempt_count": entry.attempt_count if retries is None else retries,
            "next_retry_at": None,
        }
        changed = await queries.update_entry(
            conn, entry.id, {**failure.values(now), **values}, expect=[DlqStatus.RETRYING]
        )
        if changed is None:
            return
        log.warning("DLQ entry %s abandoned: %s", entry.id, failure.error)
        if failure.logged:
            triggers = [Trigger.DLQ_RETRY.value, Trigger.MANUAL.value]
            await queries.mark_last_attempt_abandoned(
                conn, entry.org_id, entry.delivery_id, triggers
            )
        if alert:
            await _alert(conn, changed, now)

    # ------------------------------------------------------------------ the worker

    async def redrive_due(
        self, *, now: datetime | None = None, limit: int = BATCH_SIZE
    ) -> list[Redrive]:
        """Claim up to ``limit`` due entries of active integrations and enqueue their
        retries, in one transaction (safe on several nodes at once)."""
        now = now or self.clock()
        async with self.db.write() as conn:
            claimed = await queries.claim_due(conn, now, limit)
            return await self._enqueue(conn, claimed, Trigger.DLQ_RETRY)

    async def abandon_orphans(self, *, now: datetime | None = None) -> int:
        """Abandon waiting entries whose integration no longer exists."""
        async with self.db.write() as conn:
            count = await queries.abandon_orphans(conn, now or self.clock(), INTEGRATION_DELETED)
        if count:
            log.warning("abandoned %d DLQ entries of deleted integrations", count)
        return count

    async def reconcile_stuck(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Count as failed the redrives that ended without an outcome; how many there were."""
        now = now or self.clock()
        async with self.db.write() as conn:
            stuck = await queries.retrying_since(conn, now - self.stuck_after, limit)
            keys = {entry.id: redrive_key(entry.id, entry.attempt_count + 1) for entry in stuck}
            states = await queries.job_states(conn, DELIVERY_JOB_KIND, list(keys.values()))
            lost = [entry for entry in stuck if states.get(keys[entry.id]) not in _LIVE_JOB]
            for entry in lost:
                state = states.get(keys[entry.id], "missing")
                error = f"the retry ended without an outcome (its job is {state})"
                await self._failed_retry(conn, entry, _Failure(error), now, alert=True)
        for entry in lost:
            log.warning("DLQ entry %s: lost retry counted as failed", entry.id)
        return len(lost)

    async def _enqueue(
        self, conn: AsyncConnection, entries: Sequence[DlqRecord], trigger: Trigger
    ) -> list[Redrive]:
        new_jobs = [redrive_job(entry, trigger) for entry in entries]
        job_ids = await self.queue.enqueue(conn, new_jobs)
        return [
            Redrive(entry.id, job_id, entry.attempt_count + 1, trigger)
            for entry, job_id in zip(entries, job_ids, strict=True)
        ]

    # ------------------------------------------------------------------ the API

    async def list(
        self, tenant: TenantContext, page: PageRequest, where: DlqFilter
    ) -> Page[DlqRecord]:
        async with self.db.read() as conn:
            scope = await _entry_scope(conn, tenant)
            items, total = await queries.list_page(conn, scope, page, where)
        return Page(items, total, page)

    async def stats(self, tenant: TenantContext) -> dict[DlqStatus, int]:
        async with self.db.read() as conn:
            counts = await queries.status_counts(conn, await _entry_scope(conn, tenant))
        return {status: counts.get(status.value, 0) for status in DlqStatus}

    async def get(self, tenant: TenantContext, entry_id: str) -> DlqDetail:
        async with self.db.read() as conn:
            entry = await queries.get_entry(conn, entry_id, await _entry_scope(conn, tenant))
            if entry is None:
                raise NotFoundError("DLQ entry not found")
            trace = await queries.trace_rows(conn, entry.delivery_id, await _family(conn, tenant))
        return DlqDetail(entry, trace)

    async def retry(self, tenant: TenantContext, entry_id: str) -> Redrive:
        """Retry one entry now (PENDING_RETRY or ABANDONED); 409 while a retry runs."""
        async with self.db.write() as conn:
            scope = await _entry_scope(conn, tenant)
            return await self._manual_retry(conn, tenant, scope, entry_id)

    async def retry_many(
        self, tenant: TenantContext, entry_ids: Sequence[str]
    ) -> builtins.list[BulkResult]:
        """Retry up to 100 entries; one result per distinct id, in the order given."""
        ids = _distinct(entry_ids)
        results: dict[str, BulkResult] = {}
        async with self.db.write() as conn:
            scope = await _entry_scope(conn, tenant)
            for entry_id in sorted(ids):  # one lock order for concurrent bulk calls
                try:
                    done = await self._manual_retry(conn, tenant, scope, entry_id)
                except (NotFoundError, ConflictError) as exc:
                    results[entry_id] = _refused(entry_id, exc)
                else:
                    results[entry_id] = BulkResult(entry_id, "RETRYING", job_id=done.job_id)
        return [results[entry_id] for entry_id in ids]

    async def delete(self, tenant: TenantContext, entry_id: str) -> None:
        async with self.db.write() as conn:
            scope = await _entry_scope(conn, tenant)
            await self._delete(conn, tenant, scope, entry_id)

    async def delete_many(
        self, tenant: TenantContext, entry_ids: Sequence[str]
    ) -> builtins.list[BulkResult]:
        ids = _distinct(entry_ids)
        results: dict[str, BulkResult] = {}
        async with self.db.write() as conn:
            scope = await _entry_scope(conn, tenant)
            for entry_id in sorted(ids):
                try:
                    await self._delete(conn, tenant, scope, entry_id)
                except (NotFoundError, ConflictError) as exc:
                    results[entry_id] = _refused(entry_id, exc)
                else:
                    results[entry_id] = BulkResult(entry_id, "DELETED")
        return [results[entry_id] for entry_id in ids]

    async def _manual_retry(
        self, conn: AsyncConnection, tenant: TenantContext, scope: builtins.list[int], entry_id: str
    ) -> Redrive:
        entry = await queries.get_entry(conn, entry_id, scope, for_update=True)
        if entry is None:
            raise NotFoundError("DLQ entry not found")
        if entry.status == DlqStatus.RETRYING:
            raise ConflictError("a retry of this entry is already in progress")
        if entry.direction != DIRECTION:  # an INBOUND entry: a proxied call, already answered
            raise ConflictError("a proxied (INBOUND) call is not re-sent: its caller had a reply")
        active = await queries.integration_state(conn, entry.integration_id)
        if active is None:
            raise ConflictError("the integration was deleted: this entry cannot be retried")
        if not active:
            raise ConflictError("the integration is disabled: enable it, then retry")
        now = self.clock()
        claimed = await queries.update_entry(
            conn,
            entry.id,
            {"status": DlqStatus.RETRYING.value, "next_retry_at": None, "updated_at": now},
            expect=_AT_REST,
        )
        if claimed is None:  # another retry won the race
            raise ConflictError("a retry of this entry is already in progress")
        (redrive,) = await self._enqueue(conn, [entry], Trigger.MANUAL)
        await audit.record(
            conn,
            tenant.principal,
            "dlq.retry",
            "dlq_entry",
            entry.id,
            org_id=entry.org_id,
            before=_summary(entry),
            after={**_summary(claimed), "job_id": redrive.job_id},
        )
        return redrive

    async def _delete(
        self, conn: AsyncConnection, tenant: TenantContext, scope: builtins.list[int], entry_id: str
    ) -> None:
        entry = await queries.get_entry(conn, entry_id, scope, for_update=True)
        if entry is None:
            raise NotFoundError("DLQ entry not found")
        if not await queries.delete_entry(conn, entry.id, expect=_AT_REST):
            raise ConflictError("a retry of this entry is in progress: wait for its outcome")
        await audit.record(
            conn,
            tenant.principal,
            "dlq.delete",
            "dlq_entry",
            entry.id,
            org_id=entry.org_id,
            before=_summary(entry),
        )


async def _entry_scope(conn: AsyncConnection, tenant: TenantContext) -> list[int]:
    """The entities whose entries the tenant sees: itself, and an organization's units."""
    if tenant.entity.is_unit:
        return [tenant.entity.id]
    return [tenant.entity.id, *await unit_ids(conn, tenant.entity.id)]


async def _family(conn: AsyncConnection, tenant: TenantContext) -> list[int]:
    """The tenant's whole organization: where a delivery's attempts may be logged (under
    the event's entity or the integration's organization)."""
    root = tenant.root_org_id
    return [root, *await unit_ids(conn, root)]


def _distinct(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _refused(entry_id: str, exc: NotFoundError | ConflictError) -> BulkResult:
    status: BulkStatus = "NOT_FOUND" if isinstance(exc, NotFoundError) else "CONFLICT"
    return BulkResult(entry_id, status, error=exc.message)


__all__ = [
    "ALERT_KIND",
    "BATCH_SIZE",
    "DLQ_POLICY",
    "MAX_BULK",
    "BulkResult",
    "DlqDetail",
    "DlqFilter",
    "DlqRecord",
    "DlqService",
    "Redrive",
    "redrive_job",
    "redrive_key",
    "retry_time",
]
