"""The durable job queue on the store (SQLite or PostgreSQL).

A claim is one write transaction: expired leases are turned back to ready (or dead: on
their last attempt), first at most once a second per queue (``REAP_EVERY``), otherwise
only when the claim finds fewer due jobs than it asks for; the due jobs' ids are selected (highest priority first, one per ordering key, ``FOR UPDATE SKIP LOCKED``
on PostgreSQL, where concurrent claimers skip each other's rows; on SQLite the write
transaction, ``BEGIN IMMEDIATE``, already makes claimers take turns), and leased by
``UPDATE … RETURNING``. Every change after a claim is fenced by the lease token: a worker
whose lease expired gets ``False`` and must stop. The claim and the jobs' transitions run
at the driver's level (see :mod:`junctionbox.queue.driver_sql`): on SQLite one call on the
driver's thread each, on PostgreSQL one statement per step or kind of transition.

Wake-ups: ``enqueue`` marks its connection; when that connection goes back to the pool (its
transaction is over, so the jobs are visible) the local waiters are woken. On PostgreSQL it
also sends ``NOTIFY``, which the server delivers at commit to every node's listener.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Update,
    and_,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import Page, PageRequest
from junctionbox.queue import driver_sql
from junctionbox.queue.jobs import (
    PURGEABLE_STATES,
    ClaimRequest,
    Job,
    JobState,
    Lease,
    NewJob,
    age_seconds,
    clip_error,
    lease_deadline,
    new_job_ids,
)
from junctionbox.queue.notify import CHANNEL, Wakeups
from junctionbox.store.database import Database
from junctionbox.store.pg_listener import PgListener, asyncpg_dsn
from junctionbox.store.queries.common import fetch_page
from junctionbox.store.queries.job_inserts import COLUMNS as JOB_INSERT_COLUMNS
from junctionbox.store.queries.job_inserts import insert_jobs
from junctionbox.store.tables import jobs
from junctionbox.store.types import utcnow

READY, RUNNING, DEAD = JobState.READY, JobState.RUNNING, JobState.DEAD
LEASE_EXPIRED = "lease expired (the worker stopped or crashed)"
EXPIRED_ON_LAST_ATTEMPT = "lease expired on the last attempt (the worker stopped or crashed)"
_TICK = timedelta(microseconds=1)
# A claim reaps expired leases of its queue first if none of this queue object's claims did
# for this long (else only when it comes back short): while claims come back full, an
# expired job is claimable again at most this late after its lease ran out.
REAP_EVERY = timedelta(seconds=1)
_STATE, _ATTEMPTS = JOB_INSERT_COLUMNS.index("state"), JOB_INSERT_COLUMNS.index("attempts")
_QUEUE = JOB_INSERT_COLUMNS.index("queue")
_LEASE_TOKEN = JOB_INSERT_COLUMNS.index("lease_token")
_LEASE_OWNER = JOB_INSERT_COLUMNS.index("lease_owner")
_LEASED_UNTIL = JOB_INSERT_COLUMNS.index("leased_until")


class JobQueue:
    """Enqueue, claim, finish and inspect jobs. All times are UTC from the injected clock."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._wakeups = Wakeups()
        self._last_created: datetime | None = None
        self._reaped: dict[str, datetime] = {}  # queue -> when a claim last reaped it
        # Per instance, so two queues on one Database each see their own marks.
        self._pending_key = f"jb.jobs.pending.{id(self)}"
        event.listen(db.engine.sync_engine, "checkin", self._on_checkin)
        self._listener = None if db.is_sqlite else self._new_listener()

    # ------------------------------------------------------------------ enqueue

    async def enqueue(self, conn: AsyncConnection, new_jobs: Sequence[NewJob]) -> list[str]:
        """Insert jobs in the caller's write transaction; the id of each, in order.

        A job whose (kind, dedupe_key) exists already is not inserted: its id is the existing
        job's, whatever state that job is in.
        """
        if not new_jobs:
            return []
        rows = self.new_rows(new_jobs)
        ids = [row[0] for row in rows]
        queues = {job.queue for job in new_jobs}
        # Driver-level (job_inserts): SQLAlchemy's per-statement and per-row work cost more
        # than the database's; the dedupe look-up only runs if a key was already taken. On
        # PostgreSQL the INSERT also sends _mark_ready's NOTIFY (delivered at commit).
        notify = None if self.db.is_sqlite else (CHANNEL, sorted(queues))
        holders = await insert_jobs(conn, rows, notify=notify)
        conn.info.setdefault(self._pending_key, set()).update(queues)  # as _mark_ready does
        if holders is None:  # every row inserted: each job's id is its own
            return ids
        return [
            holders[(job.kind, job.dedupe_key)] if job.dedupe_key is not None else job_id
            for job, job_id in zip(new_jobs, ids, strict=True)
        ]

    async def enqueue_leased(
        self, conn: AsyncConnection, new_jobs: Sequence[NewJob], owner: str, lease_seconds: float
    ) -> builtins.list[Job]:
        """Insert jobs already leased to ``owner``, on their first attempt, in the caller's
        write transaction: the jobs a worker takes straight from the dispatcher of its own
        process, without a claim of its own (see :mod:`junctionbox.engine.handoff`). They are
        ``running`` as if claimed: fenced by the one lease token returned with them, reaped
        when the lease expires. A job whose (kind, dedupe_key) exists already is not inserted
        and not returned. The leases exist only if the transaction commits; nobody is woken
        (no one else may run them)."""
        if not new_jobs:
            return []
        rows = self.new_rows(new_jobs, (owner, lease_seconds))
        holders = await insert_jobs(conn, rows)
        leased = [
            _job_of_row(row)
            for job, row in zip(new_jobs, rows, strict=True)
            if holders is None
            or job.dedupe_key is None
            or holders.get((job.kind, job.dedupe_key)) == row[0]
        ]
        return self.claimed(leased)

    def new_rows(
        self, new_jobs: Sequence[NewJob], lease: tuple[str, float] | None = None
    ) -> builtins.list[tuple[Any, ...]]:
        """The rows (``job_inserts.COLUMNS`` order) :meth:`enqueue` inserts, or with
        ``lease`` (owner, seconds) :meth:`enqueue_leased`, each with a new id: for an insert
        made elsewhere (the dispatcher's one statement); :meth:`inserted` after it."""
        now = self.clock()
        created = self._created_at(now)
        ids = new_job_ids(len(new_jobs))
        if lease is None:
            return [
                _values_of(job, job_id, now, created)
                for job, job_id in zip(new_jobs, ids, strict=True)
            ]
        owner, seconds = lease
        held = (secrets.token_urlsafe(18), owner, lease_deadline(now, seconds))
        return [
            _leased_values_of(job, job_id, now, created, held)
            for job, job_id in zip(new_jobs, ids, strict=True)
        ]

    def inserted(self, rows: Sequence[tuple[Any, ...]], ids: Collection[str]) -> builtins.list[Job]:
        """After rows of :meth:`new_rows` were committed, ``ids`` those inserted: this
        process's waiters woken for the ready ones' queues (as a committed :meth:`enqueue`
        wakes them), and the leased ones as claimed jobs."""
        done = [row for row in rows if row[0] in ids]
        queues = {row[_QUEUE] for row in done if row[_STATE] == READY}
        if queues:
            self._wakeups.signal(queues)
        return self.claimed(_job_of_row(row) for row in done if row[_STATE] == RUNNING)

    async def enqueue_now(self, new_jobs: Sequence[NewJob]) -> list[str]:
        async with self.db.write() as conn:
            return await self.enqueue(conn, new_jobs)

    def _created_at(self, now: datetime) -> datetime:
        # Strictly increasing per process, so two enqueues under one clock reading (a coarse
        # or frozen clock) still keep their FIFO order per ordering key. Only ``created_at``
        # moves: ``run_at`` stays the clock's, so the job is due at once.
        created = now
        if self._last_created is not None and created <= self._last_created:
            created = self._last_created + _TICK
        self._last_created = created
        return created

    # ------------------------------------------------------------------ claim

    async def claim(
        self,
        queue: str,
        owner: str,
        limit: int,
        lease_seconds: float,
        kinds: Sequence[str] | None = None,
    ) -> builtins.list[Job]:
        """Lease up to ``limit`` due jobs, highest priority first, one per ordering key.

        A running job whose lease expired is due again (its worker is presumed dead) and its
        re-claim counts as a new attempt; if that worker was in fact mid-delivery, the
        destination sees the same job twice. Expired jobs already on their last attempt are
        dead-lettered instead. Both happen here, in the claim's transaction.
        """
        chosen_kinds = tuple(kinds) if kinds is not None else None
        request = ClaimRequest(queue, owner, limit, lease_seconds, chosen_kinds)
        # Not durable (no WAL flush wait on PostgreSQL): a claim a crash loses leaves its
        # jobs as they were before it, to be claimed again, as if the worker had died.
        async with self.db.write(durable=False) as conn:
            return await self.claim_in(conn, request)

    async def claim_in(self, conn: AsyncConnection, request: ClaimRequest) -> builtins.list[Job]:
        """:meth:`claim` in the caller's write transaction (a worker claims its next batch
        in the transaction that records its last one: one transaction per cycle).

        The leases exist only if that transaction commits: on a rollback the caller must
        drop the jobs returned, which are then still ready for anyone.
        """
        claimed = await driver_sql.claim(conn, self.plan_claim(request))
        return self.claimed(claimed)

    def plan_claim(self, request: ClaimRequest) -> driver_sql.Claim:
        """The statements' values of a claim (for :func:`driver_sql.claim_on_sqlite` in a
        caller's own call on the driver's thread; then :meth:`claimed`)."""
        now = self.clock()
        return driver_sql.Claim(
            queue=request.queue,
            kinds=request.kinds,
            limit=request.limit,
            now=now,
            token=secrets.token_urlsafe(18),
            owner=request.owner,
            until=lease_deadline(now, request.lease_seconds),
            reap=self._reap_due(request.queue, now),
            expired_errors=(EXPIRED_ON_LAST_ATTEMPT, LEASE_EXPIRED),
        )

    @staticmethod
    def claimed(jobs: Iterable[Job]) -> builtins.list[Job]:
        """Claimed jobs in claim order: highest priority first, then due time, FIFO."""
        return sorted(jobs, key=lambda j: (-j.priority, j.run_at, j.created_at, j.id))

    def _reap_due(self, queue: str, now: datetime) -> bool:
        """Whether this claim should turn expired leases back before it selects: at most
        once per ``REAP_EVERY`` per queue (by this queue object). Otherwise it does only if
        it finds fewer due jobs than it asks for: expired jobs are claimable again at once
        when a claim has room for them, and within ``REAP_EVERY`` while claims come back
        full (a backlog, where the reap, a scan of the running jobs in the write lock,
        would cost every claim for nothing). A clock that went back reaps at once."""
        last = self._reaped.get(queue)
        if last is not None and last <= now < last + REAP_EVERY:
            return False
        self._reaped[queue] = now
        return True

    # ------------------------------------------------------------------ lease holders

    async def heartbeat(self, job_id: str, lease_token: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours (stop, do not acknowledge)."""
        return bool(await self.heartbeat_many([Lease(job_id, lease_token)], lease_seconds))

    async def heartbeat_many(self, leases: Sequence[Lease], lease_seconds: float) -> set[str]:
        """Extend several leases in one statement; the ids whose leases are still ours."""
        until = lease_deadline(self.clock(), lease_seconds)
        return set(await self._fenced(None, leases, {"leased_until": until}))

    async def complete(
        self, job_id: str, lease_token: str, *, conn: AsyncConnection | None = None
    ) -> bool:
        """Mark done. With ``conn`` it joins the caller's transaction (e.g. with the delivery
        log); on False the caller should roll that transaction back."""
        return bool(await self.complete_many([Lease(job_id, lease_token)], conn=conn))

    async def complete_many(
        self, leases: Sequence[Lease], *, conn: AsyncConnection | None = None
    ) -> set[str]:
        """Mark several jobs done in one statement; the ids whose leases were still ours."""
        return await self.settle(conn, done=leases)

    async def retry(
        self,
        job_id: str,
        lease_token: str,
        run_at: datetime,
        error: str,
        *,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Back to ready at ``run_at`` (not claimable before), keeping the attempt count."""
        return bool(await self.retry_many([(Lease(job_id, lease_token), run_at, error)], conn=conn))

    async def dead_letter(
        self, job_id: str, lease_token: str, error: str, *, conn: AsyncConnection | None = None
    ) -> bool:
        return bool(await self.settle(conn, dead=[(Lease(job_id, lease_token), error)]))

    async def release(
        self, job_id: str, lease_token: str, *, conn: AsyncConnection | None = None
    ) -> bool:
        """Give a claimed job back unrun (graceful shutdown): the attempt does not count."""
        return bool(await self.settle(conn, released=[Lease(job_id, lease_token)]))

    async def defer(
        self,
        job_id: str,
        lease_token: str,
        run_at: datetime,
        *,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Back to ready at ``run_at`` without spending the attempt (a rate limit, an open
        circuit or a busy destination held the job up: nothing was sent)."""
        return bool(await self.defer_many([(Lease(job_id, lease_token), run_at)], conn=conn))

    async def defer_many(
        self,
        items: Sequence[tuple[Lease, datetime]],
        *,
        conn: AsyncConnection | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> set[str]:
        """:meth:`defer` for several jobs in one statement; the ids whose leases were ours.

        ``notes`` (by job id) replace those jobs' ``last_error`` (why they wait); the
        others keep theirs.
        """
        return await self.settle(conn, deferrals=items, notes=notes)

    async def retry_many(
        self,
        items: Sequence[tuple[Lease, datetime, str]],
        *,
        conn: AsyncConnection | None = None,
    ) -> set[str]:
        """:meth:`retry` for several jobs (lease, run_at, error) in one statement."""
        return await self.settle(conn, retries=items)

    async def settle(
        self,
        conn: AsyncConnection | None,
        *,
        done: Sequence[Lease] = (),
        retries: Sequence[tuple[Lease, datetime, str]] = (),
        dead: Sequence[tuple[Lease, str]] = (),
        deferrals: Sequence[tuple[Lease, datetime]] = (),
        notes: Mapping[str, str] | None = None,
        released: Sequence[Lease] = (),
    ) -> set[str]:
        """Finish or put back many jobs at once, each fenced by its lease token (one
        statement per kind of move, and on SQLite one hand-over to the driver's thread for
        them all): done, retried at their time with their error, dead-lettered with their
        error, deferred to their time without spending the attempt (``notes`` by job id
        replace those jobs' ``last_error``), released. The ids whose leases were ours.

        With ``conn`` it joins the caller's transaction (e.g. with the delivery log); a
        caller that finds a job missing from the result should drop what it wrote for it.
        """
        plan = self.plan_settle(
            done=done,
            retries=retries,
            dead=dead,
            deferrals=deferrals,
            notes=notes,
            released=released,
        )
        if plan is None:
            return set()
        if conn is None:
            async with self.db.write() as own:
                return await self.settled(own, plan, await driver_sql.apply(own, plan))
        return await self.settled(conn, plan, await driver_sql.apply(conn, plan))

    def plan_settle(
        self,
        *,
        done: Sequence[Lease] = (),
        retries: Sequence[tuple[Lease, datetime, str]] = (),
        dead: Sequence[tuple[Lease, str]] = (),
        deferrals: Sequence[tuple[Lease, datetime]] = (),
        notes: Mapping[str, str] | None = None,
        released: Sequence[Lease] = (),
    ) -> driver_sql.Settlement | None:
        """:meth:`settle`'s statements' values (None: nothing to do), for a caller that
        runs them in its own call on the driver's thread; then :meth:`settled`."""
        _require_aware(when for _, when, _ in retries)
        _require_aware(when for _, when in deferrals)
        now = self.clock()
        notes = notes or {}
        planned = [
            driver_sql.Transition(driver_sql.DONE, [(le.job_id, le.token) for le in done]),
            driver_sql.Transition(
                driver_sql.RETRY,
                [(le.job_id, le.token, when, clip_error(err)) for le, when, err in retries],
                wake=any(when <= now for _, when, _ in retries),
            ),
            driver_sql.Transition(
                driver_sql.DEAD, [(le.job_id, le.token, clip_error(err)) for le, err in dead]
            ),
            driver_sql.Transition(
                driver_sql.DEFER,
                [
                    (le.job_id, le.token, when, _clipped(notes.get(le.job_id)))
                    for le, when in deferrals
                ],
                wake=any(when <= now for _, when in deferrals),
            ),
            driver_sql.Transition(
                driver_sql.RELEASE, [(le.job_id, le.token) for le in released], wake=True
            ),
        ]
        transitions = [transition for transition in planned if transition.jobs]
        return driver_sql.Settlement(transitions, now) if transitions else None

    async def settled(
        self,
        conn: AsyncConnection,
        plan: driver_sql.Settlement,
        moved: Sequence[Mapping[str, str]],
    ) -> set[str]:
        """After ``plan`` ran in ``conn``'s transaction (``moved``: per transition, the
        jobs moved and their queues): wake the queues of jobs claimable now; the ids
        whose leases were ours."""
        ready = {
            queue
            for changed, transition in zip(moved, plan.transitions, strict=True)
            if transition.wake
            for queue in changed.values()
        }
        if ready:
            await self._mark_ready(conn, ready)
        return {job_id for changed in moved for job_id in changed}

    async def _fenced(
        self,
        conn: AsyncConnection | None,
        leases: Sequence[Lease],
        values: dict[str, Any],
        *,
        wake: bool = False,
    ) -> dict[str, str]:
        """Apply ``values`` to the jobs whose lease is still current: {job id: queue}."""
        if not leases:
            return {}
        statement = (
            update(jobs)
            .where(jobs.c.state == RUNNING, _holding(leases))
            .values(updated_at=self.clock(), **values)
            .returning(jobs.c.id, jobs.c.queue)
        )
        if conn is None:
            async with self.db.write() as own:
                return await self._apply_fenced(own, statement, wake)
        return await self._apply_fenced(conn, statement, wake)

    async def _apply_fenced(
        self, conn: AsyncConnection, statement: Update, wake: bool
    ) -> dict[str, str]:
        changed = {row.id: row.queue for row in await conn.execute(statement)}
        if changed and wake:
            await self._mark_ready(conn, set(changed.values()))
        return changed

    # ------------------------------------------------------------------ operators

    async def cancel(self, job_id: str, *, org_id: int | Collection[int] | None = None) -> bool:
        """Cancel a ready or running job (a running one's worker loses its lease)."""
        now = self.clock()
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.state.in_([READY, RUNNING]), *_scoped(org_id))
            .values(state=JobState.CANCELLED, finished_at=now, updated_at=now, **_NO_LEASE)
            .returning(jobs.c.queue)
        )
        async with self.db.write() as conn:
            queue = (await conn.execute(statement)).scalar_one_or_none()
            if queue is not None:  # it may have held up the next job of its ordering key
                await self._mark_ready(conn, {queue})
        return queue is not None

    async def requeue_dead(
        self, job_ids: Sequence[str], *, org_id: int | Collection[int] | None
    ) -> builtins.list[str]:
        """Dead jobs back to ready now with a fresh attempt budget; the ids requeued.

        ``org_id`` scopes the redrive to a tenant; None is for administrators only.
        """
        if not job_ids:
            return []
        now = self.clock()
        statement = (
            update(jobs)
            .where(jobs.c.id.in_(job_ids), jobs.c.state == DEAD, *_scoped(org_id))
            .values(state=READY, attempts=0, run_at=now, finished_at=None, updated_at=now)
            .returning(jobs.c.id, jobs.c.queue)
        )
        async with self.db.write() as conn:
            rows = (await conn.execute(statement)).all()
            await self._mark_ready(conn, {row.queue for row in rows})
        requeued = {row.id for row in rows}
        return [job_id for job_id in dict.fromkeys(job_ids) if job_id in requeued]

    async def purge_finished(self, older_than: datetime, *, batch_size: int = 1000) -> int:
        """Delete done and cancelled jobs finished before ``older_than``, batch by batch:
        each batch is found in a read transaction (the search may read much of the table,
        and on SQLite a write transaction would hold the one write lock meanwhile) and
        deleted by key in a short write transaction, checked again there. Dead jobs are kept
        for the DLQ.

        A dedupe key is only remembered while its job exists: purging ends its window.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        finished = (jobs.c.state.in_(PURGEABLE_STATES), jobs.c.finished_at < older_than)
        doomed = select(jobs.c.id).where(*finished).limit(batch_size)
        total = 0
        while True:
            async with self.db.read() as conn:
                ids = list((await conn.execute(doomed)).scalars())
            if not ids:
                return total
            async with self.db.write() as conn:
                gone = await conn.execute(delete(jobs).where(jobs.c.id.in_(ids), *finished))
            total += gone.rowcount
            if len(ids) < batch_size:
                return total

    # ------------------------------------------------------------------ waiting

    # Returning False after ``timeout`` is the point (it is the poll interval), hence no
    # asyncio.timeout around the call.
    async def wait_for_work(self, timeout: float, queue: str | None = None) -> bool:  # noqa: ASYNC109
        """Return when a job of ``queue`` (any queue if None) may be claimable, or after
        ``timeout`` seconds (False). A hint: claim, and poll again after the timeout."""
        if self._listener is not None:
            self._listener.ensure_started()
        return await self._wakeups.wait(queue, timeout)

    async def start_listening(self, wait_seconds: float = 5.0) -> bool:
        """On PostgreSQL, LISTEN for other nodes' jobs now; True once listening (SQLite: True)."""
        if self._listener is None:
            return True
        return await self._listener.start(wait_seconds)

    async def close(self) -> None:
        """Stop listening and detach from the database's pool events."""
        if self._listener is not None:
            await self._listener.close()
        if event.contains(self.db.engine.sync_engine, "checkin", self._on_checkin):
            event.remove(self.db.engine.sync_engine, "checkin", self._on_checkin)

    async def _mark_ready(self, conn: AsyncConnection, queues: set[str]) -> None:
        if not queues:
            return
        conn.info.setdefault(self._pending_key, set()).update(queues)
        if not self.db.is_sqlite:
            for queue in sorted(queues):  # delivered at commit, once per distinct payload
                await conn.execute(select(func.pg_notify(CHANNEL, queue)))

    def _on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # The connection is back in the pool, so its transaction is over. A rolled-back
        # enqueue wakes waiters for nothing, which costs one empty claim.
        queues = record.info.pop(self._pending_key, None) if record is not None else None
        if queues:
            self._wakeups.signal(queues)

    def _new_listener(self) -> PgListener:
        return PgListener(
            asyncpg_dsn(self.db.url),
            CHANNEL,
            on_notify=lambda queue: self._wakeups.signal([queue]),
            on_reconnected=self._wakeups.signal_all,
        )

    # ------------------------------------------------------------------ introspection

    async def unfinished(self, queue: str, *, due_before: datetime | None = None) -> int:
        """How many jobs of ``queue`` are running, or ready (and due before ``due_before``,
        when given): zero means the queue is idle up to that instant."""
        waiting = jobs.c.state == READY
        if due_before is not None:
            waiting = and_(waiting, jobs.c.run_at <= due_before)
        query = select(func.count()).where(
            jobs.c.queue == queue, or_(jobs.c.state == RUNNING, waiting)
        )
        async with self.db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def get(self, job_id: str, *, org_id: int | Collection[int] | None = None) -> Job | None:
        query = select(jobs).where(jobs.c.id == job_id, *_scoped(org_id))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _job_of(row) if row else None

    async def depth(self, queue: str | None = None) -> dict[JobState, int]:
        """How many jobs are in each state (every state present, zero included)."""
        query = select(jobs.c.state, func.count()).group_by(jobs.c.state)
        if queue is not None:
            query = query.where(jobs.c.queue == queue)
        async with self.db.read() as conn:
            counts = {JobState(state): int(n) for state, n in (await conn.execute(query)).all()}
        return {state: counts.get(state, 0) for state in JobState}

    async def oldest_ready_age(self, queue: str) -> float | None:
        """Seconds the longest-waiting due job has been due; None when none is due."""
        now = self.clock()
        query = select(func.min(jobs.c.run_at)).where(
            jobs.c.queue == queue, jobs.c.state == READY, jobs.c.run_at <= now
        )
        async with self.db.read() as conn:
            oldest: datetime | None = (await conn.execute(query)).scalar_one()
        return None if oldest is None else age_seconds(oldest, now)

    async def list(
        self,
        org_id: int | Collection[int] | None,
        page: PageRequest,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        queue: str | None = None,
    ) -> Page[Job]:
        """A page of jobs, newest first; ``org_id`` None lists every tenant (admin only)."""
        query = select(jobs).where(*_scoped(org_id), *_filters(state, kind, queue))
        async with self.db.read() as conn:
            rows, total = await fetch_page(conn, query, page, jobs.c.id.desc())
        return Page([_job_of(row) for row in rows], total, page)


