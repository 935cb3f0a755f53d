"""New jobs handed from the dispatcher to the worker of the same process (engine.handoff):
inserted already leased, taken without a claim, and still jobs like any other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Executable, delete
from tests.integration.delivery_helpers import (
    Published,
    add_integration,
    delivery_of,
    log_rows,
    publish,
    tenant_services,
)
from tests.integration.dispatch_helpers import add_integration as add_matching_integration
from tests.integration.dispatch_helpers import (
    delivery_jobs,
    dispatcher,
    make_tenants,
    order,
    payload_of,
    publish_as,
)

from junctionbox.domain.delivery import DELIVERY_JOB_KIND, DELIVERY_QUEUE
from junctionbox.domain.events import StoredEvent
from junctionbox.domain.outbound import StoredIntegration
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.engine.handoff import Known
from junctionbox.queue.jobs import Job, JobState, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services.container import Services
from junctionbox.store.queries import dispatch
from junctionbox.store.queries.delivery_attempts import Position
from junctionbox.store.queries.integrations import save_integration
from junctionbox.store.queries.worker_reads import stamps_and_events
from junctionbox.store.tables import events as events_table
from junctionbox.store.types import utcnow
from junctionbox.testing import RecordingSink


class RecordingHandoff:
    """The worker's side of the hand-over, recording what the dispatcher gives it."""

    owner = "handoff-test"
    lease_seconds = 30.0

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken: list[tuple[list[Job], Known, int]] = []

    def reserve(self, wanted: int) -> int:
        granted = min(wanted, self.room)
        self.room -= granted
        return granted

    def take(self, jobs: Sequence[Job], known: Known, reserved: int) -> None:
        self.room += reserved
        self.taken.append((list(jobs), known, reserved))


