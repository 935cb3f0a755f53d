"""The durable job queue on real SQLite and PostgreSQL.

Time-based behaviour (leases, retries, ages) runs on an injected clock, never on sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from tests.integration.queue_helpers import Clock

from junctionbox.domain.paging import PageRequest
from junctionbox.queue import Job, JobQueue, JobState, Lease, NewJob
from junctionbox.queue.jobs import ClaimRequest
from junctionbox.queue.store import EXPIRED_ON_LAST_ATTEMPT, LEASE_EXPIRED
from junctionbox.store.database import Database

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
Q = "default"


class Abort(Exception):
    """Raised to roll a transaction back."""


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


def job(n: int = 0, **options: object) -> NewJob:
    return NewJob("delivery", {"n": n}, **options)  # type: ignore[arg-type]


async def claim_one(queue: JobQueue, owner: str = "w1", lease: float = 30) -> Job:
    claimed = await queue.claim(Q, owner, 1, lease)
    assert len(claimed) == 1, claimed
    return claimed[0]


async def numbers(queue: JobQueue, limit: int = 10) -> list[int]:
    """Claim up to ``limit`` jobs and return their payload numbers in claim order."""
    return [j.payload["n"] for j in await queue.claim(Q, "w1", limit, 30)]


# ---------------------------------------------------------------- the basic cycle


async def test_enqueue_claim_complete(queue: JobQueue, clock: Clock) -> None:
    [job_id] = await queue.enqueue_now([job(1, org_id=100)])
    ready = await queue.get(job_id)
    assert ready is not None
    assert (ready.state, ready.attempts, ready.run_at, ready.org_id) == (JobState.READY, 0, T0, 100)

    claimed = await claim_one(queue, "worker-a", lease=45)
    assert claimed.id == job_id
    assert claimed.payload == {"n": 1}
    assert (claimed.state, claimed.attempts, claimed.lease_owner) == (
        JobState.RUNNING,
        1,
        "worker-a",
    )
    assert claimed.leased_until == T0 + timedelta(seconds=45)
    assert await queue.claim(Q, "worker-b", 10, 30) == []

    clock.advance(2)
    assert await queue.complete(job_id, claimed.lease.token)
    done = await queue.get(job_id)
    assert done is not None
    assert (done.state, done.finished_at, done.lease_token) == (
        JobState.DONE,
        T0 + timedelta(seconds=2),
        None,
    )
    assert not await queue.complete(job_id, claimed.lease.token)  # only once
    assert await queue.claim(Q, "worker-b", 10, 30) == []


async def test_a_claim_gives_back_every_payload_as_stored(queue: JobQueue) -> None:
    """Claims on SQLite read their jobs back as one JSON document: payloads orjson refuses
    (an integer beyond 64 bits), unicode and nesting still come back as they went in."""
    payloads = [
        {"big": 2**70, "neg": -(2**65)},
        {
            "text": 'zaż\u00f3\u0142\u0107 \U0001f600 "quoted" \\ back',
            "nested": [{"a": [1, 2.5, None]}],
        },
        {"n": 3},
    ]
    ids = await queue.enqueue_now([NewJob("delivery", p) for p in payloads])
    claimed = {j.id: j for j in await queue.claim(Q, "w1", 10, 30)}
    assert [claimed[i].payload for i in ids] == payloads
    assert {j.state for j in claimed.values()} == {JobState.RUNNING}


async def test_enqueue_joins_the_callers_transaction(db: Database, queue: JobQueue) -> None:
    async def enqueue_then_fail() -> None:
        async with db.write() as conn:
            await queue.enqueue(conn, [job(1), job(2)])
            raise Abort

    with pytest.raises(Abort):
        await enqueue_then_fail()
    assert (await queue.depth())[JobState.READY] == 0

    async with db.write() as conn:
        ids = await queue.enqueue(conn, [job(1), job(2)])
    assert len(set(ids)) == 2
    assert (await queue.depth())[JobState.READY] == 2
    assert await queue.enqueue_now([]) == []


async def test_dedupe_key_makes_enqueue_idempotent(queue: JobQueue) -> None:
    first, same_in_batch, other_kind, no_key = await queue.enqueue_now(
        [
            job(1, dedupe_key="evt_1:int_1"),
            job(2, dedupe_key="evt_1:int_1"),
            NewJob("workflow_step", {}, dedupe_key="evt_1:int_1"),
            job(3),
        ]
    )
    assert first == same_in_batch
    assert len({first, other_kind, no_key}) == 3

    claimed = await claim_one(queue)
    assert claimed.id == first
    assert claimed.payload == {"n": 1}  # the first one wins
    assert await queue.complete(claimed.id, claimed.lease.token)
    again = await queue.enqueue_now([job(9, dedupe_key="evt_1:int_1"), job(4, dedupe_key="new")])
    assert again[0] == first  # even once the job is done
    assert again[1] not in {first, other_kind, no_key}
    assert (await queue.depth())[JobState.READY] == 3  # no_key, new, the workflow step


async def test_dedupe_holds_for_large_batches(queue: JobQueue) -> None:
    batch = [job(n, dedupe_key=f"evt_{n}") for n in range(1200)]
    first = await queue.enqueue_now(batch)
    assert len(set(first)) == 1200
    assert await queue.enqueue_now(batch[::-1]) == first[::-1]
    assert (await queue.depth())[JobState.READY] == 1200


# ---------------------------------------------------------------- concurrency


async def test_concurrent_claimers_never_share_a_job(queue: JobQueue) -> None:
    ids = await queue.enqueue_now([job(n) for n in range(60)])
    batches = await asyncio.gather(*(queue.claim(Q, f"w{i}", 7, 30) for i in range(6)))
    batches += await asyncio.gather(*(queue.claim(Q, f"w{i}", 7, 30) for i in range(6)))
    claimed = [j.id for batch in batches for j in batch]
    assert len(claimed) == len(set(claimed)) == 60
    assert set(claimed) == set(ids)


async def test_claimers_on_separate_engines_never_share_a_job(
    db_url: str, queue: JobQueue, clock: Clock
) -> None:
    other_db = Database(db_url)
    other = JobQueue(other_db, clock=clock)
    try:
        ids = await queue.enqueue_now([job(n) for n in range(80)])
        claimed: list[str] = []
        for _ in range(4):
            batches = await asyncio.gather(
                *(q.claim(Q, f"w{i}", 5, 30) for i in range(4) for q in (queue, other))
            )
            claimed += [j.id for batch in batches for j in batch]
        assert len(claimed) == len(set(claimed)) == 80
        assert set(claimed) == set(ids)
    finally:
        await other.close()
        await other_db.dispose()


async def test_concurrent_workers_keep_one_job_in_flight_per_key_in_order(
    queue: JobQueue,
) -> None:
    keys = [f"customer-{k}" for k in range(6)]
    await queue.enqueue_now(
        [
            NewJob("delivery", {"key": key, "n": n}, ordering_key=key)
            for n in range(5)
            for key in keys
        ]
    )
    in_flight: set[str] = set()
    finished: dict[str, list[int]] = {key: [] for key in keys}

    async def worker(name: str) -> None:
        idle = 0
        while idle < 3:
            claimed = await queue.claim(Q, name, 4, 30)
            idle = 0 if claimed else idle + 1
            for j in claimed:
                assert j.ordering_key not in in_flight
                in_flight.add(j.payload["key"])
            await asyncio.sleep(0)  # let the other workers claim meanwhile
            for j in claimed:
                in_flight.discard(j.payload["key"])
                finished[j.payload["key"]].append(j.payload["n"])
                assert await queue.complete(j.id, j.lease.token)

    await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    assert finished == {key: list(range(5)) for key in keys}


# ---------------------------------------------------------------- leases and fencing


async def test_expired_lease_is_claimed_again_and_the_old_token_is_fenced(
    queue: JobQueue, clock: Clock
) -> None:
    [job_id] = await queue.enqueue_now([job(1)])
    first = await claim_one(queue, "w1", lease=30)
    clock.advance(29)
    assert await queue.claim(Q, "w2", 10, 30) == []  # still leased

    clock.advance(2)
    second = await claim_one(queue, "w2", lease=30)
    assert second.id == job_id
    assert second.attempts == 2
    assert second.lease_owner == "w2"
    assert second.lease.token != first.lease.token
    assert second.last_error == LEASE_EXPIRED

    stale = first.lease.token
    assert not await queue.heartbeat(job_id, stale, 30)
    assert not await queue.complete(job_id, stale)
    assert not await queue.retry(job_id, stale, clock.now, "late")
    assert not await queue.dead_letter(job_id, stale, "late")
    assert not await queue.release(job_id, stale)
    assert await queue.complete(job_id, second.lease.token)


async def test_lease_expired_on_the_last_attempt_dead_letters(
    queue: JobQueue, clock: Clock
) -> None:
    [job_id] = await queue.enqueue_now([job(1, max_attempts=2)])
    await claim_one(queue)
    clock.advance(31)
    await claim_one(queue)  # attempt 2 of 2
    clock.advance(31)
    assert await queue.claim(Q, "w3", 10, 30) == []
    dead = await queue.get(job_id)
    assert dead is not None
    assert (dead.state, dead.attempts, dead.last_error) == (
        JobState.DEAD,
        2,
        EXPIRED_ON_LAST_ATTEMPT,
    )
    assert (dead.finished_at, dead.lease_token) == (clock.now, None)


async def test_heartbeat_extends_the_lease(queue: JobQueue, clock: Clock) -> None:
    await queue.enqueue_now([job(1), job(2)])
    first, second = await queue.claim(Q, "w1", 2, 30)
    clock.advance(20)
    assert await queue.heartbeat(first.id, first.lease.token, 30)
    extended = await queue.get(first.id)
    assert extended is not None
    assert extended.leased_until == clock.now + timedelta(seconds=30)

    clock.advance(20)  # 40 s after the claim: only the heartbeated lease is alive
    reclaimed = await queue.claim(Q, "w2", 10, 30)
    assert [j.id for j in reclaimed] == [second.id]
    held = await queue.heartbeat_many(
        [first.lease, second.lease, reclaimed[0].lease, Lease("job_missing", "x")], 30
    )
    assert held == {first.id, second.id}
    assert await queue.heartbeat_many([], 30) == set()


async def test_complete_many_acknowledges_only_current_leases(
    queue: JobQueue, clock: Clock
) -> None:
    await queue.enqueue_now([job(1), job(2), job(3)])
    one, two, three = await queue.claim(Q, "w1", 3, 30)
    assert await queue.heartbeat(three.id, three.lease.token, 60)
    clock.advance(31)
    one_again = await claim_one(queue, "w2")  # one's and two's leases expired
    assert one_again.id == one.id
    assert await queue.complete_many([]) == set()
    done = await queue.complete_many([one.lease, two.lease, three.lease, one_again.lease])
    assert done == {one.id, three.id}
    states = {j.id: j.state for j in (await queue.list(None, PageRequest())).items}
    assert states == {one.id: JobState.DONE, two.id: JobState.READY, three.id: JobState.DONE}


async def test_release_gives_the_job_back_without_counting_the_attempt(
    queue: JobQueue,
) -> None:
    [job_id] = await queue.enqueue_now([job(1)])
    claimed = await claim_one(queue)
    assert await queue.release(job_id, claimed.lease.token)
    again = await claim_one(queue)
    assert (again.id, again.attempts) == (job_id, 1)


# ---------------------------------------------------------------- retry and dead letters


async def test_retry_reschedules_into_the_future(queue: JobQueue, clock: Clock) -> None:
    [job_id] = await queue.enqueue_now([job(1)])
    claimed = await claim_one(queue)
    later = clock.now + timedelta(seconds=60)
    assert await queue.retry(job_id, claimed.lease.token, later, "HTTP 503")
    waiting = await queue.get(job_id)
    assert waiting is not None
    assert (waiting.state, waiting.run_at, waiting.last_error, waiting.lease_token) == (
        JobState.READY,
        later,
        "HTTP 503",
        None,
    )

    clock.advance(59)
    assert await queue.claim(Q, "w1", 10, 30) == []
    clock.advance(1)
    again = await claim_one(queue)
    assert (again.id, again.attempts) == (job_id, 2)


async def test_dead_letter_and_requeue(queue: JobQueue, clock: Clock) -> None:
    [job_id] = await queue.enqueue_now([job(1, org_id=100)])
    claimed = await claim_one(queue)
    assert await queue.dead_letter(job_id, claimed.lease.token, "HTTP 400")
    dead = await queue.get(job_id)
    assert dead is not None
    assert (dead.state, dead.last_error, dead.finished_at) == (JobState.DEAD, "HTTP 400", T0)
    assert await queue.claim(Q, "w1", 10, 30) == []

    assert await queue.requeue_dead([job_id], org_id=200) == []  # another tenant's job
    clock.advance(5)
    assert await queue.requeue_dead([job_id, job_id, "job_missing"], org_id=100) == [job_id]
    redriven = await claim_one(queue)
    assert (redriven.id, redriven.attempts, redriven.run_at) == (
        job_id,
        1,
        T0 + timedelta(seconds=5),
    )
    assert await queue.requeue_dead([job_id], org_id=None) == []  # running, not dead


async def test_cancel(queue: JobQueue) -> None:
    ready_id, running_id = await queue.enqueue_now([job(1, org_id=100), job(2, org_id=100)])
    running = await queue.claim(Q, "w1", 2, 30)
    assert not await queue.cancel(ready_id, org_id=200)  # invisible to another tenant
    assert await queue.cancel(running_id, org_id={100, 101})
    assert not await queue.cancel(running_id)  # already cancelled
    token = next(j.lease.token for j in running if j.id == running_id)
    assert not await queue.complete(running_id, token)  # the worker has lost its lease
    cancelled = await queue.get(running_id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED


async def test_complete_can_join_the_workers_transaction(db: Database, queue: JobQueue) -> None:
    [job_id] = await queue.enqueue_now([job(1)])
    claimed = await claim_one(queue)

    async def complete_then_fail() -> None:
        async with db.write() as conn:
            assert await queue.complete(job_id, claimed.lease.token, conn=conn)
            raise Abort  # e.g. writing the delivery log failed

    with pytest.raises(Abort):
        await complete_then_fail()
    still = await queue.get(job_id)
    assert still is not None
    assert still.state is JobState.RUNNING

    async with db.write() as conn:
        assert await queue.complete(job_id, claimed.lease.token, conn=conn)
    done = await queue.get(job_id)
    assert done is not None
    assert done.state is JobState.DONE


async def test_a_claim_in_a_rolled_back_transaction_never_happened(
    db: Database, queue: JobQueue
) -> None:
    """A worker claims its next batch in the transaction that records its last one: if
    that transaction fails, the jobs must still be there for anyone, attempts unspent."""
    [first, second] = await queue.enqueue_now([job(1), job(2)])
    running = await claim_one(queue)
    request = ClaimRequest(Q, "w1", 10, 30)

    async def record_claim_then_fail() -> None:
        async with db.write() as conn:
            assert await queue.complete(running.id, running.lease.token, conn=conn)
            assert [j.id for j in await queue.claim_in(conn, request)] == [second]
            raise Abort  # e.g. a listener failed

    with pytest.raises(Abort):
        await record_claim_then_fail()
    waiting = await queue.get(second)
    assert waiting is not None
    assert (waiting.state, waiting.attempts, waiting.lease_token) == (JobState.READY, 0, None)
    [taken] = await queue.claim(Q, "w2", 10, 30)
    assert (taken.id, taken.attempts, taken.lease_owner) == (second, 1, "w2")
    assert running.id == first


async def test_a_lease_taken_in_the_commit_transaction_is_honoured(
    db: Database, queue: JobQueue, clock: Clock
) -> None:
    [first, second] = await queue.enqueue_now([job(1), job(2)])
    running = await claim_one(queue)
    async with db.write() as conn:
        assert await queue.complete(running.id, running.lease.token, conn=conn)
        [claimed] = await queue.claim_in(conn, ClaimRequest(Q, "w1", 10, 30))
    assert (running.id, claimed.id) == (first, second)
    assert (claimed.state, claimed.attempts, claimed.lease_owner) == (JobState.RUNNING, 1, "w1")
    assert await queue.claim(Q, "w2", 10, 30) == []  # leased: nobody else takes it
    clock.advance(20)
    assert await queue.heartbeat_many([claimed.lease], 30) == {second}
    clock.advance(20)  # past the first lease, within the extended one
    assert await queue.claim(Q, "w2", 10, 30) == []
    assert not await queue.complete(second, "not-the-token")
    assert await queue.complete(second, claimed.lease.token)
    done = await queue.get(second)
    assert done is not None
    assert done.state is JobState.DONE


# ---------------------------------------------------------------- order


async def test_fifo_per_ordering_key(queue: JobQueue, clock: Clock) -> None:
    await queue.enqueue_now(
        [job(1, ordering_key="k"), job(2, ordering_key="k"), job(3, ordering_key="other")]
    )
    await queue.enqueue_now([job(4, ordering_key="k")])  # same clock reading, later call

    first = await queue.claim(Q, "w1", 10, 30)
    assert sorted(j.payload["n"] for j in first) == [1, 3]
    assert await queue.claim(Q, "w2", 10, 30) == []  # 2 waits while 1 runs

    one = next(j for j in first if j.payload["n"] == 1)
    assert await queue.retry(one.id, one.lease.token, clock.now + timedelta(seconds=60), "503")
    assert await queue.claim(Q, "w2", 10, 30) == []  # 2 waits while 1 waits for its retry

    three = next(j for j in first if j.payload["n"] == 3)
    assert await queue.complete(three.id, three.lease.token)
    clock.advance(60)
    one = await claim_one(queue)
    assert one.payload["n"] == 1
    assert await queue.complete(one.id, one.lease.token)
    two = await claim_one(queue)
    assert two.payload["n"] == 2
    assert await queue.dead_letter(two.id, two.lease.token, "400")
    assert await numbers(queue) == [4]  # a dead job holds nothing up


async def test_fifo_holds_across_many_enqueues_under_one_clock_reading(queue: JobQueue) -> None:
    for n in range(12):
        await queue.enqueue_now([job(n, ordering_key="k")])
    seen = []
    for _ in range(12):
        claimed = await claim_one(queue)
        seen.append(claimed.payload["n"])
        assert await queue.complete(claimed.id, claimed.lease.token)
    assert seen == list(range(12))


async def test_priority_first_then_due_time(queue: JobQueue, clock: Clock) -> None:
    await queue.enqueue_now(
        [
            job(1, priority=0),
            job(2, priority=10),
            job(3, priority=5),
            job(4, priority=10, run_at=T0 - timedelta(seconds=5)),
        ]
    )
    assert await numbers(queue, limit=1) == [4]
    assert await numbers(queue) == [2, 3, 1]


async def test_bad_arguments_are_refused(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="kinds"):
        await queue.claim(Q, "w1", 10, 30, kinds=[])
    with pytest.raises(ValueError, match="limit"):
        await queue.claim(Q, "w1", 0, 30)
    [job_id] = await queue.enqueue_now([job(1)])
    claimed = await claim_one(queue)
    with pytest.raises(ValueError, match="timezone"):
        await queue.retry(job_id, claimed.lease.token, datetime(2030, 1, 1), "x")  # naive


async def test_claim_filters_by_queue_and_kind(queue: JobQueue) -> None:
    await queue.enqueue_now(
        [
            NewJob("delivery", {"n": 1}),
            NewJob("schedule", {"n": 2}),
            NewJob("delivery", {"n": 3}, queue="bulk"),
        ]
    )
    assert [j.payload["n"] for j in await queue.claim(Q, "w", 10, 30, kinds=["schedule"])] == [2]
    assert [j.payload["n"] for j in await queue.claim("bulk", "w", 10, 30)] == [3]
    assert [j.payload["n"] for j in await queue.claim(Q, "w", 10, 30)] == [1]


# ---------------------------------------------------------------- waking up


async def test_wait_for_work_times_out_without_work(queue: JobQueue) -> None:
    assert not await queue.wait_for_work(0.05)


async def test_enqueue_wakes_a_waiter_after_commit(db: Database, queue: JobQueue) -> None:
    waiter = asyncio.create_task(queue.wait_for_work(30, queue=Q))
    other_queue = asyncio.create_task(queue.wait_for_work(0.2, queue="bulk"))
    await asyncio.sleep(0)
    async with db.write() as conn:
        await queue.enqueue(conn, [job(1)])
        await asyncio.sleep(0.05)
        assert not waiter.done()  # nothing visible yet: no wake-up
    assert await waiter
    assert await numbers(queue) == [1]  # woken, the job is there to claim
    assert not await other_queue


async def test_a_wakeup_before_the_wait_is_kept(queue: JobQueue) -> None:
    await queue.enqueue_now([job(1)])
    assert await queue.wait_for_work(30)


async def test_another_nodes_enqueue_wakes_a_waiter_on_postgresql_only(
    backend: str, db_url: str, queue: JobQueue, clock: Clock
) -> None:
    assert await queue.start_listening()
    assert not await queue.wait_for_work(0.01)
    other_db = Database(db_url)
    other = JobQueue(other_db, clock=clock)
    try:
        # On SQLite (one process by design) another engine's enqueue is found by polling.
        wait = 30 if backend == "postgres" else 0.2
        waiter = asyncio.create_task(queue.wait_for_work(wait, queue="bulk"))
        await asyncio.sleep(0)
        await other.enqueue_now([NewJob("delivery", {"n": 1}, queue="bulk")])
        assert await waiter is (backend == "postgres")
        assert [j.payload["n"] for j in await queue.claim("bulk", "w1", 10, 30)] == [1]
    finally:
        await other.close()
        await other_db.dispose()


async def test_the_listener_comes_back_after_losing_its_connection(
    backend: str, db: Database, queue: JobQueue
) -> None:
    if backend == "sqlite":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite wakes in-process only")
    assert await queue.start_listening()
    kill = text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
    )
    async with db.write() as conn:
        assert (await conn.execute(kill)).scalars().all() == [True]
    # Back after its retry pause, it wakes every waiter once (it may have missed a NOTIFY).
    assert await queue.wait_for_work(30)
    assert await queue.start_listening()
    waiter = asyncio.create_task(queue.wait_for_work(30, queue="bulk"))
    await asyncio.sleep(0)
    async with db.write() as conn:  # a NOTIFY only, as another node's enqueue sends it
        await conn.execute(text("SELECT pg_notify('jb_jobs', 'bulk')"))
    assert await waiter


# ---------------------------------------------------------------- introspection


async def test_depth_and_oldest_ready_age(queue: JobQueue, clock: Clock) -> None:
    assert await queue.oldest_ready_age(Q) is None
    await queue.enqueue_now([job(1), job(2), job(3, run_at=T0 + timedelta(hours=1)), job(4)])
    await queue.enqueue_now([NewJob("delivery", {}, queue="bulk")])
    clock.advance(10)
    claimed = await claim_one(queue)
    assert await queue.dead_letter(claimed.id, claimed.lease.token, "x")
    await claim_one(queue)

    depth = await queue.depth(Q)
    assert depth == {
        JobState.READY: 2,
        JobState.RUNNING: 1,
        JobState.DONE: 0,
        JobState.DEAD: 1,
        JobState.CANCELLED: 0,
    }
    assert (await queue.depth())[JobState.READY] == 3
    assert await queue.oldest_ready_age(Q) == 10.0  # job 4; job 3 is not due yet
    assert await queue.oldest_ready_age("bulk") == 10.0
    assert await queue.oldest_ready_age("nothing") is None


async def test_list_is_scoped_paged_and_filtered(queue: JobQueue) -> None:
    ids_a = await queue.enqueue_now([job(n, org_id=100) for n in range(5)])
    await queue.enqueue_now([job(9, org_id=200), NewJob("schedule", {}, org_id=101)])
    claimed = await claim_one(queue)

    first = await queue.list(100, PageRequest(page=1, limit=2))
    assert (first.total, first.has_more) == (5, True)
    assert [j.id for j in first.items] == ids_a[::-1][:2]  # newest first
    last = await queue.list(100, PageRequest(page=3, limit=2))
    assert ([j.id for j in last.items], last.has_more) == ([ids_a[0]], False)

    assert (await queue.list({100, 101}, PageRequest())).total == 6
    assert (await queue.list(None, PageRequest())).total == 7
    running = await queue.list(None, PageRequest(), state=JobState.RUNNING)
    assert [j.id for j in running.items] == [claimed.id]
    schedules = await queue.list(None, PageRequest(), kind="schedule")
    assert [j.org_id for j in schedules.items] == [101]
    assert await queue.get(ids_a[0], org_id=200) is None
    assert await queue.get(ids_a[0], org_id=100) is not None


async def test_purge_removes_only_old_done_and_cancelled_jobs(
    queue: JobQueue, clock: Clock
) -> None:
    ids = await queue.enqueue_now([job(n) for n in range(5)])
    claimed = await queue.claim(Q, "w1", 3, 30)
    done, dead, running = claimed
    assert await queue.complete(done.id, done.lease.token)
    assert await queue.dead_letter(dead.id, dead.lease.token, "x")
    cancelled, ready = (i for i in ids if i not in {j.id for j in claimed})
    assert await queue.cancel(cancelled)

    assert await queue.purge_finished(T0) == 0  # finished at T0, not before
    clock.advance(3600)
    [recent] = await queue.enqueue_now([NewJob("delivery", {}, queue="bulk")])
    [recent_job] = await queue.claim("bulk", "w1", 1, 30)
    assert await queue.complete(recent, recent_job.lease.token)

    assert await queue.purge_finished(T0 + timedelta(seconds=1), batch_size=1) == 2
    remaining = {j.id for j in (await queue.list(None, PageRequest())).items}
    assert remaining == {dead.id, running.id, ready, recent}
