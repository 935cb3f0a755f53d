"""The dispatcher: from the event log to delivery jobs, all or nothing, once per match."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select
from tests.integration.dispatch_helpers import (
    add_integration,
    delivery_jobs,
    dispatcher,
    make_tenants,
    order,
    payload_of,
    publish_as,
    scheduled_rows,
    set_active,
    set_timezone,
    tenant,
)
from tests.support import make_settings

from junctionbox.domain.delivery import (
    DELIVERY_QUEUE,
    ScheduleStatus,
    Trigger,
    message_id,
)
from junctionbox.domain.events import EventDraft
from junctionbox.engine import dispatcher as dispatcher_module
from junctionbox.engine.dispatcher import GROUP, Dispatcher
from junctionbox.queue import store as queue_store
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.store.queries import consumer_offsets, dispatch
from junctionbox.store.queries import dispatch_known as known_batches
from junctionbox.store.tables import consumer_offsets as offsets_table
from junctionbox.store.tables import events as events_table


@pytest.fixture
async def svc(services: Services) -> Services:
    await make_tenants(services)
    return services


async def committed(svc: Services, org: int, stream: str = "orders") -> dict[int, int]:
    async with svc.db.read() as conn:
        found = await consumer_offsets.positions(conn, org, group=GROUP, stream=stream)
    return {p.partition: p.committed_offset for p in found}


async def eventually(check: Callable[[Any], Awaitable[Any]], subject: Any) -> None:
    """Wait (at most 5 s) until ``check(subject)`` is truthy."""
    for _ in range(500):
        if await check(subject):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{check.__name__} never became true")


async def listening(running: Dispatcher) -> bool:
    listener = running._listener
    return listener is not None and listener.connected.is_set()


async def test_each_event_becomes_one_job_per_matching_integration(svc: Services) -> None:
    hook = await add_integration(svc, 100, "orders", retryPolicy={"maxRetries": 5})
    placed = await publish_as(svc, 101, [order(1), order(2)])
    assert await dispatcher(svc).dispatch_pending() == 2
    jobs = await delivery_jobs(svc)
    assert len(jobs) == 2
    for job, event in zip(jobs, placed, strict=True):
        payload = payload_of(job)
        expected = message_id(101, "shop", event["id"], hook.id, 0)
        assert payload.message_id == expected
        assert (job.kind, job.queue, job.dedupe_key) == (
            "delivery",
            DELIVERY_QUEUE,
            f"dlv:{expected}",
        )
        assert (job.org_id, job.max_attempts, job.ordering_key) == (
            101,
            7,
            None,
        )  # 5 retries + first send + a spare claim
        assert (payload.integration_id, payload.integration_version) == (hook.id, 1)
        assert (payload.event_id, payload.event_type, payload.trigger) == (
            event["id"],
            "order.created",
            Trigger.EVENT,
        )
        assert (payload.event.stream, payload.event.partition, payload.event.offset) == (
            "orders",
            event["partition"],
            event["offset"],
        )
        assert job.run_at <= job.created_at + timedelta(seconds=1)
    partition = placed[0]["partition"]
    assert (await committed(svc, 101))[partition] == placed[-1]["offset"] + 1
    assert await dispatcher(svc).dispatch_pending() == 0  # caught up


async def test_tenant_hierarchy_scope_and_exclusions(svc: Services) -> None:
    everywhere = await add_integration(svc, 100, "org-all")
    own_only = await add_integration(svc, 100, "org-only", scope="ENTITY_ONLY")
    not_101 = await add_integration(svc, 100, "org-not-101", excludedEntityRids=[101])
    unit = await add_integration(svc, 101, "unit")
    stranger = await add_integration(svc, 200, "other-tenant")
    await publish_as(svc, 101, [order(1)])
    await publish_as(svc, 100, [order(2)])
    await publish_as(svc, 201, [order(3)])
    await dispatcher(svc).dispatch_pending()
    sent: dict[str, set[str]] = {}
    for job in await delivery_jobs(svc):
        payload = payload_of(job)
        sent.setdefault(payload.event_id, set()).add(payload.integration_id)
        assert job.org_id == {"ord-1": 101, "ord-2": 100, "ord-3": 201}[payload.event_id]
    assert sent == {
        "ord-1": {everywhere.id, unit.id},
        "ord-2": {everywhere.id, own_only.id, not_101.id},
        "ord-3": {stranger.id},
    }


async def test_type_patterns_filters_and_inactive_integrations(svc: Services) -> None:
    prefix = await add_integration(svc, 100, "prefix", eventType="order.*")
    anything = await add_integration(svc, 100, "anything", eventType="*")
    await add_integration(svc, 100, "other-type", eventType="order.updated")
    big = await add_integration(svc, 100, "big", filter="event.data.total > 100")
    await add_integration(svc, 100, "broken", filter="event.data.missing == 1")
    await add_integration(svc, 100, "off", isActive=False)
    subject = await add_integration(svc, 100, "subject", filter='event.subject == "vip"')
    await publish_as(
        svc,
        100,
        [
            order(1, total=150, subject="vip"),
            order(2, total=50),
            {"type": "invoice.paid", "data": {}},
        ],
    )
    assert await dispatcher(svc).dispatch_pending() == 3
    sent: dict[str, set[str]] = {}
    for job in await delivery_jobs(svc):
        payload = payload_of(job)
        sent.setdefault(
            payload.event_id if payload.event_type != "invoice.paid" else "invoice", set()
        ).add(payload.integration_id)
    assert sent["ord-1"] == {prefix.id, anything.id, big.id, subject.id}
    assert sent["ord-2"] == {prefix.id, anything.id}  # "broken" errs: no match, no block
    assert sent["invoice"] == {anything.id}


async def test_fifo_integrations_get_ordering_keys(svc: Services) -> None:
    fifo = await add_integration(
        svc, 100, "fifo", ordering={"mode": "FIFO", "key": "data.customerId"}
    )
    await publish_as(svc, 100, [order(1), order(2), order(3)])
    await dispatcher(svc).dispatch_pending()
    keys = [job.ordering_key for job in await delivery_jobs(svc)]
    assert keys == [f"{fifo.id}:c-1", f"{fifo.id}:c-0", f"{fifo.id}:c-1"]


async def test_dispatching_again_creates_no_duplicate_jobs(svc: Services) -> None:
    await add_integration(svc, 100, "orders")
    await publish_as(svc, 100, [order(n) for n in range(5)])
    await dispatcher(svc).dispatch_pending()
    first = {job.id for job in await delivery_jobs(svc)}
    assert len(first) == 5
    # The offsets are lost (as if a crash happened right after the jobs were written):
    async with svc.db.write() as conn:
        await conn.execute(delete(offsets_table).where(offsets_table.c.group_name == GROUP))
    assert await dispatcher(svc).dispatch_pending() == 5  # read again ...
    assert {job.id for job in await delivery_jobs(svc)} == first  # ... and absorbed


async def test_a_crash_before_the_offset_commits_leaves_nothing_behind(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_integration(svc, 100, "orders")
    await add_integration(
        svc, 100, "later", schedulingMode="DELAYED", schedulingConfig={"delayMs": 60_000}
    )
    await publish_as(svc, 100, [order(1), order(2)])

    async def crash(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("killed between the jobs and the offset")

    monkeypatch.setattr(dispatch, "advance", crash)
    with pytest.raises(RuntimeError):
        await dispatcher(svc).dispatch_pending()
    assert await delivery_jobs(svc) == []
    assert await scheduled_rows(svc) == []
    assert set((await committed(svc, 100)).values()) == {0}  # nothing dispatched
    monkeypatch.undo()
    assert await dispatcher(svc).dispatch_pending() == 2
    assert len(await delivery_jobs(svc)) == 4
    assert len(await scheduled_rows(svc)) == 2


async def test_a_batch_failing_after_its_offset_moved_leaves_nothing_behind(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From its cursor on PostgreSQL the batch's read moves the offset before its jobs are
    written: a failure after that rolls both back, as a failure before the move would."""
    async with dispatching(svc) as running:
        forget_own_appends(running)
        await publish_spread(svc, range(8))  # every partition's cursor is known
        before = await committed(svc, 100)

        async def crash(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("killed before the jobs were written")

        monkeypatch.setattr(queue_store, "insert_jobs", crash)
        await publish_spread(svc, range(8, 9), wait=False)
        await eventually(backing_off, running)
        assert await committed(svc, 100) == before
        assert len(await delivery_jobs(svc)) == 8
        monkeypatch.undo()
        running._failing.clear()
        running._rescan = True
        running._wake.set()
        await eventually(lambda s: has_jobs(s, 9), svc)


async def test_two_dispatchers_share_the_log_without_dispatching_twice(svc: Services) -> None:
    await add_integration(svc, 100, "orders")
    await publish_as(svc, 100, [order(n, key=f"k{n % 4}") for n in range(40)])
    first, second = dispatcher(svc, batch_size=3), dispatcher(svc, batch_size=3)
    counts = await asyncio.gather(first.dispatch_pending(), second.dispatch_pending())
    assert sum(counts) == 40  # every event dispatched by exactly one of them
    assert len(await delivery_jobs(svc)) == 40


async def test_integration_changes_are_seen_by_the_next_batch(svc: Services) -> None:
    running = dispatcher(svc)
    await publish_as(svc, 100, [order(1)])
    assert await running.dispatch_pending() == 1
    assert await delivery_jobs(svc) == []
    hook = await add_integration(svc, 100, "late")
    await publish_as(svc, 100, [order(2)])
    await running.dispatch_pending()
    assert [payload_of(j).event_id for j in await delivery_jobs(svc)] == ["ord-2"]
    await set_active(svc, hook.id, False)
    await publish_as(svc, 100, [order(3)])
    await running.dispatch_pending()
    assert len(await delivery_jobs(svc)) == 1
    loads = running.fanout.catalog.loads
    await publish_as(svc, 100, [order(4)])
    await running.dispatch_pending()
    assert running.fanout.catalog.loads == loads  # nothing changed: the cache was kept


async def test_delayed_integrations_schedule_an_occurrence(svc: Services) -> None:
    hook = await add_integration(
        svc, 100, "later", schedulingMode="DELAYED", schedulingConfig={"delayMs": 90_000}
    )
    at = await add_integration(
        svc,
        100,
        "at",
        schedulingMode="DELAYED",
        schedulingConfig={"at": "2031-01-01T09:00:00+01:00"},
    )
    await publish_as(svc, 100, [order(1)])
    await dispatcher(svc).dispatch_pending()
    async with svc.db.read() as conn:
        received = (await conn.execute(select(events_table.c.received_at))).scalar_one()
    rows = {row.integration_id: row for row in await scheduled_rows(svc)}
    jobs = {payload_of(job).integration_id: job for job in await delivery_jobs(svc)}
    delayed = rows[hook.id]
    assert delayed.scheduled_for == received + timedelta(seconds=90)
    assert (delayed.status, delayed.occurrence, delayed.mode) == ("PENDING", 0, "DELAYED")
    assert (delayed.target_url, delayed.http_method) == ("https://hooks.example.com/in", "POST")
    job = jobs[hook.id]
    assert job.run_at == delayed.scheduled_for
    assert delayed.job_id == job.id
    payload = payload_of(job)
    assert (payload.trigger, payload.scheduled_id) == (Trigger.SCHEDULED, delayed.id)
    assert payload.message_id == message_id(100, "shop", "ord-1", hook.id, 0)
    assert rows[at.id].scheduled_for.isoformat() == "2031-01-01T08:00:00+00:00"


async def test_recurring_first_occurrence_is_in_the_tenants_time_zone(svc: Services) -> None:
    await set_timezone(svc, 100, "Asia/Kolkata")
    hook = await add_integration(
        svc,
        100,
        "daily",
        schedulingMode="RECURRING",
        schedulingConfig={"type": "CRON", "expression": "0 9 * * *", "maxOccurrences": 3},
    )
    await publish_as(svc, 101, [order(1)])  # the unit has no zone: its organization's applies
    await dispatcher(svc).dispatch_pending()
    (row,) = await scheduled_rows(svc)
    local = row.scheduled_for.astimezone(ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute) == (9, 0)
    assert (row.scheduled_for.hour, row.scheduled_for.minute) == (3, 30)
    assert row.recurring_config is not None
    assert row.recurring_config["timezone"] == "Asia/Kolkata"
    assert row.recurring_config["delivery"] == {
        "source": "shop",
        "maxAttempts": 5,
        "orderingKey": None,
    }
    assert (row.integration_id, row.org_id, row.status) == (hook.id, 101, ScheduleStatus.PENDING)


async def test_partitions_are_protected_from_retention_once_seen(svc: Services) -> None:
    await publish_as(svc, 100, [order(1)])
    async with svc.db.write() as conn:  # as if the dispatcher had never run
        await conn.execute(delete(offsets_table))
    await dispatcher(svc).dispatch_pending()
    positions = await committed(svc, 100)
    assert len(positions) == svc.settings.events_default_partitions  # every partition


async def test_the_loop_wakes_on_publish_without_polling(svc: Services) -> None:
    await add_integration(svc, 100, "orders")
    stop = asyncio.Event()
    running = dispatcher(svc, poll_seconds=30)
    task = asyncio.create_task(running.run(stop))
    try:
        await asyncio.sleep(0.2)  # the first full scan is done; now only wake-ups help
        started = time.monotonic()
        await publish_as(svc, 100, [order(1)])
        await eventually(delivery_jobs, svc)
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_other_nodes_appends_wake_it_on_postgresql(
    svc: Services, backend: str, db_url: str, tmp_path: Path
) -> None:
    if backend != "postgres":
        pytest.skip("cross-node wake-ups are PostgreSQL NOTIFY")
    await add_integration(svc, 100, "orders")
    other_node = build_services(make_settings(db_url, tmp_path))
    stop = asyncio.Event()
    running = dispatcher(svc, poll_seconds=30)
    task = asyncio.create_task(running.run(stop))
    try:
        await eventually(listening, running)
        draft = EventDraft(type="order.created", payload=b'{"n": 1}', source="shop", event_id="x1")
        await other_node.event_log.append(100, [draft], stream="orders")
        await eventually(delivery_jobs, svc)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await other_node.close()


async def test_two_running_dispatchers_racing_from_their_cursors_lose_no_event(
    svc: Services,
) -> None:
    """Both are woken by every append and dispatch from their own cursors (on PostgreSQL
    the read moves the offset: a loser of the race rolls back and reads again)."""
    async with dispatching(svc) as first, dispatching(svc, dispatcher(svc, poll_seconds=30)):
        await publish_spread(svc, range(8))
        for start in range(8, 48, 8):
            await publish_spread(svc, range(start, start + 8), wait=False)
        await eventually(lambda s: has_jobs(s, 48), svc)
        async with svc.db.read() as conn:
            positions = await dispatch.lagging_partitions(conn, GROUP)
        assert positions == []  # every partition's offset is at its end
        assert first._failing == {}
    assert len(await delivery_jobs(svc)) == 48


async def test_a_failing_pass_is_retried_by_the_loop(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_integration(svc, 100, "orders")
    await publish_as(svc, 100, [order(1)])
    real = dispatch.lagging_partitions
    calls = 0

    async def flaky(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database hiccup")
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch, "lagging_partitions", flaky)
    monkeypatch.setattr(dispatcher_module, "MAX_BACKOFF_SECONDS", 0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher(svc, poll_seconds=0.05).run(stop))
    try:
        await eventually(delivery_jobs, svc)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert calls >= 2


async def test_a_stream_made_again_is_dispatched_from_its_new_start(svc: Services) -> None:
    await add_integration(svc, 100, "orders")
    stop = asyncio.Event()
    running = dispatcher(svc, poll_seconds=0.1)
    task = asyncio.create_task(running.run(stop))
    try:
        await publish_as(svc, 100, [order(n) for n in range(3)])
        await eventually(lambda s: has_jobs(s, 3), svc)
        await svc.streams.delete(tenant(100), "orders")
        # Offsets restart at 0, below the dispatcher's cursor: its wake-ups look stale, and
        # the periodic scan is what finds the new events.
        await publish_as(svc, 100, [order(n) for n in range(10, 12)])
        await eventually(lambda s: has_jobs(s, 5), svc)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    new = [payload_of(j) for j in await delivery_jobs(svc)][3:]
    assert [(p.event_id, p.event.offset) for p in new] == [("ord-10", 0), ("ord-11", 1)]


async def has_jobs(svc: Services, count: int) -> bool:
    return len(await delivery_jobs(svc)) >= count


async def test_a_failing_partition_backs_off_and_is_retried(
    svc: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await add_integration(svc, 100, "orders")
    running = dispatcher(svc, poll_seconds=0.05)
    real = running.fanout.plan
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("one bad batch")
        return await real(*args, **kwargs)

    monkeypatch.setattr(running.fanout, "plan", flaky)
    monkeypatch.setattr(dispatcher_module, "MAX_BACKOFF_SECONDS", 0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        await publish_as(svc, 100, [order(1)])
        await eventually(delivery_jobs, svc)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert calls == 2
    assert "failed (1 in a row); retrying in 0.2 s" in caplog.text
    assert running._failing == {}


async def test_small_batches_of_several_partitions_share_one_transaction(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The few events a publish spreads over several partitions are dispatched in one
    transaction, not one each (SQLite has one writer, so partitions take turns for it; on
    PostgreSQL each transaction costs round trips and a commit)."""
    async with dispatching(svc) as running:
        forget_own_appends(running)
        first = await publish_spread(svc, range(8))  # the cursors are known from here on
        writes: list[dict[str, Any]] = []
        real_write = svc.db.write

        def counted(**options: Any) -> Any:
            writes.append(options)
            return real_write(**options)

        monkeypatch.setattr(svc.db, "write", counted)
        second = await publish_spread(svc, range(8, 16))
    assert len({e["partition"] for e in second}) > 1
    # One transaction for the partitions (the dispatcher writes small batches inline).
    assert [w for w in writes if w.get("inline")] == [{"inline": True}]
    offsets = await committed(svc, 100)
    for placed in first + second:
        assert offsets[placed["partition"]] > placed["offset"]


async def test_a_partition_failing_in_a_shared_transaction_holds_up_no_other(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared transaction that fails is retried one partition per transaction: the
    failing partition backs off alone and the others' events are dispatched."""
    async with dispatching(svc) as running:
        first = await publish_spread(svc, range(8))
        real_advance, real_lock_and_read = dispatch.advance, dispatch.lock_and_read
        real_dispatch_known = known_batches.dispatch_known
        broken = first[0]["partition"]

        async def advance(
            conn: Any, group: str, org: int, stream: str, partition: int, *rest: Any
        ) -> Any:
            if partition == broken:
                raise RuntimeError("this partition's batch fails")
            return await real_advance(conn, group, org, stream, partition, *rest)

        async def lock_and_read(
            conn: Any, key: int, owners: Any, group: str, position: Any, *rest: Any
        ) -> Any:  # PostgreSQL's way of moving the offset
            if position[2] == broken:
                raise RuntimeError("this partition's batch fails")
            return await real_lock_and_read(conn, key, owners, group, position, *rest)

        async def dispatch_known(driver: Any, dialect: Any, **given: Any) -> Any:
            if given["offsets"][1][2] == broken:  # PostgreSQL, for events appended here
                raise RuntimeError("this partition's batch fails")
            return await real_dispatch_known(driver, dialect, **given)

        monkeypatch.setattr(dispatch, "advance", advance)
        monkeypatch.setattr(dispatch, "lock_and_read", lock_and_read)
        monkeypatch.setattr(known_batches, "dispatch_known", dispatch_known)
        second = await publish_spread(svc, range(8, 16), wait=False)
        healthy = [e for e in second if e["partition"] != broken]
        await eventually(lambda s: has_jobs(s, 8 + len(healthy)), svc)
        await eventually(backing_off, running)  # (PostgreSQL: once the batches in parallel end)
        assert set(running._failing) == {(100, "orders", broken)}
        assert len(await delivery_jobs(svc)) == 8 + len(healthy)
        monkeypatch.undo()
        running._failing.clear()
        running._mark((100, "orders", broken), second[-1]["offset"])
        await eventually(lambda s: has_jobs(s, 16), svc)


async def test_partitions_heard_about_do_not_wait_for_the_periodic_scan(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic scan for lag is the safety net: a pass dispatches the partitions it
    was woken for first, so a slow scan (a large log, a busy loop) holds up no publisher."""
    await add_integration(svc, 100, "orders")
    running = dispatcher(svc, poll_seconds=30)
    real_scan = running._scan
    release = asyncio.Event()
    scans = 0

    async def held_scan() -> Any:
        nonlocal scans
        scans += 1
        if scans > 1:  # the start-up scan runs; the next one is held until the test ends
            await release.wait()
        return await real_scan()

    monkeypatch.setattr(running, "_scan", held_scan)
    async with dispatching(svc, running):
        try:
            await eventually(scanned_once, lambda: scans)
            running._rescan = True  # the pass the publish wakes scans too
            await publish_as(svc, 100, [order(1)])
            await eventually(delivery_jobs, svc)
            assert scans == 2  # dispatched while that scan is still held
        finally:
            release.set()  # before the loop stops: it finishes that pass first


def forget_own_appends(running: Dispatcher) -> None:
    """On PostgreSQL, dispatch the usual way (a transaction that reads the log), as for
    events another node appended: this process's own go in one statement from memory
    (tests/integration/test_dispatch_known.py)."""
    running._appended = None


@asynccontextmanager
async def dispatching(
    svc: Services, running: Dispatcher | None = None
) -> AsyncIterator[Dispatcher]:
    """A dispatcher's loop (woken by appends; its periodic scan 30 s apart) while inside."""
    if running is None:
        await add_integration(svc, 100, "orders")
        running = dispatcher(svc, poll_seconds=30)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def publish_spread(
    svc: Services, numbers: range, *, wait: bool = True
) -> list[dict[str, Any]]:
    """Orders numbered ``numbers`` over the stream's partitions (keys k0..k7 again for every
    eight: the same partitions each time); with ``wait``, until all are dispatched."""
    placed = await publish_as(svc, 100, [order(n, key=f"k{n % 8}") for n in numbers])
    if wait:
        await eventually(lambda s: has_jobs(s, numbers.stop), svc)
    return placed


async def scanned_once(scans: Callable[[], int]) -> bool:
    await asyncio.sleep(0.05)  # the start-up pass finishes after its scan
    return scans() >= 1


async def backing_off(running: Dispatcher) -> bool:
    return bool(running._failing)


async def test_the_scan_leaves_partitions_already_woken_to_their_wake_up(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a steady stream of publishes every partition lags at every scan. One this
    dispatcher has been woken for, and whose committed offset is its own cursor, is left to
    the wake-up (from the cursor) instead of being read again from the group's offset."""
    async with dispatching(svc) as running:
        await publish_spread(svc, range(8))  # every partition's cursor is known
        real_scan, real_position = running._scan, dispatch.position
        positions_read: list[int] = []

        async def scan_meanwhile_a_publish() -> Any:
            await publish_as(svc, 100, [order(100, key="k0")])  # woken, not yet dispatched
            return await real_scan()

        async def position(conn: Any, org: int, stream: str, partition: int, group: str) -> Any:
            positions_read.append(partition)
            return await real_position(conn, org, stream, partition, group)

        monkeypatch.setattr(running, "_scan", scan_meanwhile_a_publish)
        monkeypatch.setattr(dispatch, "position", position)
        running._rescan = True
        running._wake.set()
        await eventually(lambda s: has_jobs(s, 9), svc)
    assert positions_read == []
