"""The dispatcher's statements at the driver's level give what the SQLAlchemy statements
they replace gave (same rows, same values, same errors), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, case, func, insert, literal_column, select, text
from tests.integration.dispatch_helpers import add_integration, make_tenants, order, publish_as

from junctionbox.domain.events import StoredEvent
from junctionbox.engine.dispatcher import GROUP
from junctionbox.errors import ConflictError
from junctionbox.queue import NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services.container import Services
from junctionbox.store.queries import dispatch, events, job_inserts
from junctionbox.store.queries.events import EventFilter
from junctionbox.store.tables import jobs, outbound_integrations

T0 = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def svc(services: Services) -> Services:
    await make_tenants(services)
    return services


def _sqlalchemy_row(job: NewJob, job_id: str) -> dict[str, Any]:
    """The row the SQLAlchemy enqueue inserted for ``job`` (before job_inserts)."""
    return {
        "id": job_id,
        "org_id": job.org_id,
        "kind": job.kind,
        "queue": job.queue,
        "state": "ready",
        "priority": job.priority,
        "payload": dict(job.payload),
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at or T0,
        "ordering_key": job.ordering_key,
        "dedupe_key": job.dedupe_key,
        "lease_token": None,
        "lease_owner": None,
        "leased_until": None,
        "last_error": None,
        "finished_at": None,
        "created_at": T0,
        "updated_at": T0,
    }


async def _stored(svc: Services, job_id: str) -> dict[str, Any]:
    async with svc.db.read() as conn:
        row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings().one()
    return dict(row)


async def test_enqueued_rows_equal_what_sqlalchemy_inserted(svc: Services) -> None:
    queue = JobQueue(svc.db, clock=lambda: T0)
    payload = {"text": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}, "none": None}
    variants = [
        NewJob("delivery", payload, org_id=100, dedupe_key="k1", ordering_key="o1"),
        NewJob("delivery", {}, queue="other", priority=-3, max_attempts=9),
        NewJob("delivery", payload, run_at=T0 + timedelta(hours=5), org_id=None),
    ]
    try:
        ids = await queue.enqueue_now(variants)
        for job, job_id in zip(variants, ids, strict=True):
            twin_id = job_id + "x"
            twin = _sqlalchemy_row(job, twin_id)
            if twin["dedupe_key"] is not None:
                twin["dedupe_key"] += "-twin"
            async with svc.db.write() as conn:
                await conn.execute(insert(jobs).values(twin))
            ours, theirs = await _stored(svc, job_id), await _stored(svc, twin_id)
            theirs |= {"id": job_id, "dedupe_key": job.dedupe_key}
            assert ours == theirs
    finally:
        await queue.close()


async def test_taken_dedupe_keys_give_the_holders_id(svc: Services) -> None:
    queue = JobQueue(svc.db, clock=lambda: T0)
    try:
        (first,) = await queue.enqueue_now([NewJob("delivery", {"n": 1}, dedupe_key="a")])
        again = await queue.enqueue_now(
            [
                NewJob("delivery", {"n": 2}, dedupe_key="b"),
                NewJob("delivery", {"n": 3}, dedupe_key="a"),
                NewJob("delivery", {"n": 4}),
                NewJob("delivery", {"n": 5}, dedupe_key="b"),
            ]
        )
        assert again[1] == first
        assert again[3] == again[0] != first
        assert len(set(again)) == 3
        assert (await _stored(svc, first))["payload"] == {"n": 1}
        assert (await _stored(svc, again[0]))["payload"] == {"n": 2}
    finally:
        await queue.close()


async def test_driver_errors_are_translated(svc: Services) -> None:
    row = tuple(_sqlalchemy_row(NewJob("delivery", {}), "job_same").values())
    with pytest.raises(ConflictError):
        async with svc.db.write() as conn:
            await job_inserts.insert_jobs(conn, [row, row])  # one id twice: no dedupe key


async def test_read_after_equals_the_sqlalchemy_read(svc: Services) -> None:
    placed = await publish_as(
        svc,
        100,
        [
            order(1),
            order(
                2,
                specversion="1.0",
                subject="s-2",
                time="2030-01-01T00:00:00Z",
                traceparent=_TRACEPARENT,
            ),
            order(3, dataschema="https://schemas.example.com/order"),
        ],
    )
    partition = placed[0]["partition"]
    where = EventFilter(100, "orders", partition=partition)
    async with svc.db.read() as conn:
        expected = await events.read(conn, where, limit=10)
        found = await events.read_after(conn, 100, "orders", partition, -1, 10)
        tail = await events.read_after(conn, 100, "orders", partition, 0, 1)
        other_tenant = await events.read_after(conn, 200, "orders", partition, -1, 10)
    assert found == expected
    assert all(isinstance(e, StoredEvent) and e.received_at.tzinfo for e in found)
    assert found[1].extensions == {"traceparent": _TRACEPARENT}
    assert tail == expected[1:2]
    assert other_tenant == []


_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_stamps_equal_the_sqlalchemy_aggregate(svc: Services) -> None:
    await add_integration(svc, 100, "one")
    await add_integration(svc, 100, "two", isActive=False)
    await add_integration(svc, 101, "three")
    table = outbound_integrations
    aggregate = (
        select(
            table.c.org_id,
            func.count(),
            func.coalesce(func.sum(table.c.version), 0),
            func.coalesce(func.sum(case((table.c.is_active, 1), else_=0)), 0),
            func.max(table.c.updated_at),
        )
        .where(table.c.org_id.in_(bindparam("org_ids", expanding=True)))
        .group_by(table.c.org_id)
    )
    async with svc.db.read() as conn:
        rows = (await conn.execute(aggregate, {"org_ids": [100, 101, 200]})).all()
        found = await dispatch.integration_stamps(conn, [100, 101, 200])
        updated = (await conn.execute(select(table.c.org_id, table.c.updated_at))).all()
    assert set(found) == {100, 101}
    latest: dict[int, datetime] = {}
    for org_id, moment in updated:
        latest[org_id] = max(moment, latest.get(org_id, moment))
    for org_id, count, versions, active, _changed in rows:
        stamp = found[org_id]
        assert stamp[:3] == (count, versions, active)
        changed = stamp[3]
        assert isinstance(changed, datetime)
        assert changed.replace(tzinfo=changed.tzinfo or UTC) == latest[org_id]
    assert found[100][:3] == (2, 2, 1)


async def test_read_batch_gives_every_owners_stamp(svc: Services) -> None:
    await add_integration(svc, 100, "one")
    placed = await publish_as(svc, 100, [order(1)])
    partition = placed[0]["partition"]
    async with svc.db.read() as conn:
        read, stamps = await dispatch.read_batch(conn, 100, "orders", partition, -1, 10, [100, 200])
        expected = await events.read_after(conn, 100, "orders", partition, -1, 10)
        direct = await dispatch.integration_stamps(conn, [100, 200])
    assert read == expected
    if svc.db.is_sqlite:  # read in the same hand-over
        assert stamps == {100: direct[100], 200: dispatch.NO_INTEGRATIONS}
    else:  # the catalog reads them itself
        assert stamps is None


async def test_advance_is_a_compare_and_set(svc: Services) -> None:
    placed = await publish_as(svc, 100, [order(1)])
    key = (100, "orders", placed[0]["partition"])
    async with svc.db.write() as conn:
        assert await dispatch.advance(conn, GROUP, *key, None, 3, T0)
        assert not await dispatch.advance(conn, GROUP, *key, 2, 5, T0)  # not where it is
        assert await dispatch.advance(conn, GROUP, *key, 3, 5, T0)
        assert not await dispatch.advance(conn, GROUP, 200, *key[1:], 3, 5, T0)  # tenant
    async with svc.db.read() as conn:
        position = await dispatch.position(conn, *key, GROUP)
    assert position is not None
    assert position.committed == 5


async def test_lock_partition_brings_the_stamps_on_postgresql(svc: Services) -> None:
    await add_integration(svc, 100, "one")
    async with svc.db.write() as conn:
        locked, stamps = await dispatch.lock_partition(conn, 42, [100, 200])
        direct = await dispatch.integration_stamps(conn, [100, 200])
        assert locked
        if svc.db.is_sqlite:  # one writer at a time: no lock to take; the read brings them
            assert stamps is None
            return
        assert stamps == {100: direct[100], 200: dispatch.NO_INTEGRATIONS}
        async with svc.db.write() as other:  # another node's batch of the same partition
            assert await dispatch.lock_partition(other, 42, [100]) == (False, None)
            assert await dispatch.lock_partition(other, 43, []) == (True, None)


@pytest.mark.parametrize("owners", [[], [100]])
async def test_a_dispatch_transaction_does_not_wait_for_the_wal_flush(
    svc: Services, owners: list[int]
) -> None:
    # Its work is redone after a crash (same dedupe keys): the lock statement says so,
    # for that transaction alone.
    if svc.db.is_sqlite:
        pytest.skip("synchronous_commit is PostgreSQL's; SQLite's commits never wait for a flush")
    setting = select(func.current_setting("synchronous_commit"))
    async with svc.db.write() as conn:
        assert await dispatch.lock_partition(conn, 42, owners) == (
            True,
            None if not owners else {100: dispatch.NO_INTEGRATIONS},
        )
        assert (await conn.execute(setting)).scalar_one() == "off"
    async with svc.db.write() as conn:
        assert (await conn.execute(setting)).scalar_one() == "on"


async def test_lock_and_read_equal_the_lock_the_read_and_the_advance_apart(
    svc: Services,
) -> None:
    if svc.db.is_sqlite:
        pytest.skip("PostgreSQL's statement; on SQLite the read brings the stamps")
    await add_integration(svc, 100, "one")
    placed = await publish_as(
        svc,
        100,
        [order(1), order(2, specversion="1.0", subject="s", traceparent=_TRACEPARENT), order(3)],
    )
    partition = placed[0]["partition"]
    position = (100, "orders", partition)
    now = datetime.now(UTC)
    async with svc.db.write() as conn:
        assert await dispatch.advance(conn, GROUP, *position, None, 0, now)
    async with svc.db.write() as conn:
        found = await dispatch.lock_and_read(conn, 7, [100, 200], GROUP, position, 0, 9, now)
        direct = await dispatch.integration_stamps(conn, [100, 200])
        expected = await events.read_after(conn, 100, "orders", partition, -1, 9)
        setting = await conn.execute(select(func.current_setting("synchronous_commit")))
        assert setting.scalar_one() == "off"
        assert found.locked
        assert found.stamps == {100: direct[100], 200: dispatch.NO_INTEGRATIONS}
        assert found.events == expected
        assert found.events
        assert found.moved
        following = found.events[-1].offset + 1
        at = await dispatch.position(conn, *position, GROUP)
        assert at is not None
        assert at.committed == following
        # Nothing after it: nothing read, the offset stays.
        after = await dispatch.lock_and_read(conn, 8, [], GROUP, position, following, 9, now)
        assert after == dispatch.LockedBatch(True, None, [], False)
        async with svc.db.write() as other:  # another node's batch of the same partition
            held = await dispatch.lock_and_read(other, 7, [100], GROUP, position, 0, 9, now)
            assert held == dispatch.LockedBatch(False)


async def test_lock_and_read_does_not_move_an_offset_someone_else_moved(svc: Services) -> None:
    if svc.db.is_sqlite:
        pytest.skip("PostgreSQL's statement")
    placed = await publish_as(svc, 100, [order(1)])
    position = (100, "orders", placed[0]["partition"])
    now = datetime.now(UTC)
    async with svc.db.write() as conn:
        assert await dispatch.advance(conn, GROUP, *position, None, 0, now)
    async with svc.db.write() as conn:
        found = await dispatch.lock_and_read(conn, 7, [], GROUP, position, 5, 9, now)
        assert found == dispatch.LockedBatch(True, None, [], False)  # none after 5
        stale = await dispatch.lock_and_read(conn, 7, [], GROUP, (*position[:2], 99), 0, 9, now)
        assert stale == dispatch.LockedBatch(True, None, [], False)  # no such partition
    async with svc.db.write() as conn:  # the offset is 0, this dispatcher thinks 0: it reads
        raced = await dispatch.lock_and_read(conn, 7, [], "$other-group", position, 0, 9, now)
        assert raced.events
        assert not raced.moved  # that group has no row at 0: someone else's move


async def test_the_dispatchers_reads_keep_one_plan_on_postgresql(svc: Services) -> None:
    # With its LIMIT a parameter, PostgreSQL planned the read anew at every execution once
    # the partition held a few thousand events (a generic plan, not knowing the limit, looks
    # dearer than a custom one): a prepared statement should settle on its generic plan
    # after its five custom plans.
    if svc.db.is_sqlite:
        pytest.skip("PostgreSQL's plan cache")
    for first in range(0, 3000, 500):
        placed = await publish_as(svc, 100, [order(n) for n in range(first, first + 500)])
    position = (100, "orders", placed[0]["partition"])
    now = datetime.now(UTC)
    plans = select(func.sum(literal_column("generic_plans"))).select_from(
        text("pg_prepared_statements")
    )
    async with svc.db.write() as conn:
        await conn.execute(text("ANALYZE events"))
        await dispatch.advance(conn, GROUP, *position, None, 5, now)
        for _ in range(8):
            await dispatch.lock_and_read(conn, 7, [100], GROUP, position, 5, 16, now)
            await events.read_after(conn, *position, 5, 16)
        generic = (
            await conn.execute(plans.where(text("statement LIKE '%FROM events%'")))
        ).scalar_one()
    assert generic >= 2 * (8 - 5)
