"""Appending to the log: offsets, partitions, duplicates and concurrency, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import pytest
from tests.support import World

from junctionbox.domain.events import EventDraft, StoredEvent
from junctionbox.domain.partitioning import partition_for
from junctionbox.services.container import Services
from junctionbox.services.event_log import EVENTS_CHANNEL, TenantDrafts
from junctionbox.store.pg_listener import asyncpg_dsn
from junctionbox.store.queries import events as queries


def draft(n: int, **fields: object) -> EventDraft:
    payload = b'{"n": %d}' % n
    return EventDraft(
        type="order.created", payload=payload, value={"n": n}, has_value=True, **fields
    )  # type: ignore[arg-type]


async def test_offsets_are_contiguous_per_partition_and_keys_stick(world: World) -> None:
    log = world.services.event_log
    results = await log.append(100, [draft(n, partition_key=f"k{n % 3}") for n in range(30)])
    by_partition: dict[int, list[int]] = {}
    for result, n in zip(results, range(30), strict=True):
        assert result.partition == partition_for(f"k{n % 3}", 4)
        by_partition.setdefault(result.partition, []).append(result.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    async with world.services.db.read() as conn:
        parts = await queries.partitions(conn, 100, "default")
    assert sum(p.event_count for p in parts) == 30
    assert sum(p.byte_count for p in parts) == sum(len(draft(n).payload) for n in range(30))


async def test_payload_and_attributes_come_back_as_stored(world: World) -> None:
    log = world.services.event_log
    raw = b'{ "b" : 1.50,\n "a": [1,2] }'
    event = EventDraft(
        type="t.x", payload=raw, value=None, has_value=True, subject="s", extensions={"x": 1}
    )
    [result] = await log.append(100, [event], stream="audit")
    async with world.services.db.read() as conn:
        [stored] = await queries.read_after(conn, 100, "audit", result.partition, -1, 10)
    assert stored.payload == raw
    assert (stored.subject, stored.extensions, stored.event_id) == ("s", {"x": 1}, result.event_id)
    assert result.event_id.startswith("evt_")


async def test_a_repeated_source_and_id_is_acknowledged_not_stored_twice(world: World) -> None:
    log = world.services.event_log
    first = await log.append(100, [draft(1, event_id="e-1", source="crm")])
    again = await log.append(
        100,
        [
            draft(2, event_id="e-1", source="crm"),
            draft(3, event_id="e-1", source="erp"),
            draft(4, event_id="e-2", source="erp"),
            draft(5, event_id="e-2", source="erp"),
        ],
    )
    assert again[0].duplicate
    assert again[0].offset == first[0].offset
    assert not again[1].duplicate
    assert not again[2].duplicate
    assert again[3].duplicate
    assert again[3].offset == again[2].offset
    other_tenant = await log.append(200, [draft(6, event_id="e-1", source="crm")])
    assert not other_tenant[0].duplicate
    async with world.services.db.read() as conn:
        count = await queries.count(conn, queries.EventFilter(100, "default"))
    assert count == 3


async def test_concurrent_appends_get_distinct_gapless_offsets(world: World) -> None:
    log = world.services.event_log

    async def one(n: int) -> list[int]:
        results = await log.append(100, [draft(n, partition_key="same")] * 1)
        return [r.offset for r in results]

    offsets = sorted(
        o for batch in await asyncio.gather(*(one(n) for n in range(20))) for o in batch
    )
    assert offsets == list(range(20))


async def test_concurrent_publishers_of_one_id_store_it_once(world: World) -> None:
    log = world.services.event_log
    results = await asyncio.gather(
        *(log.append(100, [draft(n, event_id="same", partition_key=str(n))]) for n in range(8))
    )
    assert len({(r[0].partition, r[0].offset) for r in results}) == 1
    assert sum(not r[0].duplicate for r in results) == 1


async def test_listeners_hear_committed_events(world: World, services: Services) -> None:
    heard: list[str] = []
    services.event_log.listeners.append(lambda events: heard.extend(e.event_id for e in events))
    results = await services.event_log.append(100, [draft(1), draft(2)])
    assert sorted(heard) == sorted(r.event_id for r in results)


async def test_an_append_to_a_stream_deleted_meanwhile_creates_it_again(world: World) -> None:
    log = world.services.event_log
    await log.append(100, [draft(1, partition_key="k")], stream="gone")  # its count is kept
    async with world.services.db.write() as conn:
        await queries.delete_stream(conn, 100, "gone")
    [result] = await log.append(100, [draft(2, partition_key="k")], stream="gone")
    assert (result.offset, result.duplicate) == (0, False)
    async with world.services.db.read() as conn:
        parts = await queries.partitions(conn, 100, "gone")
        [event] = await queries.read(conn, queries.EventFilter(100, "gone"), limit=10)
    assert sum(p.event_count for p in parts) == 1
    assert event.payload == b'{"n": 2}'


async def test_each_partition_of_an_append_is_announced_with_its_range(world: World) -> None:
    if world.services.db.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's; SQLite has one process to tell")
    listener = await asyncpg.connect(asyncpg_dsn(world.services.db.url))
    heard: list[dict[str, object]] = []
    try:
        await listener.add_listener(
            EVENTS_CHANNEL, lambda *args: heard.append(orjson.loads(args[3]))
        )
        results = await world.services.event_log.append(
            100, [draft(n, partition_key=f"key-{n % 8}") for n in range(24)]
        )
        ranges: dict[int, list[int]] = {}
        for result in results:
            ranges.setdefault(result.partition, []).append(result.offset)
        for _ in range(100):
            if len(heard) >= len(ranges):
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    assert len(ranges) > 1  # the batch spans partitions: one statement reserves them all
    assert sorted(heard, key=lambda m: int(m["p"])) == [  # type: ignore[call-overload]
        {"o": 100, "s": "default", "p": p, "f": min(o), "l": max(o)}
        for p, o in sorted(ranges.items())
    ]


async def test_an_append_to_a_missing_partition_finds_none(world: World) -> None:
    await world.services.event_log.append(100, [draft(1)])  # makes the stream's partitions
    reservations = [
        queries.Reservation("default", 0, 1, 5),
        queries.Reservation("default", 99, 1, 5),
    ]

    async def append_and_roll_back() -> None:
        async with world.services.db.write() as conn:
            assert await queries.append_events(conn, 100, reservations, lambda _: []) is None
            raise LookupError("the caller rolls back")  # as the event log does

    with pytest.raises(LookupError):
        await append_and_roll_back()
    async with world.services.db.read() as conn:
        parts = await queries.partitions(conn, 100, "default")
    assert sum(p.event_count for p in parts) == 1


# --- appends committed on their own (the group commit's way: id-less drafts, known streams) ---


async def test_parts_appended_together_get_gapless_offsets_per_tenant(world: World) -> None:
    log = world.services.event_log
    await log.append(100, [draft(0, partition_key="k")])  # the streams' counts are kept
    await log.append(200, [draft(0, partition_key="k")], stream="audit")
    results, stored = await log.append_together(
        [
            TenantDrafts(100, [draft(n, partition_key="k") for n in range(1, 4)]),
            TenantDrafts(200, [draft(n, partition_key="k") for n in range(1, 3)], "audit"),
        ]
    )
    assert [[r.offset for r in part] for part in results] == [[1, 2, 3], [1, 2]]
    assert [r.stream for r in results[1]] == ["audit", "audit"]
    assert [(e.org_id, e.offset) for e in stored] == [
        (100, 1),
        (100, 2),
        (100, 3),
        (200, 1),
        (200, 2),
    ]
    async with world.services.db.read() as conn:
        found = await queries.read_after(conn, 100, "default", results[0][0].partition, 0, 10)
        audit = await queries.read_after(conn, 200, "audit", results[1][0].partition, 0, 10)
    assert [(e.event_id, e.payload) for e in found] == [
        (r.event_id, b'{"n": %d}' % n) for n, r in enumerate(results[0], start=1)
    ]
    assert [e.event_id for e in audit] == [r.event_id for r in results[1]]


async def test_concurrent_appends_together_get_distinct_gapless_offsets(world: World) -> None:
    log = world.services.event_log
    await log.append(100, [draft(0, partition_key="same")])

    async def one(n: int) -> int:
        results, _ = await log.append_together(
            [TenantDrafts(100, [draft(n, partition_key="same")])]
        )
        return results[0][0].offset

    offsets = sorted(await asyncio.gather(*(one(n) for n in range(1, 21))))
    assert offsets == list(range(1, 21))


async def test_appended_together_to_a_stream_deleted_meanwhile_creates_it_again(
    world: World,
) -> None:
    log = world.services.event_log
    await log.append(100, [draft(1, partition_key="k")], stream="gone")  # its count is kept
    async with world.services.db.write() as conn:
        await queries.delete_stream(conn, 100, "gone")
    results, stored = await log.append_together(
        [TenantDrafts(100, [draft(2, partition_key="k")], "gone")]
    )
    assert [(r.offset, r.duplicate) for r in results[0]] == [(0, False)]
    assert [e.payload for e in stored] == [b'{"n": 2}']
    async with world.services.db.read() as conn:
        parts = await queries.partitions(conn, 100, "gone")
    assert sum(p.event_count for p in parts) == 1


async def test_a_committed_append_to_a_missing_partition_stores_nothing(world: World) -> None:
    db = world.services.db
    await world.services.event_log.append(100, [draft(1)])  # makes the stream's partitions
    made: list[list[int]] = []

    def events_at(firsts: Sequence[int]) -> list[StoredEvent]:
        made.append(list(firsts))
        return []

    part = queries.TenantAppend(
        100,
        [queries.Reservation("default", 0, 1, 5), queries.Reservation("default", 99, 1, 5)],
        events_at,
    )
    async with db.read() as conn:
        before = await queries.partitions(conn, 100, "default")
    async with db.driver() as driver:
        assert await queries.append_committed(driver, db.engine.dialect, [part]) is None
    async with db.read() as conn:
        after = await queries.partitions(conn, 100, "default")
    assert after == before  # partition 0's reservation did not stay either
    assert made in ([], [[0, 0]])  # PostgreSQL makes the rows (relative offsets) first


async def test_appends_together_are_announced_with_their_ranges(world: World) -> None:
    if world.services.db.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's; SQLite has one process to tell")
    log = world.services.event_log
    await log.append(100, [draft(0, partition_key="key-0")])
    listener = await asyncpg.connect(asyncpg_dsn(world.services.db.url))
    heard: list[dict[str, object]] = []
    try:
        await listener.add_listener(
            EVENTS_CHANNEL, lambda *args: heard.append(orjson.loads(args[3]))
        )
        [results], _ = await log.append_together(
            [TenantDrafts(100, [draft(n, partition_key=f"key-{n % 8}") for n in range(24)])]
        )
        ranges: dict[int, list[int]] = {}
        for result in results:
            ranges.setdefault(result.partition, []).append(result.offset)
        for _ in range(100):
            if len(heard) >= len(ranges):
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    assert len(ranges) > 1
    assert sorted(heard, key=lambda m: int(m["p"])) == [  # type: ignore[call-overload]
        {"o": 100, "s": "default", "p": p, "f": min(o), "l": max(o)}
        for p, o in sorted(ranges.items())
    ]


async def test_a_driver_connection_whose_work_failed_is_closed_not_pooled(world: World) -> None:
    db = world.services.db
    used: list[Any] = []

    async def failing_work() -> None:
        async with db.driver() as driver:
            used.append(driver)
            raise LookupError("the work failed")

    with pytest.raises(LookupError):
        await failing_work()
    [driver] = used
    # asyncpg's connection, or aiosqlite's (which drops its sqlite3 connection on close)
    assert driver.is_closed() if db.dialect == "postgresql" else driver._connection is None
    async with db.driver() as again:
        assert again is not driver


@pytest.mark.parametrize("count", [1, 2, 4, 5, 9])
async def test_appends_together_of_every_size_store_what_was_sent(world: World, count: int) -> None:
    # PostgreSQL sends a few rows as scalar parameters and more as arrays (pg_rows): both
    # forms, for the reservations and for the events, must store the same thing.
    log = world.services.event_log
    drafts = [draft(n, partition_key=f"k{n}", subject=f"s{n}") for n in range(count)]
    results, stored = await log.append_together(
        [TenantDrafts(100, drafts[: count // 2]), TenantDrafts(200, drafts[count // 2 :])]
    )
    assert [len(r) for r in results] == [count // 2, count - count // 2]
    assert sorted(e.payload for e in stored) == sorted(d.payload for d in drafts)
    async with world.services.db.read() as conn:
        for result, event in zip([*results[0], *results[1]], drafts, strict=True):
            org_id = 100 if event in drafts[: count // 2] else 200
            after = result.offset - 1
            [read] = await queries.read_after(conn, org_id, "default", result.partition, after, 1)
            assert (read.payload, read.subject, read.offset) == (
                event.payload,
                event.subject,
                result.offset,
            )
