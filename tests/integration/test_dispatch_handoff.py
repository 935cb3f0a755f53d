"""New jobs handed from the dispatcher to the worker of the same process (engine.handoff):
inserted already leased, taken without a claim, and still jobs like any other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete
from tests.integration.delivery_helpers import (
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
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.queue.jobs import Job, JobState, NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services.container import Services
from junctionbox.store.queries import dispatch
from junctionbox.store.queries.delivery_attempts import Position
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
        self.taken: list[tuple[list[Job], dict[Position, StoredEvent], int]] = []

    def reserve(self, wanted: int) -> int:
        granted = min(wanted, self.room)
        self.room -= granted
        return granted

    def take(
        self, jobs: Sequence[Job], events: Mapping[Position, StoredEvent], reserved: int
    ) -> None:
        self.room += reserved
        self.taken.append((list(jobs), dict(events), reserved))


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
    await add_matching_integration(svc, 100, "orders")
    placed = await publish_as(svc, 100, [order(1), order(2), order(3)])
    handoff = RecordingHandoff(room=2)

    assert await dispatcher(svc, handoff=handoff).dispatch_pending() == 3

    [(taken, events, reserved)] = handoff.taken
    assert (len(taken), reserved, handoff.room) == (2, 2, 2)  # the room is given back
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
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


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


async def test_the_worker_delivers_jobs_handed_over_with_their_events_without_reading_them(
    worker_svc: Services, sink: RecordingSink
) -> None:
    """The job is inserted running (no claim can take it) and its event is gone from the
    log: delivered all the same, so the worker used the event it was handed."""
    svc = worker_svc
    stored = await add_integration(svc, sink.url("/hook"))
    [event] = await publish(svc, payload=b'{"orderId": 7}')
    delivery = delivery_of(stored, event)
    new = NewJob(
        DELIVERY_JOB_KIND,
        delivery.to_payload(),
        queue=DELIVERY_QUEUE,
        org_id=event.org_id,
        dedupe_key=f"dlv:{delivery.message_id}",
    )
    async with svc.db.read() as conn:
        position = (event.org_id, event.ref.stream, event.ref.partition, event.ref.offset)
        _, found = await stamps_and_events(conn, [], [position])
    worker = DeliveryWorker(svc, node_id="handoff-node")
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await _until(lambda: worker.reserve(1) == 1)
        async with svc.db.write() as conn:
            await conn.execute(delete(events_table))
            leased = await svc.queue.enqueue_leased(conn, [new], worker.owner, worker.lease_seconds)
        worker.take(leased, found, reserved=1)
        await _until(lambda: len(sink.requests) == 1)
        [request] = sink.requests
        assert request.body == b'{"orderId": 7}'
        [job] = leased

        async def done() -> bool:
            found = await svc.queue.get(job.id)
            return found is not None and found.state is JobState.DONE

        for _ in range(500):
            if await done():
                break
            await asyncio.sleep(0.02)
        assert await done()
    finally:
        stop.set()
        await running
    [row] = await log_rows(svc, job_id=job.id)
    assert (row["status"], row["attempt_count"]) == ("SUCCESS", 1)


async def test_a_worker_that_is_not_running_takes_nothing(worker_svc: Services) -> None:
    worker = DeliveryWorker(worker_svc, node_id="handoff-node")
    assert worker.reserve(10) == 0
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await _until(lambda: worker.reserve(1) == 1)
    worker.take([], {}, reserved=1)
    stop.set()
    await running
    assert worker.reserve(10) == 0
