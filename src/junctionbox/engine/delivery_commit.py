"""Writing attempt outcomes: log rows and job transitions, many per transaction.

One transaction per batch of finished attempts:

1. the jobs move on, each fenced by its claim's lease token: completed (delivered,
   skipped), retried at their time, dead-lettered, or deferred/released without spending
   the attempt. A job whose lease was lost (its lease expired and someone else claimed it,
   or an operator cancelled it) is left out of everything below: no log row, no listener
   effect, as if its transaction had been rolled back;
2. the attempts' ``delivery_logs`` rows are inserted (one executemany), and added to the
   dashboard's rollups (one upsert; see :mod:`junctionbox.engine.delivery_telemetry`);
3. per integration: the auto-disable streak (reset by a delivery, counted by a final
   failure; the Nth consecutive one disables the integration and raises an alert), and
   410 Gone disables at once;
4. the next action of a multi-action integration is enqueued after a delivered one;
5. every listener (DLQ, schedules) hears how each finished job ended;
6. the circuit breakers that changed are saved;
7. when the worker asks for it, its next batch of jobs is claimed (see
   :meth:`JobQueue.claim_in`): one write transaction per cycle instead of a claim and a
   commit taking turns on the write lock (SQLite has one writer). The claimed jobs are
   returned only once the transaction has committed; after a rollback their leases never
   existed and the jobs are still ready for anyone.

On SQLite steps 1, 2, 7, and 3 for integrations that only delivered, run in ONE call on
aiosqlite's thread, before the rest (each statement through the async driver is three or
four hand-overs to that thread, and every await waits for the busy event loop while the
write lock is held); the claim then comes before steps 3 to 6 for the other outcomes, which
changes nothing it could see but a next action enqueued here (claimed by a later cycle).

On PostgreSQL a batch of plain deliveries (every attempt delivered, no next action, no
listener concerned, no breaker changed, no claim: a moderate load's batches) is written in
ONE statement of its own instead (:mod:`junctionbox.store.queries.commit_on_postgres`:
steps 1 to 3, all or nothing), six round trips saved; if a lease was lost meanwhile that
statement writes nothing and the batch takes the transaction's way.

A job is never acknowledged without its log row: both are in the same commit. If the batch
fails (a listener raised, the database hiccuped), each outcome is tried again in a
transaction of its own, so one bad outcome cannot hold up the others; an outcome that still
cannot be written is left to its lease, which expires, and the job runs again (the same
``webhook-id``: at-least-once).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DeliveryOutcome,
    FinalState,
    Trigger,
    delivery_dedupe_key,
    job_max_attempts,
    message_id,
)
from junctionbox.domain.outbound import OutboundIntegration
from junctionbox.domain.rollups import aggregate
from junctionbox.engine.delivery_attempt import FINAL_DISPOSITIONS, AttemptOutcome, Disposition
from junctionbox.engine.delivery_telemetry import add_to_rollups, record_metrics, rollup_facts
from junctionbox.observability.metrics import Metrics
from junctionbox.queue import driver_sql
from junctionbox.queue.jobs import ClaimRequest, Job, Lease, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services.breakers import Breakers
from junctionbox.services.delivery_hooks import DeliveryListener
from junctionbox.store.database import Database
from junctionbox.store.queries.alerts import raise_alert
from junctionbox.store.queries.commit_on_postgres import commit_delivered
from junctionbox.store.queries.commit_on_sqlite import (
    add_rollups_on_sqlite,
    reset_streaks_on_sqlite,
)
from junctionbox.store.queries.delivery_attempts import cap_text
from junctionbox.store.queries.driver_calls import sqlite_run
from junctionbox.store.queries.integrations import disable_integration, record_outcome
from junctionbox.store.queries.log_batches import (
    insert_log_rows,
    insert_on_sqlite,
    log_row_values,
)
from junctionbox.store.sqlite_inline import SMALL_BATCH
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

ALERT_AUTO_DISABLED = "INTEGRATION_AUTO_DISABLED"
ALERT_GONE = "INTEGRATION_GONE"
_ORIGINAL_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Committed:
    """What a commit did: the ids recorded, the ids whose lease was lost (dropped), and the
    jobs claimed in the same transaction. Ids in neither set could not be written now."""

    kept: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)
    claimed: list[Job] = field(default_factory=list)


class AttemptCommitter:
    """Writes outcomes; returns which jobs were still ours (the others were dropped)."""

    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        breakers: Breakers,
        listeners: Sequence[DeliveryListener] = (),
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.queue = queue
        self.breakers = breakers
        self.listeners = tuple(listeners)
        self.clock = clock

    async def commit(
        self, outcomes: Sequence[AttemptOutcome], claim: ClaimRequest | None = None
    ) -> Committed:
        """Write ``outcomes`` and, with ``claim``, claim the next jobs in the same
        transaction. The claim is not tried again when the batch fails (the caller claims
        on its own then)."""
        if not outcomes:
            return Committed()
        try:
            return await self._commit_batch(outcomes, claim)
        except Exception:
            if len(outcomes) == 1:
                log.exception("could not record the outcome of job %s", outcomes[0].job_id)
                return Committed()
            log.warning("batch of %d outcomes failed; writing one by one", len(outcomes))
        kept: set[str] = set()
        lost: set[str] = set()
        for outcome in outcomes:
            try:
                one = await self._commit_batch([outcome], None)
            except Exception:
                log.exception("could not record the outcome of job %s", outcome.job_id)
                continue
            kept |= one.kept
            lost |= one.lost
        return Committed(kept, lost)

    async def _commit_batch(
        self, outcomes: Sequence[AttemptOutcome], claim: ClaimRequest | None
    ) -> Committed:
        now = self.clock()
        if claim is None and not self.db.is_sqlite and self._plain(outcomes, now):
            done = await self._commit_delivered(outcomes, now)
            if done is not None:
                return done
        claimed: list[Job] = []
        inline = claim is None and len(outcomes) <= SMALL_BATCH
        async with self.db.write(inline=inline) as conn:
            if conn.dialect.name == "sqlite":
                kept, claimed, reset = await self._write_on_sqlite(conn, outcomes, claim)
                mine = [o for o in outcomes if o.job_id in kept]
            else:
                reset = set()
                kept = await self._move_jobs(conn, outcomes)
                mine = [o for o in outcomes if o.job_id in kept]
                await insert_log_rows(conn, [o.row for o in mine if o.row is not None])
                await add_to_rollups(conn, mine)
            finals = await self._integrations(conn, mine, now, reset)
            await self._next_actions(conn, mine, now)
            await self._tell_listeners(conn, mine, finals)
            breaker_rows = self.breakers.dirty_rows(now.timestamp())
            await self.breakers.save(conn, breaker_rows)
            if claim is not None and conn.dialect.name != "sqlite":
                # Last: a job these outcomes held up is claimable now.
                claimed = await self.queue.claim_in(conn, claim)
        self.breakers.saved(breaker_rows)
        if self.metrics is not None:
            record_metrics(self.metrics, self.breakers, mine)
        lost = {o.job_id for o in outcomes} - kept
        for job_id in sorted(lost):
            log.warning("lease of job %s was lost; its outcome is not recorded", job_id)
        return Committed(kept, lost, claimed)

    def _plain(self, outcomes: Sequence[AttemptOutcome], now: datetime) -> bool:
        """Whether every outcome is a delivery with nothing to write beyond its job, log
        row, rollups and streak: no next action, no listener concerned, no breaker changed
        (``store.queries.commit_on_postgres``)."""
        for outcome in outcomes:
            ready = outcome.prepared.ready
            if outcome.disposition is not Disposition.DELIVERED or outcome.row is None:
                return False
            if ready is None or _has_next_action(ready.delivery, ready.stored.integration):
                return False
            if any(
                listener.concerns(ready.delivery, FinalState.DELIVERED)
                for listener in self.listeners
            ):
                return False
        return not self.breakers.dirty_rows(now.timestamp())

    async def _commit_delivered(
        self, outcomes: Sequence[AttemptOutcome], now: datetime
    ) -> Committed | None:
        """Plain deliveries on PostgreSQL, in one statement of their own; None when some
        lease was lost (nothing was written: the transaction's way sorts it out)."""
        rows = log_row_values(self.db.engine.dialect, [o.row for o in outcomes if o.row])
        async with self.db.driver() as driver:
            moved = await commit_delivered(
                driver,
                self.db.engine.dialect,
                [_lease(o) for o in outcomes],
                now,
                rows,
                aggregate(rollup_facts(outcomes)),
            )
        if moved is None:
            return None
        if self.metrics is not None:
            record_metrics(self.metrics, self.breakers, outcomes)
        return Committed(set(moved))

    async def _write_on_sqlite(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[AttemptOutcome],
        claim: ClaimRequest | None,
    ) -> tuple[set[str], list[Job], set[str]]:
        """Steps 1, 2 and 7 (and 3 for integrations that only delivered) in ONE call on
        aiosqlite's thread: each statement through the async driver is three or four
        hand-overs to that thread and back, and every await in the transaction waits for
        the busy event loop with the write lock held. The kept job ids, the jobs claimed
        and the integrations whose failure streak was reset.

        The claim comes before the steps left to the async path (other integrations,
        next actions, listeners, breakers): after the jobs moved, which is what a job
        these outcomes held up waits for; a next action enqueued below is claimed by a
        later cycle."""
        dialect = conn.dialect
        plan = self.queue.plan_settle(**_settle_arguments(outcomes))
        wanted = self.queue.plan_claim(claim) if claim is not None else None
        rows = log_row_values(dialect, [o.row for o in outcomes if o.row is not None])
        row_jobs = [o.job_id for o in outcomes if o.row is not None]
        facts = {o.job_id: rollup_facts([o]) for o in outcomes}
        resettable = _only_delivered(outcomes)

        def work(sqlite: sqlite3.Connection) -> tuple[list[dict[str, str]], list[Job], set[str]]:
            moved = driver_sql.apply_on_sqlite(sqlite, plan) if plan is not None else []
            kept = {job_id for changed in moved for job_id in changed}
            insert_on_sqlite(
                sqlite,
                dialect,
                [v for v, job_id in zip(rows, row_jobs, strict=True) if job_id in kept],
            )
            mine_facts = [fact for job_id in kept for fact in facts[job_id]]
            add_rollups_on_sqlite(sqlite, dialect, aggregate(mine_facts))
            reset = {resettable[job_id] for job_id in kept if job_id in resettable}
            reset_streaks_on_sqlite(sqlite, dialect, reset)
            jobs = driver_sql.claim_on_sqlite(sqlite, wanted) if wanted is not None else []
            return moved, jobs, reset

        moved, jobs, reset = await sqlite_run(conn, work)
        kept = await self.queue.settled(conn, plan, moved) if plan is not None else set()
        return kept, self.queue.claimed(jobs), reset

    async def _move_jobs(
        self, conn: AsyncConnection, outcomes: Sequence[AttemptOutcome]
    ) -> set[str]:
        """Every job's transition, fenced by its lease, in one call to the queue (one
        statement per kind of move)."""
        return await self.queue.settle(conn, **_settle_arguments(outcomes))

    async def _integrations(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[AttemptOutcome],
        now: datetime,
        reset: set[str],
    ) -> dict[str, FinalState]:
        """Streaks, auto-disable, 410 Gone (in integration order, so that two nodes lock
        integration rows in the same order); the final state of each finished job. The
        integrations in ``reset`` had their streak reset already."""
        finals: dict[str, FinalState] = {}
        delivered = set(reset)
        ordered = sorted(
            (o for o in outcomes if o.disposition in FINAL_DISPOSITIONS),
            key=lambda o: (o.delivery.integration_id if o.delivery else "", o.job_id),
        )
        for outcome in ordered:
            finals[outcome.job_id] = await self._final(conn, outcome, delivered, now)
        return finals

    async def _final(
        self, conn: AsyncConnection, outcome: AttemptOutcome, delivered: set[str], now: datetime
    ) -> FinalState:
        stored = outcome.prepared.stored
        if outcome.disposition is Disposition.SKIP:
            delivery = outcome.delivery
            log.info(
                "delivery %s skipped: %s",
                delivery.message_id if delivery else outcome.job_id,
                outcome.error,
            )
            return FinalState.SKIPPED
        if stored is None:
            return FinalState.DEAD_LETTERED
        if outcome.disposition is Disposition.DELIVERED:
            if stored.id not in delivered:  # one reset per integration and batch is enough
                delivered.add(stored.id)
                await record_outcome(conn, stored.id, failed=False, disable_after=0, now=now)
            return FinalState.DELIVERED
        if outcome.disposition is Disposition.DISABLE:
            reason = "the destination answered 410 Gone"
            await disable_integration(conn, stored.id, reason, now)
            await self._alert(conn, outcome, ALERT_GONE, f"{stored.integration.name}: {reason}")
            return FinalState.DISABLED
        if not outcome.counts_toward_disable:
            return FinalState.DEAD_LETTERED
        disable_after = stored.integration.disable_after_failures
        if await record_outcome(conn, stored.id, failed=True, disable_after=disable_after, now=now):
            message = (
                f"{stored.integration.name}: disabled after {disable_after} consecutive "
                "failed deliveries"
            )
            await self._alert(conn, outcome, ALERT_AUTO_DISABLED, message)
            return FinalState.DISABLED
        return FinalState.DEAD_LETTERED

    async def _alert(
        self, conn: AsyncConnection, outcome: AttemptOutcome, kind: str, message: str
    ) -> None:
        stored = outcome.prepared.stored
        assert stored is not None
        log.warning("integration %s disabled: %s", stored.id, message)
        await raise_alert(
            conn,
            org_id=stored.org_id,
            kind=kind,
            message=message,
            now=self.clock(),
            severity="ERROR",
            subject_id=stored.id,
            details={
                "integrationId": stored.id,
                "deliveryId": outcome.delivery.message_id if outcome.delivery else None,
                "lastError": outcome.error,
                "errorCategory": outcome.error_category,
            },
        )

    async def _next_actions(
        self, conn: AsyncConnection, outcomes: Sequence[AttemptOutcome], now: datetime
    ) -> None:
        jobs = [
            job
            for o in outcomes
            if o.disposition is Disposition.DELIVERED
            and (job := _next_action_job(o, now)) is not None
        ]
        if jobs:
            await self.queue.enqueue(conn, jobs)

    async def _tell_listeners(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[AttemptOutcome],
        finals: dict[str, FinalState],
    ) -> None:
        if not self.listeners:
            return
        for outcome in outcomes:
            state = finals.get(outcome.job_id)
            if state is None or outcome.delivery is None:
                continue
            told = _delivery_outcome(outcome, state)
            for listener in self.listeners:
                await listener.on_final(conn, outcome.delivery, told)


# ---------------------------------------------------------------------- helpers


def _settle_arguments(outcomes: Sequence[AttemptOutcome]) -> dict[str, Any]:
    """``JobQueue.settle``'s arguments for the outcomes' jobs."""
    by: dict[Disposition, list[AttemptOutcome]] = {}
    for outcome in outcomes:
        by.setdefault(outcome.disposition, []).append(outcome)
    done = [*by.get(Disposition.DELIVERED, []), *by.get(Disposition.SKIP, [])]
    dead = [*by.get(Disposition.DEAD_LETTER, []), *by.get(Disposition.DISABLE, [])]
    waiting = [*by.get(Disposition.DEFER, []), *by.get(Disposition.RELEASE, [])]
    return {
        "done": [_lease(o) for o in done],
        "retries": [
            (_lease(o), _when(o), o.error or "failed") for o in by.get(Disposition.RETRY, [])
        ],
        "dead": [(_lease(o), o.error or "failed") for o in dead],
        "deferrals": [(_lease(o), _when(o)) for o in waiting],
        "notes": {o.job_id: o.note for o in waiting if o.note is not None},
    }


def _only_delivered(outcomes: Sequence[AttemptOutcome]) -> dict[str, str]:
    """{job id: integration id} of the deliveries whose integration has no other final
    outcome in the batch: its streak is simply reset (``_final``), whatever the order.
    An integration with a final failure too is left to ``_final``, in job order."""
    delivered: dict[str, str] = {}
    others: set[str] = set()
    for o in outcomes:
        stored = o.prepared.stored
        if stored is None or o.disposition not in FINAL_DISPOSITIONS:
            continue
        if o.disposition is Disposition.DELIVERED:
            delivered[o.job_id] = stored.id
        elif o.disposition is not Disposition.SKIP:
            others.add(stored.id)
    return {job_id: iid for job_id, iid in delivered.items() if iid not in others}


def _has_next_action(delivery: DeliveryJob, integration: OutboundIntegration) -> bool:
    return delivery.action_index + 1 < len(integration.effective_actions())


def _lease(outcome: AttemptOutcome) -> Lease:
    return Lease(outcome.job_id, _token(outcome))


def _token(outcome: AttemptOutcome) -> str:
    token = outcome.prepared.job.lease_token
    if token is None:
        raise ValueError(f"job {outcome.job_id} was not claimed")
    return token


def _when(outcome: AttemptOutcome) -> datetime:
    if outcome.run_at is None:
        raise ValueError(f"outcome of job {outcome.job_id} has no time")
    return outcome.run_at


def _delivery_outcome(outcome: AttemptOutcome, state: FinalState) -> DeliveryOutcome:
    p, row = outcome.prepared, outcome.row
    payload = p.ready.event.payload if p.ready is not None else None
    return DeliveryOutcome(
        state=state,
        attempts=p.job.attempts,
        error=outcome.error if state is not FinalState.DELIVERED else None,
        error_category=outcome.error_category if state is not FinalState.DELIVERED else None,
        response_status=outcome.response_status,
        trace_id=row.trace_id if row is not None else None,
        target_url=row.target_url if row is not None else None,
        http_method=row.http_method if row is not None else None,
        integration_name=p.stored.integration.name if p.stored is not None else None,
        original_payload=cap_text(payload, _ORIGINAL_PAYLOAD_BYTES),
    )


def _next_action_job(outcome: AttemptOutcome, now: datetime) -> NewJob | None:
    """After action i of a multi-action integration was delivered: action i+1's job, due
    after its delay. Its dedupe key makes a redelivery of action i enqueue it only once."""
    ready = outcome.prepared.ready
    if ready is None:
        return None
    actions = ready.stored.integration.effective_actions()
    index = ready.delivery.action_index + 1
    if index >= len(actions):
        return None
    current, event = ready.delivery, ready.event
    following = replace(
        current,
        action_index=index,
        message_id=message_id(
            current.org_id,
            event.source,
            current.event_id,
            current.integration_id,
            index,
            _occurrence(current),
        ),
        # The schedule and the DLQ entry are decided by the chain's first job: this one is
        # a delivery of its own (with its own retries and, if it fails, its own DLQ entry).
        scheduled_id=None,
        dlq_entry_id=None,
        integration_version=ready.stored.version,
    )
    job = outcome.prepared.job
    policy = ready.stored.integration.retry_policy
    return NewJob(
        kind=DELIVERY_JOB_KIND,
        payload=following.to_payload(),
        queue=DELIVERY_QUEUE,
        org_id=job.org_id,
        priority=job.priority,
        run_at=now + timedelta(milliseconds=actions[index].delay_ms),
        max_attempts=job_max_attempts(policy.max_retries),
        ordering_key=job.ordering_key,
        dedupe_key=_next_action_key(current, following.message_id),
    )


def _next_action_key(current: DeliveryJob, following_id: str) -> str:
    """The chain's dedupe key: a replay's chain must not collide with the original chain's
    jobs (same message ids), so it keeps the replay's namespace (its id is the job's
    correlation id)."""
    replay = current.correlation_id if current.trigger is Trigger.REPLAY else None
    return delivery_dedupe_key(following_id, replay)


def _occurrence(delivery: DeliveryJob) -> int:
    """A RECURRING occurrence's later actions must differ from the other occurrences':
    the job does not carry the occurrence number, but its message id is unique to it."""
    if delivery.scheduled_id is None:
        return 0
    digest = hashlib.sha256(delivery.message_id.encode()).digest()
    return int.from_bytes(digest[:6], "big")
