"""The dispatcher's memory of this process's appended events: only contiguous runs."""

from __future__ import annotations

from datetime import UTC, datetime

from junctionbox.domain.events import StoredEvent
from junctionbox.engine.announced_events import AnnouncedEvents

KEY = (100, "orders", 0)


def event(offset: int, partition: int = 0) -> StoredEvent:
    return StoredEvent(
        org_id=100,
        stream="orders",
        partition=partition,
        offset=offset,
        event_id=f"e{offset}",
        source="shop",
        type="order.created",
        subject=None,
        time=None,
        received_at=datetime(2026, 12, 5, tzinfo=UTC),
        partition_key=None,
        data_content_type="application/json",
        data_schema=None,
        extensions={},
        payload=b"{}",
    )


def offsets(events: list[StoredEvent]) -> list[int]:
    return [e.offset for e in events]


def test_events_from_an_offset_up_to_the_last_one_kept() -> None:
    kept = AnnouncedEvents()
    for offset in (5, 6, 7):
        kept.add(event(offset))
    assert offsets(kept.from_offset(KEY, 5)) == [5, 6, 7]
    assert offsets(kept.from_offset(KEY, 7)) == [7]
    assert kept.from_offset(KEY, 4) == []  # offset 4 was never announced here
    assert kept.from_offset(KEY, 8) == []
    assert kept.from_offset((100, "orders", 1), 5) == []


def test_a_hole_starts_the_partition_again() -> None:
    kept = AnnouncedEvents()
    kept.add(event(5))
    kept.add(event(7))  # 6 was appended elsewhere
    assert kept.from_offset(KEY, 5) == []
    assert offsets(kept.from_offset(KEY, 7)) == [7]
    kept.add(event(6))  # announced late: nothing after it is certain
    assert kept.from_offset(KEY, 7) == []
    assert offsets(kept.from_offset(KEY, 6)) == [6]


def test_dispatched_events_are_forgotten() -> None:
    kept = AnnouncedEvents()
    for offset in range(4):
        kept.add(event(offset))
    kept.forget_before(KEY, 2)
    assert kept.from_offset(KEY, 1) == []
    assert offsets(kept.from_offset(KEY, 2)) == [2, 3]
    kept.forget_before(KEY, 4)
    assert kept.from_offset(KEY, 3) == []
    kept.add(event(4))
    assert offsets(kept.from_offset(KEY, 4)) == [4]


def test_a_partition_keeps_its_latest_events_and_partitions_are_bounded() -> None:
    kept = AnnouncedEvents(per_partition=3, partitions=2)
    for offset in range(5):
        kept.add(event(offset))
    assert kept.from_offset(KEY, 1) == []
    assert offsets(kept.from_offset(KEY, 2)) == [2, 3, 4]
    kept.add(event(0, partition=1))
    kept.add(event(0, partition=2))  # a third partition: the others are forgotten
    assert kept.from_offset(KEY, 2) == []
    assert offsets(kept.from_offset((100, "orders", 2), 0)) == [0]


def test_payload_bytes_are_bounded_and_counted_back() -> None:
    kept = AnnouncedEvents(payload_bytes=10)  # each event's payload is 2 bytes
    for offset in range(5):
        kept.add(event(offset))
    assert offsets(kept.from_offset(KEY, 0)) == [0, 1, 2, 3, 4]
    kept.forget_before(KEY, 3)  # 4 bytes kept
    kept.add(event(5))
    kept.add(event(6))
    kept.add(event(7))  # 10 bytes
    assert offsets(kept.from_offset(KEY, 3)) == [3, 4, 5, 6, 7]
    kept.add(event(8))  # over the bound: everything is forgotten, this one kept
    assert kept.from_offset(KEY, 7) == []
    assert offsets(kept.from_offset(KEY, 8)) == [8]
    kept.add(event(0, partition=1))  # a hole-free restart elsewhere is counted too
    kept.forget_before(KEY, 9)
    for offset in range(1, 5):
        kept.add(event(offset, partition=1))
    assert offsets(kept.from_offset((100, "orders", 1), 0)) == [0, 1, 2, 3, 4]