# ---------------------------------------------------------------------- statements

_NO_LEASE: dict[str, Any] = {"lease_token": None, "leased_until": None}


def _values_of(job: NewJob, job_id: str, now: datetime, created: datetime) -> tuple[Any, ...]:
    """The job's row in ``job_inserts.COLUMNS`` order."""
    return (
        job_id,
        job.org_id,
        job.kind,
        job.queue,
        READY,
        job.priority,
        dict(job.payload),
        0,
        job.max_attempts,
        job.run_at or now,
        job.ordering_key,
        job.dedupe_key,
        None,
        None,
        None,
        None,
        None,
        created,
        created,
    )


def _leased_values_of(
    job: NewJob,
    job_id: str,
    now: datetime,
    created: datetime,
    lease: tuple[str, str, datetime],
) -> tuple[Any, ...]:
    """The row of a job inserted leased (``enqueue_leased``): running, first attempt."""
    token, owner, until = lease
    row = list(_values_of(job, job_id, now, created))
    row[_STATE], row[_ATTEMPTS] = RUNNING, 1
    row[_LEASE_TOKEN], row[_LEASE_OWNER], row[_LEASED_UNTIL] = token, owner, until
    return tuple(row)


def _job_of_row(row: tuple[Any, ...]) -> Job:
    """The :class:`Job` of a row in ``job_inserts.COLUMNS`` order, as a claim returns it."""
    return Job(**dict(zip(JOB_INSERT_COLUMNS, row, strict=True)))


