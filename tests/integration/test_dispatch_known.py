"""PostgreSQL: batches of events this process appended, dispatched in one statement from
the dispatcher's memory (``Dispatcher._dispatch_known``, ``queries.dispatch_known``), and
every case in which that statement must write nothing and leave the batch to the usual way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select
from tests.integration.dispatch_helpers import (
    add_integration,
    delivery_jobs,
    dispatcher,
    make_tenants,
    order,
    publish_as,
    set_active,
)
from tests.integration.test_dispatch_handoff import RecordingHandoff

from junctionbox.domain.events import EventDraft, StoredEvent
from junctionbox.engine.dispatcher import GROUP, Dispatcher
from junctionbox.queue.jobs import Job, JobState
from junctionbox.services.container import Services
from junctionbox.services.fanout import Fanout
from junctionbox.store.pg_listener import PgListener, asyncpg_dsn
from junctionbox.store.queries import consumer_offsets, dispatch, events
from junctionbox.store.queries import dispatch_known as known_batches
from junctionbox.store.queries.dispatch_known import KnownBatch


@pytest.fixture
async def svc(services: Services) -> Services:
    if services.db.is_sqlite:
        pytest.skip("PostgreSQL's statement; on SQLite a batch is one inline transaction")
    await make_tenants(services)
    return services


class Statements:
    """Every run of the one statement, and what it did (the real statement, recorded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.results: list[KnownBatch] = []
        real = known_batches.dispatch_known

        async def recorded(driver: Any, dialect: Any, **given: Any) -> KnownBatch:
            found = await real(driver, dialect, **given)
            self.results.append(found)
            return found

        monkeypatch.setattr(known_batches, "dispatch_known", recorded)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Statements:
    return Statements(monkeypatch)


@asynccontextmanager
async def hearing(svc: Services, **options: Any) -> AsyncIterator[Dispatcher]:
    """A dispatcher that hears this process's appends (as a running one does)."""
    running = dispatcher(svc, **options)
    running._listen()
    try:
        yield running
    finally:
        await running._unlisten()


async def first_one_read(svc: Services, running: Dispatcher) -> None:
    """An event dispatched the usual way (no cursor yet): the dispatcher's cursor is known
    from here on."""
    await publish_as(svc, 101, [order(1)])
    await running.dispatch_pending()


async def committed(svc: Services, partition: int) -> int:
    async with svc.db.read() as conn:
        found = await consumer_offsets.positions(conn, 101, group=GROUP, stream="orders")
    return {p.partition: p.committed_offset for p in found}[partition]


def shape(job: Job) -> tuple[Any, ...]:
    return (job.kind, job.queue, job.org_id, job.max_attempts, job.ordering_key, job.dedupe_key)


async def test_announced_events_make_the_jobs_a_read_of_the_log_makes(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    await add_integration(svc, 101, "big orders", filter="event.data.total > 100")
    await add_integration(svc, 100, "fifo", ordering={"mode": "FIFO", "key": "data.customerId"})
    async with hearing(svc) as running:
        await publish_as(svc, 101, [order(1)])
        assert await running.dispatch_pending() == 1  # no cursor yet: the usual way
        assert statements.results == []
        placed = await publish_as(svc, 101, [order(2), order(3, total=50), order(4)])
        assert await running.dispatch_pending() == 3
    [found] = statements.results
    assert (found.held, found.fresh, found.moved) == (True, True, True)
    partition = placed[0]["partition"]
    assert await committed(svc, partition) == placed[-1]["offset"] + 1
    new = [job for job in await delivery_jobs(svc) if job.id in found.inserted]
    assert len(new) == len(found.inserted) == 3 + 2 + 3  # event 3 is not a big order
    async with svc.db.read() as conn:  # what the usual way plans from the log
        read = await events.read_after(conn, 101, "orders", partition, placed[0]["offset"] - 1, 9)
        planned = await Fanout(svc.queue).plan(conn, read)
    assert sorted(map(shape, new), key=repr) == sorted(
        (
            (j.kind, j.queue, j.org_id, j.max_attempts, j.ordering_key, j.dedupe_key)
            for j in planned.jobs
        ),
        key=repr,
    )
    assert {job.dedupe_key: job.payload for job in new} == {
        j.dedupe_key: dict(j.payload) for j in planned.jobs
    }
    assert all(job.state is JobState.READY for job in new)


async def test_events_published_without_ids_plan_as_they_read(
    svc: Services, statements: Statements
) -> None:
    """Ids made at the door: the append's fast path makes the events announced."""
    await add_integration(svc, 101, "big orders", filter="event.data.total > 100")
    await add_integration(svc, 100, "fifo", ordering={"mode": "FIFO", "key": "data.customerId"})

    def unnamed(n: int, **fields: Any) -> dict[str, Any]:
        event = order(n, **fields)
        del event["id"]
        return event

    announced: list[StoredEvent] = []
    async with hearing(svc) as running:
        await publish_as(svc, 101, [unnamed(1)])
        await running.dispatch_pending()
        svc.event_log.listeners.append(announced.extend)
        placed = await publish_as(svc, 101, [unnamed(2), unnamed(3, total=5), unnamed(4)])
        assert await running.dispatch_pending() == 3
    [found] = statements.results
    new = [job for job in await delivery_jobs(svc) if job.id in found.inserted]
    partition = placed[0]["partition"]
    async with svc.db.read() as conn:
        read = await events.read_after(conn, 101, "orders", partition, placed[0]["offset"] - 1, 9)
        planned = await Fanout(svc.queue).plan(conn, read)
    assert announced == read  # what the dispatcher planned from is what the log holds
    assert len(new) == len(planned.jobs) == 2 + 3
    assert {job.dedupe_key: (job.payload, job.ordering_key) for job in new} == {
        j.dedupe_key: (dict(j.payload), j.ordering_key) for j in planned.jobs
    }


async def test_a_batch_larger_than_the_dispatchers_goes_in_several_statements(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    async with hearing(svc, batch_size=2) as running:
        await first_one_read(svc, running)
        placed = await publish_as(svc, 101, [order(n) for n in range(2, 7)])
        assert await running.dispatch_pending() == 5
    assert [len(found.inserted) for found in statements.results] == [2, 2, 1]
    assert len(await delivery_jobs(svc)) == 6
    assert await committed(svc, placed[0]["partition"]) == placed[-1]["offset"] + 1


async def test_an_integration_changed_since_it_was_cached_writes_nothing_from_the_old_plan(
    svc: Services, statements: Statements
) -> None:
    hook = await add_integration(svc, 100, "every order")
    async with hearing(svc) as running:
        await first_one_read(svc, running)
        await set_active(svc, hook.id, False)  # behind the dispatcher's cached copy
        placed = await publish_as(svc, 101, [order(2)])
        assert await running.dispatch_pending() == 1
    [found] = statements.results
    assert (found.held, found.fresh, found.moved, found.inserted) == (True, False, False, set())
    assert len(await delivery_jobs(svc)) == 1  # the usual way reloaded it: inactive
    assert await committed(svc, placed[0]["partition"]) == placed[0]["offset"] + 1


async def test_an_offset_another_dispatcher_moved_is_not_dispatched_again(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    async with hearing(svc) as running:
        await first_one_read(svc, running)
        placed = await publish_as(svc, 101, [order(2)])
        partition, offset = placed[0]["partition"], placed[0]["offset"]
        async with svc.db.write() as conn:  # another node dispatched it meanwhile
            moved = await dispatch.advance(
                conn, GROUP, 101, "orders", partition, offset, offset + 1, datetime.now(UTC)
            )
            assert moved
        assert await running.dispatch_pending() == 0
    [found] = statements.results
    assert (found.held, found.fresh, found.moved, found.inserted) == (True, True, False, set())
    assert len(await delivery_jobs(svc)) == 1


async def test_a_partition_another_node_holds_is_left_to_it(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    async with hearing(svc) as running:
        await first_one_read(svc, running)
        placed = await publish_as(svc, 101, [order(2)])
        key = dispatch.lock_key(GROUP, 101, "orders", placed[0]["partition"])
        async with svc.db.write() as other:  # another node's batch, in progress
            await other.execute(select(func.pg_advisory_xact_lock(key)))
            assert await running.dispatch_pending() == 0
        assert len(await delivery_jobs(svc)) == 1
        assert statements.results[0].held is False
        assert statements.results[0].inserted == set()
        running._mark((101, "orders", placed[0]["partition"]), placed[0]["offset"])
        assert await running.dispatch_pending() == 1  # released: dispatched now
    assert len(await delivery_jobs(svc)) == 2


async def test_events_appended_elsewhere_between_are_read_from_the_log(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    async with hearing(svc) as running:
        placed = await publish_as(svc, 101, [order(1)])
        await running.dispatch_pending()
        async with svc.db.write() as conn:  # another node's append: never announced here
            draft = EventDraft("order.created", b"{}", source="shop", partition_key="k")
            await svc.event_log.append_in(conn, 101, [draft], stream="orders")
        await publish_as(svc, 101, [order(3)])
        assert await running.dispatch_pending() == 2
    assert statements.results == []  # offset 1 was never announced: the log was read
    assert len(await delivery_jobs(svc)) == 3
    assert await committed(svc, placed[0]["partition"]) == placed[0]["offset"] + 3


async def test_jobs_the_worker_has_room_for_are_handed_to_it_leased(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "one")
    await add_integration(svc, 100, "two")
    handoff = RecordingHandoff(room=1)
    async with hearing(svc, handoff=handoff) as running:
        await first_one_read(svc, running)
        handoff.taken.clear()
        handoff.room = 1
        placed = await publish_as(svc, 101, [order(2)])
        await running.dispatch_pending()
    [found] = statements.results
    [(handed, known, reserved)] = handoff.taken
    assert reserved == 1
    assert handoff.room == 1  # given back
    [job] = handed
    assert job.state is JobState.RUNNING
    assert (job.lease_owner, job.attempts) == (handoff.owner, 1)
    assert job.id in found.inserted
    [event] = known.events.values()
    assert (event.event_id, event.offset) == (placed[0]["id"], placed[0]["offset"])
    states = {j.id: j.state for j in await delivery_jobs(svc) if j.id in found.inserted}
    assert sorted(states.values()) == sorted([JobState.READY, JobState.RUNNING])


async def test_a_failing_statement_hands_nothing_over_and_gives_the_room_back(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_integration(svc, 100, "one")
    handoff = RecordingHandoff(room=4)
    async with hearing(svc, handoff=handoff) as running:
        await first_one_read(svc, running)
        handoff.taken.clear()

        async def failing(*_: Any, **__: Any) -> KnownBatch:
            raise RuntimeError("the database went away")

        monkeypatch.setattr(known_batches, "dispatch_known", failing)
        await publish_as(svc, 101, [order(2)])
        with pytest.raises(RuntimeError):
            await running.dispatch_pending()
    assert handoff.taken == [([], handoff.taken[0][1], 1)]
    assert handoff.room == 4
    assert len(await delivery_jobs(svc)) == 1


async def test_the_stamps_digest_is_the_one_postgresql_makes(svc: Services) -> None:
    await add_integration(svc, 100, "one")
    hook = await add_integration(svc, 100, "two")
    await set_active(svc, hook.id, False)
    await add_integration(svc, 200, "elsewhere")
    async with svc.db.read() as conn:
        stamps = await dispatch.integration_stamps(conn, [100, 101, 200])
    digest = known_batches.stamps_digest({**stamps, 101: dispatch.NO_INTEGRATIONS})
    assert digest.startswith("100:2:")
    assert digest.count(",") == 1
    async with svc.db.driver() as driver:  # the statement's own check, on no partition
        found = await known_batches.dispatch_known(
            driver,
            svc.db.engine.dialect,
            lock_key=1,
            stamps=([100, 101, 200], digest),
            offsets=(GROUP, (101, "orders", 0), 0, 1),
            now=datetime.now(UTC),
            rows=[],
            notify=None,
        )
    assert (found.held, found.fresh, found.moved) == (True, True, False)


async def test_every_partition_of_a_spread_publish_gets_its_own_statement(
    svc: Services, statements: Statements
) -> None:
    await add_integration(svc, 100, "every order")
    keys = [f"k{n}" for n in range(8)]
    async with hearing(svc) as running:
        await publish_as(svc, 101, [order(n, key=key) for n, key in enumerate(keys)])
        await running.dispatch_pending()
        placed = await publish_as(svc, 101, [order(n + 8, key=key) for n, key in enumerate(keys)])
        assert await running.dispatch_pending() == 8
    partitions = {p["partition"] for p in placed}
    assert len(partitions) > 1
    assert len(statements.results) == len(partitions)
    assert all(found.moved for found in statements.results)
    assert len(await delivery_jobs(svc)) == 16


async def test_notifications_from_this_process_are_left_out_and_others_heard(
    svc: Services, db_url: str
) -> None:
    heard: list[str] = []
    listener = PgListener(
        asyncpg_dsn(db_url),
        "jb_test_own",
        heard.append,
        lambda: None,
        ignore_from=svc.db.owns_backend,
    )
    try:
        assert await listener.start()
        async with svc.db.driver() as driver:  # a pooled connection: this process's own
            assert svc.db.owns_backend(driver.get_server_pid())
            await driver.execute("SELECT pg_notify('jb_test_own', 'mine')")
        other = await asyncpg.connect(asyncpg_dsn(db_url))  # another node's
        try:
            assert not svc.db.owns_backend(other.get_server_pid())
            await other.execute("SELECT pg_notify('jb_test_own', 'theirs')")
        finally:
            await other.close()
        for _ in range(200):
            if heard:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert heard == ["theirs"]
    finally:
        await listener.close()