def _job(n: int, **fields: object) -> NewJob:
    return NewJob(
        DELIVERY_JOB_KIND,
        {"n": n},
        queue=DELIVERY_QUEUE,
        org_id=100,
        dedupe_key=fields.pop("dedupe_key", f"dlv:test-{n}"),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- the queue


async def test_jobs_inserted_leased_run_under_their_lease_and_nobody_else_claims_them(
    services: Services,
) -> None:
    queue = services.queue
    async with services.db.write() as conn:
        leased = await queue.enqueue_leased(conn, [_job(1), _job(2)], "node-a", 30)
    assert [job.state for job in leased] == [JobState.RUNNING] * 2
    assert {(job.attempts, job.lease_owner) for job in leased} == {(1, "node-a")}
    assert len({job.lease_token for job in leased}) == 1
    stored = await queue.get(leased[0].id)
    assert stored is not None
    assert (stored.state, stored.lease_token, stored.attempts) == (
        JobState.RUNNING,
        leased[0].lease_token,
        1,
    )
    assert await queue.claim(DELIVERY_QUEUE, "node-b", 10, 30) == []
    assert not await queue.complete(leased[0].id, "not-the-token")
    assert await queue.complete(leased[0].id, leased[0].lease.token)


async def test_a_leased_job_whose_worker_died_is_claimed_again_on_its_next_attempt(
    services: Services,
) -> None:
    async with services.db.write() as conn:
        [leased] = await services.queue.enqueue_leased(conn, [_job(1)], "node-a", 30)
    later = JobQueue(services.db, clock=lambda: utcnow() + timedelta(minutes=5))
    try:
        [again] = await later.claim(DELIVERY_QUEUE, "node-b", 10, 30)
    finally:
        await later.close()
    assert (again.id, again.attempts, again.lease_owner) == (leased.id, 2, "node-b")


async def test_a_job_whose_dedupe_key_is_taken_is_neither_inserted_nor_leased(
    services: Services,
) -> None:
    async with services.db.write() as conn:
        [existing] = await services.queue.enqueue(conn, [_job(1)])
        leased = await services.queue.enqueue_leased(conn, [_job(1), _job(2)], "node-a", 30)
    assert [job.payload for job in leased] == [{"n": 2}]
    stored = await services.queue.get(existing)
    assert stored is not None
    assert stored.state is JobState.READY


# ---------------------------------------------------------------- the dispatcher


@pytest.fixture
async def svc(services: Services) -> Services:
    await make_tenants(services)
    return services


async def test_the_dispatcher_leases_what_the_worker_has_room_for_and_queues_the_rest(
    svc: Services,
) -> None:
    hook = await add_matching_integration(svc, 100, "orders")
    placed = await publish_as(svc, 100, [order(1), order(2), order(3)])
    handoff = RecordingHandoff(room=2)

    assert await dispatcher(svc, handoff=handoff).dispatch_pending() == 3

    [(taken, known, reserved)] = handoff.taken
    assert (len(taken), reserved, handoff.room) == (2, 2, 2)  # the room is given back
    assert known.stamps == {hook.id: (hook.version, hook.updated_at, True)}
    events = known.events
    jobs = await delivery_jobs(svc)
    running = [job for job in jobs if job.state is JobState.RUNNING]
    assert sorted(job.id for job in running) == sorted(job.id for job in taken)
    assert {(job.lease_owner, job.attempts) for job in running} == {("handoff-test", 1)}
    assert [job.state for job in jobs].count(JobState.READY) == 1  # for a claim
    by_offset = {event.offset: event for event in events.values()}
    for job in taken:
        offset = payload_of(job).event.offset
        assert by_offset[offset].event_id == next(p["id"] for p in placed if p["offset"] == offset)


async def test_jobs_with_an_ordering_key_or_a_delay_are_left_to_the_claim(svc: Services) -> None:
    await add_matching_integration(
        svc, 100, "fifo", ordering={"mode": "FIFO", "key": "data.customerId"}
    )
    await add_matching_integration(
        svc, 100, "later", schedulingMode="DELAYED", schedulingConfig={"delayMs": 60_000}
    )
    await publish_as(svc, 100, [order(1)])
    handoff = RecordingHandoff(room=10)

    await dispatcher(svc, handoff=handoff).dispatch_pending()

    assert all(not taken for taken, _, _ in handoff.taken)
    assert all(job.state is JobState.READY for job in await delivery_jobs(svc))


async def test_a_batch_that_fails_hands_nothing_over_and_gives_the_room_back(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_matching_integration(svc, 100, "orders")
    await publish_as(svc, 100, [order(1), order(2)])
    handoff = RecordingHandoff(room=5)

    async def crash(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("killed between the jobs and the offset")

    monkeypatch.setattr(dispatch, "advance", crash)
    with pytest.raises(RuntimeError):
        await dispatcher(svc, handoff=handoff).dispatch_pending()

    assert [(taken, reserved) for taken, _, reserved in handoff.taken] == [([], 2)]
    assert handoff.room == 5
    assert await delivery_jobs(svc) == []  # rolled back with the batch


# ---------------------------------------------------------------- the worker


@pytest.fixture
async def worker_svc(db_url: str, tmp_path: Path, sink: RecordingSink) -> AsyncIterator[Services]:
    services = await tenant_services(db_url, tmp_path, [sink.allowlist_entry])
    yield services
    await services.close()


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(1000):  # at most 10 s
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


def _job_for(stored: StoredIntegration, event: Published) -> NewJob:
    delivery = delivery_of(stored, event)
    return NewJob(
        DELIVERY_JOB_KIND,
        delivery.to_payload(),
        queue=DELIVERY_QUEUE,
        org_id=event.org_id,
        dedupe_key=f"dlv:{delivery.message_id}",
    )


async def _events_of(svc: Services, events: Sequence[Published]) -> dict[Position, StoredEvent]:
    positions = [(e.org_id, e.ref.stream, e.ref.partition, e.ref.offset) for e in events]
    async with svc.db.read() as conn:
        _, found = await stamps_and_events(conn, [], positions)
    return found


@asynccontextmanager
async def running_worker(svc: Services, **options: Any) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(svc, node_id="handoff-node", **options)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await _until(lambda: worker.reserve(1) == 1)
        worker.take([], Known(), reserved=1)
        yield worker
    finally:
        stop.set()
        await running


async def _hand_over(
    svc: Services,
    worker: DeliveryWorker,
    jobs: Sequence[NewJob],
    known: Known,
    statements: Sequence[Executable] = (),
    *,
    inline: bool = False,
) -> list[Job]:
    """Lease ``jobs`` to the worker and hand them over, as the dispatcher does (after
    ``statements``, in the same transaction)."""
    reserved = 0

    def room() -> bool:  # none while the worker's own claim is out
        nonlocal reserved
        reserved = worker.reserve(len(jobs))
        if 0 < reserved < len(jobs):
            worker.take([], Known(), reserved)
        return reserved == len(jobs)

    await _until(room)
    async with svc.db.write(inline=inline) as conn:
        for statement in statements:
            await conn.execute(statement)
        leased = await svc.queue.enqueue_leased(conn, jobs, worker.owner, worker.lease_seconds)
    worker.take(leased, known, reserved)
    return leased


async def _until_done(svc: Services, job: Job) -> None:
    for _ in range(500):
        found = await svc.queue.get(job.id)
        if found is not None and found.state is JobState.DONE:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job.id} was not done")


async def test_the_worker_delivers_jobs_handed_over_with_their_events_without_reading_them(
    worker_svc: Services, sink: RecordingSink
) -> None:
    """The job is inserted running (no claim can take it) and its event is gone from the
    log: delivered all the same, so the worker used the event it was handed."""
    svc = worker_svc
    stored = await add_integration(svc, sink.url("/hook"))
    [event] = await publish(svc, payload=b'{"orderId": 7}')
    found = await _events_of(svc, [event])
    async with running_worker(svc) as worker:
        [job] = await _hand_over(
            svc, worker, [_job_for(stored, event)], Known(found), statements=[delete(events_table)]
        )
        await _until(lambda: len(sink.requests) == 1)
        assert sink.requests[0].body == b'{"orderId": 7}'
        await _until_done(svc, job)
    [row] = await log_rows(svc, job_id=job.id)
    assert (row["status"], row["attempt_count"]) == ("SUCCESS", 1)


async def test_a_handed_job_whose_integration_is_cached_at_the_dispatchers_stamp_is_not_read(
    worker_svc: Services, sink: RecordingSink
) -> None:
    """After the first delivery the worker has the integration cached. The integration is
    then moved to another URL, but the second job is handed over with the stamp of before
    (as a dispatcher that read it just before the change would): a read would find the new
    stamp and load the new URL, so a delivery to the old one shows that nothing was read."""
    svc = worker_svc
    stored = await add_integration(svc, sink.url("/hook"))
    first, second = await publish(svc, 2)
    found = await _events_of(svc, [first, second])
    async with running_worker(svc) as worker:
        await _hand_over(svc, worker, [_job_for(stored, first)], Known(found))
        await _until(lambda: len(sink.requests) == 1)
        async with svc.db.write() as conn:
            moved = replace(stored.integration, target_url=sink.url("/moved"))
            await save_integration(
                conn, svc.secretbox, stored, moved, change="UPDATED", actor=None, now=utcnow()
            )
        stamp = {stored.id: (stored.version, stored.updated_at, True)}
        [job] = await _hand_over(svc, worker, [_job_for(stored, second)], Known(found, stamp))
        await _until(lambda: len(sink.requests) == 2)
        await _until_done(svc, job)
    assert [request.path for request in sink.requests] == ["/hook", "/hook"]


async def test_a_handed_job_that_needs_no_read_starts_in_the_hand_over_itself(
    worker_svc: Services, sink: RecordingSink
) -> None:
    """With its event, its integration cached at the stamp handed over and its breaker
    fresh, a job takes its slot in the dispatcher's call, before the event loop turns (no
    wake-up of the claim loop in between)."""
    svc = worker_svc
    stored = await add_integration(svc, sink.url("/hook"))
    first, second = await publish(svc, 2)
    found = await _events_of(svc, [first, second])
    stamp = {stored.id: (stored.version, stored.updated_at, True)}
    async with running_worker(svc) as worker:
        await _hand_over(svc, worker, [_job_for(stored, first)], Known(found, stamp))
        await _until(lambda: len(sink.requests) == 1)  # the integration is cached now
        await _until(lambda: worker._running == 0)
        [job] = await _hand_over(svc, worker, [_job_for(stored, second)], Known(found, stamp))
        assert worker._running == 1
        await _until_done(svc, job)
    assert len(sink.requests) == 2


async def test_a_queue_wake_up_that_comes_with_handed_jobs_is_not_lost(
    worker_svc: Services, sink: RecordingSink, backend: str
) -> None:
    """A job enqueued for a claim and a job handed over, both before the worker's next
    step: the wake-up that the first one gave must still lead to a claim (the poll, 30 s
    here, is not what finds it). SQLite's inline writes make the two land in one step."""
    if backend != "sqlite":
        pytest.skip("only inline writes (SQLite) put both in one step of the loop")
    svc = worker_svc
    stored = await add_integration(svc, sink.url("/hook"))
    first, second = await publish(svc, 2)
    found = await _events_of(svc, [second])
    async with running_worker(svc, poll_seconds=30) as worker:
        await _until(lambda: worker.reserve(1) == 1)
        worker.take([], Known(), reserved=1)  # the worker sleeps: its first claim was empty
        async with svc.db.write(inline=True) as conn:
            await svc.queue.enqueue(conn, [_job_for(stored, first)])
        await _hand_over(svc, worker, [_job_for(stored, second)], Known(found), inline=True)
        await _until(lambda: len(sink.requests) == 2)


async def test_a_worker_that_is_not_running_takes_nothing(worker_svc: Services) -> None:
    worker = DeliveryWorker(worker_svc, node_id="handoff-node")
    assert worker.reserve(10) == 0
    async with running_worker(worker_svc) as running:
        assert running.reserve(1) == 1
        running.take([], Known(), reserved=1)
    assert running.reserve(10) == 0
