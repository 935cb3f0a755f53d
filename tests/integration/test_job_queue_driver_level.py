"""The queue's driver-level claim and transitions (``queue.driver_sql``) on real SQLite and
PostgreSQL: what they write reads back through SQLAlchemy exactly as SQLAlchemy would have
written it, every move of ``settle`` is fenced job by job, and expired leases are reaped
within ``REAP_EVERY``. Time runs on an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from tests.integration.queue_helpers import Clock

from junctionbox.queue import Job, JobQueue, JobState, Lease, NewJob
from junctionbox.queue.driver_sql import sql_for
from junctionbox.queue.store import LEASE_EXPIRED, REAP_EVERY
from junctionbox.store.database import Database
from junctionbox.store.tables import jobs

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
Q = "default"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def queue(db: Database, clock: Clock) -> AsyncIterator[JobQueue]:
    job_queue = JobQueue(db, clock=clock)
    yield job_queue
    await job_queue.close()


def job(n: int, **options: object) -> NewJob:
    payload = {"n": n, "nested": {"list": [1, 2.5, None, "é"]}, "flag": True}
    return NewJob("delivery", payload, **options)  # type: ignore[arg-type]


async def stored(queue: JobQueue, job_id: str) -> Job:
    found = await queue.get(job_id)
    assert found is not None
    return found


async def test_claimed_jobs_equal_what_sqlalchemy_reads_back(queue: JobQueue) -> None:
    await queue.enqueue_now([job(1, org_id=7, priority=3, ordering_key="k", dedupe_key="d")])
    await queue.enqueue_now([job(2)])
    claimed = await queue.claim(Q, "w1", 10, 30)
    assert [j.payload["n"] for j in claimed] == [1, 2]  # priority first
    for one in claimed:
        assert one == await queue.get(one.id)
        assert one.state is JobState.RUNNING
        assert one.leased_until == T0 + timedelta(seconds=30)
        assert one.attempts == 1


async def test_settle_fences_each_job_and_moves_each_kind(
    db: Database, queue: JobQueue, clock: Clock
) -> None:
    await queue.enqueue_now([job(n) for n in range(6)])
    first = await queue.claim(Q, "w1", 3, 30)
    second = await queue.claim(Q, "w2", 3, 30)  # another token
    done, retried, dead = first
    deferred, noted, released = second
    later = T0 + timedelta(seconds=90, microseconds=7)
    async with db.write() as conn:
        await conn.execute(jobs.update().where(jobs.c.id == noted.id).values(last_error="before"))
    clock.advance(1)
    kept = await queue.settle(
        None,
        done=[done.lease, Lease(retried.id, "stale-token")],
        retries=[(retried.lease, later, "x" * 5000)],
        dead=[(dead.lease, "gone")],
        deferrals=[(deferred.lease, later), (noted.lease, later)],
        notes={noted.id: "busy"},
        released=[released.lease],
    )
    assert kept == {j.id for j in first + second}
    now = clock.now
    got = {j.id: await stored(queue, j.id) for j in first + second}
    assert all(
        g is not None and g.lease_token is None and g.leased_until is None for g in got.values()
    )
    assert (got[done.id].state, got[done.id].finished_at) == (JobState.DONE, now)
    assert got[retried.id].state is JobState.READY
    assert got[retried.id].run_at == later
    assert len(got[retried.id].last_error or "") == 4000
    assert got[retried.id].attempts == 1
    assert (got[dead.id].state, got[dead.id].last_error) == (JobState.DEAD, "gone")
    assert (got[deferred.id].attempts, got[deferred.id].run_at) == (0, later)
    assert got[deferred.id].last_error is None
    assert got[noted.id].last_error == "busy"
    assert (got[released.id].state, got[released.id].attempts) == (JobState.READY, 0)
    assert got[released.id].run_at == T0
    assert all(g.updated_at == now for g in got.values())
    # A second settle of the same leases finds none of them ours any more.
    assert await queue.settle(None, done=[j.lease for j in first + second]) == set()


async def test_driver_written_times_compare_as_sqlalchemys(
    db: Database, queue: JobQueue, clock: Clock
) -> None:
    """SQLite keeps times as text: the driver-level text must sort and compare exactly as
    the text SQLAlchemy writes (microseconds included)."""
    [one] = await queue.enqueue_now([job(1)])
    [claimed] = await queue.claim(Q, "w1", 1, 30)
    due = T0 + timedelta(seconds=5, microseconds=1)
    assert await queue.retry(one, claimed.lease.token, due, "503")
    async with db.read() as conn:
        query = select(jobs.c.id).where(jobs.c.run_at <= due - timedelta(microseconds=1))
        assert (await conn.execute(query)).all() == []
        query = select(jobs.c.id).where(jobs.c.run_at <= due)
        assert [row.id for row in await conn.execute(query)] == [one]
    clock.now = due - timedelta(microseconds=1)
    assert await queue.claim(Q, "w1", 1, 30) == []
    clock.now = due
    assert [j.id for j in await queue.claim(Q, "w1", 1, 30)] == [one]


async def test_a_full_claim_leaves_expired_leases_for_up_to_reap_every(
    queue: JobQueue, clock: Clock
) -> None:
    await queue.enqueue_now([job(1, priority=1), job(2), job(3), job(4)])
    [first] = await queue.claim(Q, "w1", 1, 0.5)  # reaps (nothing) at T0
    clock.advance(0.6)  # its lease ran out, but the last reap was 0.6 s ago
    assert [j.payload["n"] for j in await queue.claim(Q, "w2", 1, 30)] == [2]
    assert (await stored(queue, first.id)).state is JobState.RUNNING  # not reaped yet
    clock.now = T0 + REAP_EVERY  # reaps first again: the expired job's priority counts
    [again] = await queue.claim(Q, "w2", 1, 30)
    assert (again.id, again.attempts, again.last_error) == (first.id, 2, LEASE_EXPIRED)
    assert not await queue.complete(first.id, first.lease.token)


async def test_a_claim_short_of_due_jobs_reaps_at_once(queue: JobQueue, clock: Clock) -> None:
    await queue.enqueue_now([job(1, priority=1), job(2)])
    [first] = await queue.claim(Q, "w1", 1, 0.5)  # reaps (nothing) at T0
    clock.advance(0.6)
    claimed = await queue.claim(Q, "w2", 5, 30)  # one due job for five places
    assert [j.payload["n"] for j in claimed] == [1, 2]
    assert (claimed[0].id, claimed[0].attempts) == (first.id, 2)


async def test_a_claim_short_of_due_jobs_dead_letters_an_expired_last_attempt(
    queue: JobQueue, clock: Clock
) -> None:
    await queue.enqueue_now([job(1, max_attempts=1)])
    [first] = await queue.claim(Q, "w1", 1, 0.5)
    clock.advance(0.6)
    assert await queue.claim(Q, "w2", 1, 30) == []
    dead = await stored(queue, first.id)
    assert (dead.state, dead.finished_at) == (JobState.DEAD, clock.now)


def test_placeholders_per_dialect() -> None:
    text = "a = ? AND b < ?::timestamptz AND c = ANY(?::text[])"
    assert sql_for("sqlite", text) == "a = ? AND b < ? AND c = ANY(?)"
    assert sql_for("postgresql", text) == "a = $1 AND b < $2::timestamptz AND c = ANY($3::text[])"


@pytest.mark.parametrize("count", [1, 3, 4, 5, 12])
async def test_enqueues_of_every_size_read_back_alike_and_skip_taken_keys(
    queue: JobQueue, count: int
) -> None:
    # PostgreSQL sends a few rows as scalar parameters and more as arrays (pg_rows).
    await queue.enqueue_now([job(0, dedupe_key="taken")])
    batch = [job(n, org_id=n, priority=n % 3, dedupe_key=f"d{n}") for n in range(1, count)]
    ids = await queue.enqueue_now([*batch, job(99, dedupe_key="taken")])
    assert len(set(ids)) == count
    for new, job_id in zip(batch, ids, strict=False):
        found = await stored(queue, job_id)
        assert (found.payload, found.org_id, found.priority) == (
            new.payload,
            new.org_id,
            new.priority,
        )
    taken = await stored(queue, ids[-1])
    assert taken.payload["n"] == 0  # the older job holding the key
