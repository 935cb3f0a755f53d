"""Large appends take the driver-level path (executemany, COPY on PostgreSQL): same rows."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from tests.support import World

from junctionbox.store.queries import events as queries

PUBLISH = "/api/v1/integration/events/publish"


def cloud_event(n: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"bulk-{n}",
        "source": "/bulk",
        "type": "bulk.made",
        "subject": f"s{n}",
        "time": "2024-05-01T10:00:00.123456+02:00",
        "partitionkey": f"k{n % 7}",
        "ext1": n,
        "data": {"n": n, "text": "é" * (n % 5)},
    }


async def test_a_large_batch_is_stored_field_for_field_and_repeats_are_duplicates(
    world: World,
) -> None:
    http, key = world.client, world.headers["key_a"]
    body = orjson.dumps([cloud_event(n) for n in range(150)])
    headers = {**key, "content-type": "application/cloudevents-batch+json"}
    first = await http.post(PUBLISH, content=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["accepted"] == 150
    async with world.services.db.read() as conn:
        stored = await queries.read(
            conn, queries.EventFilter(100, "default"), limit=1000, by_time=True
        )
    assert len(stored) == 150
    by_id = {event.event_id: event for event in stored}
    for n in (0, 77, 149):
        event = by_id[f"bulk-{n}"]
        assert (event.source, event.type, event.subject) == ("/bulk", "bulk.made", f"s{n}")
        assert event.time == datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
        assert event.received_at.tzinfo is not None
        assert event.partition_key == f"k{n % 7}"
        assert event.extensions == {"ext1": n}
        assert event.payload == orjson.dumps(cloud_event(n)["data"])
        assert event.size == len(event.payload)
    offsets = sorted((e.partition, e.offset) for e in stored)
    assert len(set(offsets)) == 150
    again = await http.post(PUBLISH, content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["duplicates"] == 150