def _clipped(note: str | None) -> str | None:
    return None if note is None else clip_error(note)


def _require_aware(moments: Iterable[datetime]) -> None:
    if any(moment.tzinfo is None for moment in moments):
        raise ValueError("run_at must be timezone-aware")


def _holding(leases: Sequence[Lease]) -> ColumnElement[bool]:
    if len(leases) == 1:  # the common case, as plain equalities
        return and_(jobs.c.id == leases[0].job_id, jobs.c.lease_token == leases[0].token)
    # One term per lease token, ``lease_token = ? AND id IN (...)``: a claim gives all its
    # jobs one token, so a batch holds few. Exact (each id with its own token), a search
    # of the primary key on both databases (SQLite scans the whole table, done jobs
    # included, for a row-value IN), and one bound value per job where a row-value IN
    # had three (SQLAlchemy processes each in Python).
    by_token: dict[str, list[str]] = {}
    for lease in leases:
        by_token.setdefault(lease.token, []).append(lease.job_id)
    terms = [
        and_(jobs.c.lease_token == token, jobs.c.id.in_(ids)) for token, ids in by_token.items()
    ]
    return terms[0] if len(terms) == 1 else or_(*terms)


def _scoped(org_id: int | Collection[int] | None) -> list[ColumnElement[bool]]:
    if org_id is None:
        return []
    if isinstance(org_id, int):
        return [jobs.c.org_id == org_id]
    return [jobs.c.org_id.in_(sorted(org_id))]


def _filters(state: JobState | None, kind: str | None, queue: str | None) -> list[Any]:
    conditions: list[Any] = []
    if state is not None:
        conditions.append(jobs.c.state == state)
    if kind is not None:
        conditions.append(jobs.c.kind == kind)
    if queue is not None:
        conditions.append(jobs.c.queue == queue)
    return conditions


def _job_of(row: Any) -> Job:
    values = {name: row[name] for name in Job.__dataclass_fields__}
    values["state"] = JobState(values["state"])
    return Job(**values)
