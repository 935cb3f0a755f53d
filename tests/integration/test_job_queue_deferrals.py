"""Deferring claimed jobs without spending their attempt, batched retries, and the idle
check, on SQLite and PostgreSQL (an injected clock, no sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.queue_helpers import Clock

from junctionbox.queue import JobQueue, JobState, Lease, NewJob
from junctionbox.store.database import Database

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
Q = "deferrals"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def queue(db_url: str, clock: Clock) -> AsyncIterator[JobQueue]:
    db = Database(db_url)
    job_queue = JobQueue(db, clock=clock)
    yield job_queue
    await job_queue.close()
    await db.dispose()


async def enqueue(queue: JobQueue, count: int) -> list[str]:
    return await queue.enqueue_now([NewJob("delivery", {"n": n}, queue=Q) for n in range(count)])


async def test_a_deferred_job_waits_and_keeps_its_attempt(queue: JobQueue, clock: Clock) -> None:
    [job_id] = await enqueue(queue, 1)
    [claimed] = await queue.claim(Q, "w1", 1, 30)
    assert claimed.attempts == 1
    assert await queue.defer(job_id, claimed.lease.token, T0 + timedelta(seconds=5))
    waiting = await queue.get(job_id)
    assert waiting is not None
    assert (waiting.state, waiting.attempts, waiting.lease_token) == (JobState.READY, 0, None)
    assert await queue.claim(Q, "w1", 1, 30) == []
    clock.advance(5)
    [again] = await queue.claim(Q, "w1", 1, 30)
    assert again.attempts == 1  # the deferral did not count


async def test_defer_is_fenced_by_the_lease(queue: JobQueue, clock: Clock) -> None:
    [job_id] = await enqueue(queue, 1)
    [claimed] = await queue.claim(Q, "w1", 1, 30)
    clock.advance(31)  # the lease expired; another worker takes the job
    [taken] = await queue.claim(Q, "w2", 1, 30)
    assert not await queue.defer(job_id, claimed.lease.token, T0)
    current = await queue.get(job_id)
    assert current is not None
    assert (current.state, current.lease_token) == (JobState.RUNNING, taken.lease_token)


async def test_defer_many_sets_each_time_and_notes(queue: JobQueue, clock: Clock) -> None:
    ids = await enqueue(queue, 3)
    claimed = {j.id: j for j in await queue.claim(Q, "w1", 3, 30)}
    first, second, third = (claimed[i] for i in ids)
    stale = Lease(third.id, "not-the-token")
    when = {first.id: T0 + timedelta(seconds=1), second.id: T0 + timedelta(seconds=2)}
    deferred = await queue.defer_many(
        [(first.lease, when[first.id]), (second.lease, when[second.id]), (stale, T0)],
        notes={first.id: "rate limited"},
    )
    assert deferred == {first.id, second.id}
    for job_id in (first.id, second.id):
        job = await queue.get(job_id)
        assert job is not None
        assert (job.state, job.attempts, job.run_at) == (JobState.READY, 0, when[job_id])
    noted, plain = await queue.get(first.id), await queue.get(second.id)
    assert noted is not None
    assert plain is not None
    assert (noted.last_error, plain.last_error) == ("rate limited", None)
    untouched = await queue.get(third.id)
    assert untouched is not None
    assert untouched.state is JobState.RUNNING


async def test_retry_many_keeps_attempts_and_sets_errors(queue: JobQueue, clock: Clock) -> None:
    ids = await enqueue(queue, 2)
    claimed = {j.id: j for j in await queue.claim(Q, "w1", 2, 30)}
    a, b = (claimed[i] for i in ids)
    later = T0 + timedelta(seconds=10)
    retried = await queue.retry_many([(a.lease, later, "HTTP 503"), (b.lease, T0, "ECONNRESET")])
    assert retried == {a.id, b.id}
    job_a, job_b = await queue.get(a.id), await queue.get(b.id)
    assert job_a is not None
    assert job_b is not None
    assert (job_a.attempts, job_a.run_at, job_a.last_error) == (1, later, "HTTP 503")
    assert (job_b.attempts, job_b.run_at, job_b.last_error) == (1, T0, "ECONNRESET")


async def test_naive_times_are_refused(queue: JobQueue) -> None:
    [job_id] = await enqueue(queue, 1)
    [claimed] = await queue.claim(Q, "w1", 1, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        await queue.defer(job_id, claimed.lease.token, datetime(2030, 1, 1))


async def test_unfinished_counts_running_and_due_jobs(queue: JobQueue, clock: Clock) -> None:
    assert await queue.unfinished(Q) == 0
    ids = await enqueue(queue, 2)
    [claimed] = await queue.claim(Q, "w1", 1, 30)
    assert await queue.unfinished(Q) == 2
    assert await queue.defer(claimed.id, claimed.lease.token, T0 + timedelta(hours=1))
    assert await queue.unfinished(Q) == 2
    assert await queue.unfinished(Q, due_before=T0 + timedelta(minutes=1)) == 1
    [other] = await queue.claim(Q, "w1", 1, 30)
    assert other.id in ids
    assert await queue.complete(other.id, other.lease.token)
    assert await queue.unfinished(Q, due_before=T0) == 0
    assert await queue.unfinished("another-queue") == 0
