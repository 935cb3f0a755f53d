"""Group commit: concurrent appends share transactions without mixing up their answers."""

from __future__ import annotations

import asyncio

import pytest
from tests.support import World

from junctionbox.domain.events import EventDraft
from junctionbox.errors import ServiceUnavailableError
from junctionbox.services.append_coalescer import (
    DEFAULT_COMMIT_INTERVAL,
    SQLITE_COMMIT_INTERVAL,
    AppendCoalescer,
)
from junctionbox.services.event_log import EventLog
from junctionbox.store.queries import events as queries


def draft(n: int, **fields: object) -> EventDraft:
    return EventDraft(
        type="order.created", payload=b'{"n": %d}' % n, value={"n": n}, has_value=True, **fields
    )  # type: ignore[arg-type]


class CountingLog(EventLog):
    """The real log, counting its write transactions (one per ``append_together``)."""

    transactions = 0

    async def append_together(self, parts):  # type: ignore[no-untyped-def]
        self.transactions += 1
        return await super().append_together(parts)


async def test_concurrent_callers_share_transactions_and_get_their_own_results(
    world: World,
) -> None:
    log = CountingLog(world.services.db)
    heard: list[int] = []
    log.listeners.append(lambda events: heard.extend(e.offset for e in events))
    coalescer = AppendCoalescer(log)
    calls = [
        coalescer.append(100 if n % 2 else 200, [draft(n, event_id=f"e{n}", partition_key="k")])
        for n in range(60)
    ]
    results = await asyncio.gather(*calls)
    assert log.transactions < 60  # callers arriving during a write joined the next one
    assert [r.event_id for [r] in results] == [f"e{n}" for n in range(60)]
    for org in (100, 200):
        offsets = sorted(r.offset for n, [r] in enumerate(results) if (n % 2 == 1) == (org == 100))
        assert offsets == list(range(30))  # contiguous per tenant's partition, none lost
    assert len(heard) == 60
    async with world.services.db.read() as conn:
        stored = await queries.read_after(conn, 100, "default", results[1][0].partition, -1, 100)
    assert len(stored) == 30


async def test_a_repeat_in_a_later_caller_of_the_same_batch_is_a_duplicate(world: World) -> None:
    coalescer = AppendCoalescer(world.services.event_log)
    first, second = await asyncio.gather(
        coalescer.append(100, [draft(1, event_id="same", source="crm")]),
        coalescer.append(100, [draft(2, event_id="same", source="crm")]),
    )
    assert (first[0].duplicate, second[0].duplicate) == (False, True)
    assert first[0].offset == second[0].offset


async def test_a_failed_write_fails_every_caller_sharing_it(world: World) -> None:
    class BrokenLog(EventLog):
        async def append_together(self, parts):  # type: ignore[no-untyped-def]
            raise ServiceUnavailableError("database unavailable")

    coalescer = AppendCoalescer(BrokenLog(world.services.db))
    outcomes = await asyncio.gather(
        *(coalescer.append(100, [draft(n)]) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, ServiceUnavailableError) for o in outcomes)
    with pytest.raises(ServiceUnavailableError):
        await coalescer.append(100, [draft(9)])  # and the next caller is not stuck


async def test_under_load_writes_start_at_most_every_commit_interval(world: World) -> None:
    log = CountingLog(world.services.db)
    coalescer = AppendCoalescer(log, commit_interval=1.0)
    await coalescer.append(100, [draft(0)])  # after a quiet spell: written at once

    async def later(n: int) -> None:
        await asyncio.sleep(0.005 * n)
        await coalescer.append(100, [draft(n)])

    # Arriving one by one within the interval of the first write: they share the next one.
    await asyncio.gather(*(later(n) for n in range(1, 6)))
    assert log.transactions == 2


async def test_after_a_quiet_spell_nobody_waits(world: World) -> None:
    now = [0.0]
    log = CountingLog(world.services.db)
    coalescer = AppendCoalescer(log, commit_interval=3600.0, clock=lambda: now[0])
    for n in range(3):
        now[0] += 3601.0  # an hour after the last write: waiting would hang the test
        await asyncio.wait_for(coalescer.append(100, [draft(n)]), timeout=30)
    assert log.transactions == 3


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_write(world: World) -> None:
    log = CountingLog(world.services.db)
    coalescer = AppendCoalescer(log, commit_interval=0.2)
    await coalescer.append(100, [draft(0, partition_key="k")])  # the next write waits
    leaving = asyncio.create_task(coalescer.append(100, [draft(1, partition_key="k")]))
    staying = asyncio.create_task(coalescer.append(100, [draft(2, partition_key="k")]))
    await asyncio.sleep(0)  # both are waiting for the same write
    leaving.cancel()
    [result] = await staying
    assert leaving.cancelled()
    assert log.transactions == 2
    async with world.services.db.read() as conn:
        stored = await queries.read_after(conn, 100, "default", result.partition, -1, 10)
    assert [e.payload for e in stored] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


async def test_the_publishers_writes_are_paced_for_the_database(world: World) -> None:
    """SQLite's one write lock is taken by every write transaction: its appends wait longer
    to share one."""
    db = world.services.db
    pace = world.services.publisher.coalescer.commit_interval
    assert pace == (SQLITE_COMMIT_INTERVAL if db.is_sqlite else DEFAULT_COMMIT_INTERVAL)
    assert SQLITE_COMMIT_INTERVAL > DEFAULT_COMMIT_INTERVAL
