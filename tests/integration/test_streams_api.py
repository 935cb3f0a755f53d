"""Streams: configuration, reading by offset and time, metrics, consumer groups, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support import World

from junctionbox.services import streams
from junctionbox.services.streams import StreamService
from junctionbox.store.queries import consumer_offsets
from junctionbox.store.queries import events as event_queries

EVENTS = "/api/v1/integration/events"


async def publish(
    world: World, count: int, *, stream: str = "s1", org: int = 100, key: str = "k"
) -> list[dict]:
    body = {
        "events": [
            {"type": f"t.{n % 2}", "data": {"n": n}, "partitionKey": key} for n in range(count)
        ]
    }
    response = await world.client.post(
        f"{EVENTS}/publish?orgId={org}&stream={stream}", json=body, headers=world.headers["admin"]
    )
    assert response.status_code == 201, response.text
    return response.json()["events"]


async def test_configure_a_stream_and_only_grow_its_partitions(world: World) -> None:
    http, user = world.client, world.headers["user_a"]
    created = await http.put(
        f"{EVENTS}/partition",
        json={"streamId": "orders", "partitionCount": 2, "retentionSeconds": 3600},
        headers=user,
    )
    assert created.status_code == 201
    assert [p["partition"] for p in created.json()["partitions"]] == [0, 1]
    grown = await http.put(
        f"{EVENTS}/partition", json={"streamId": "orders", "partitionCount": 6}, headers=user
    )
    assert grown.status_code == 200
    assert grown.json()["partitionCount"] == 6
    shrunk = await http.put(
        f"{EVENTS}/partition", json={"streamId": "orders", "partitionCount": 1}, headers=user
    )
    assert shrunk.status_code == 409
    listed = (await http.get(f"{EVENTS}/streams", headers=user)).json()["streams"]
    assert [s["streamId"] for s in listed] == ["orders"]
    bad = await http.put(
        f"{EVENTS}/partition", json={"streamId": "no spaces", "partitionCount": 1}, headers=user
    )
    assert bad.status_code == 400


async def test_read_by_offset_range_time_range_and_type(world: World) -> None:
    placed = await publish(world, 10)
    partition = placed[0]["partition"]
    http, user = world.client, world.headers["user_a"]
    page = (
        await http.get(
            f"{EVENTS}/stream/s1?partition={partition}&fromOffset=3&toOffset=6&limit=2",
            headers=user,
        )
    ).json()
    assert [e["offset"] for e in page["events"]] == [3, 4]
    assert (page["total"], page["hasMore"]) == (4, True)
    assert page["events"][0]["data"] == {"n": 3}
    typed = (await http.get(f"{EVENTS}/stream/s1?type=t.1", headers=user)).json()
    assert [e["data"]["n"] for e in typed["events"]] == [1, 3, 5, 7, 9]
    prefix = (await http.get(f"{EVENTS}/stream/s1?type=t.*", headers=user)).json()
    assert prefix["total"] == 10
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = await http.get(f"{EVENTS}/stream/s1", params={"from": future}, headers=user)
    assert later.json()["total"] == 0
    assert (await http.get(f"{EVENTS}/stream/missing", headers=user)).status_code == 404


async def test_metrics_report_events_bytes_rate_and_lag(world: World) -> None:
    await publish(world, 6)
    http, user = world.client, world.headers["user_a"]
    read = await http.post(
        f"{EVENTS}/consumer-groups/billing/read", json={"streamId": "s1", "limit": 4}, headers=user
    )
    assert read.status_code == 200
    await http.post(
        f"{EVENTS}/consumer-groups/billing/commit",
        json={"streamId": "s1", "offsets": read.json()["nextOffsets"]},
        headers=user,
    )
    [metrics] = (await http.get(f"{EVENTS}/metrics?streamId=s1", headers=user)).json()["streams"]
    assert metrics["events"] == 6
    assert metrics["bytes"] == sum(len(f'{{"n":{n}}}') for n in range(6))
    assert metrics["eventsLastMinute"] == 6
    assert metrics["consumerLag"] == {"billing": 2}


async def test_a_consumer_group_reads_from_its_committed_offsets(world: World) -> None:
    await publish(world, 5)
    http, user = world.client, world.headers["user_a"]
    group = f"{EVENTS}/consumer-groups/g1"
    first = (
        await http.post(f"{group}/read", json={"streamId": "s1", "limit": 3}, headers=user)
    ).json()
    assert [e["data"]["n"] for e in first["events"]] == [0, 1, 2]
    again = (
        await http.post(f"{group}/read", json={"streamId": "s1", "limit": 3}, headers=user)
    ).json()
    assert again["events"] == first["events"]  # nothing committed yet
    await http.post(
        f"{group}/commit", json={"streamId": "s1", "offsets": first["nextOffsets"]}, headers=user
    )
    rest = (
        await http.post(f"{group}/read", json={"streamId": "s1", "limit": 10}, headers=user)
    ).json()
    assert [e["data"]["n"] for e in rest["events"]] == [3, 4]
    bad = await http.post(
        f"{group}/commit", json={"streamId": "s1", "offsets": {"0": 99}}, headers=user
    )
    assert bad.status_code == 400
    await http.post(f"{group}/seek", json={"streamId": "s1", "to": "earliest"}, headers=user)
    replay = (
        await http.post(f"{group}/read", json={"streamId": "s1", "limit": 10}, headers=user)
    ).json()
    assert len(replay["events"]) == 5
    reserved = await http.post(
        f"{EVENTS}/consumer-groups/$dispatcher/read", json={"streamId": "s1"}, headers=user
    )
    assert reserved.status_code == 400
    assert (await http.delete(f"{group}", headers=user)).status_code == 204
    assert (await http.get(f"{EVENTS}/consumer-groups", headers=user)).json()["positions"] == []


async def test_deleting_a_stream_removes_its_events(world: World) -> None:
    await publish(world, 3)
    http, user = world.client, world.headers["user_a"]
    assert (await http.delete(f"{EVENTS}/stream/s1", headers=user)).status_code == 204
    assert (await http.get(f"{EVENTS}/stream/s1", headers=user)).status_code == 404
    assert (await http.delete(f"{EVENTS}/stream/s1", headers=user)).status_code == 404
    again = await publish(world, 1)
    assert again[0]["offset"] == 0


async def test_streams_are_invisible_to_other_tenants(world: World) -> None:
    await publish(world, 2)
    http, other = world.client, world.headers["user_b"]
    assert (await http.get(f"{EVENTS}/stream/s1", headers=other)).status_code == 404
    assert (await http.get(f"{EVENTS}/stream/s1?orgId=100", headers=other)).status_code == 404
    assert (await http.delete(f"{EVENTS}/stream/s1", headers=other)).status_code == 404
    assert (await http.get(f"{EVENTS}/metrics", headers=other)).json()["streams"] == []
    read = await http.post(
        f"{EVENTS}/consumer-groups/x/read", json={"streamId": "s1"}, headers=other
    )
    assert read.status_code == 404


async def test_retention_trims_by_age_and_size_but_waits_for_system_groups(world: World) -> None:
    svc = world.services
    http, user = world.client, world.headers["user_a"]
    await http.put(
        f"{EVENTS}/partition",
        json={
            "streamId": "s1",
            "partitionCount": 1,
            "retentionSeconds": 3600,
            "retentionBytes": 1024,
        },
        headers=user,
    )
    await publish(world, 10)
    later = StreamService(svc.db, clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    assert (await later.enforce_retention()).events == 0  # the dispatcher has not started here
    async with svc.db.write() as conn:
        await consumer_offsets.commit(conn, 100, "$dispatcher", "s1", {0: 4}, datetime.now(UTC))
    report = await later.enforce_retention()
    assert report.events == 4  # expired, but the dispatcher has read only offsets 0-3
    info = (await http.get(f"{EVENTS}/stream/s1", headers=user)).json()
    assert info["stream"]["partitions"][0]["firstOffset"] == 4
    assert [e["offset"] for e in info["events"]] == [4, 5, 6, 7, 8, 9]
    async with svc.db.write() as conn:
        await consumer_offsets.commit(conn, 100, "$dispatcher", "s1", {0: 10}, datetime.now(UTC))
    assert (await later.enforce_retention()).events == 6
    await publish(world, 200)  # about 2.5 KB in one partition, over the 1 KiB limit
    assert (await svc.streams.enforce_retention()).events == 0  # none dispatched yet
    async with svc.db.write() as conn:
        await consumer_offsets.commit(conn, 100, "$dispatcher", "s1", {0: 210}, datetime.now(UTC))
    assert (await svc.streams.enforce_retention()).events > 0
    [metrics] = (await http.get(f"{EVENTS}/metrics", headers=user)).json()["streams"]
    assert 0 < metrics["bytes"] <= 1024


async def test_retention_deletes_a_long_backlog_in_short_transactions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each transaction deletes at most TRIM_BATCH events: a shortened retention on a large
    log must not hold SQLite's one writer for the whole of it."""
    svc = world.services
    await world.client.put(
        f"{EVENTS}/partition",
        json={"streamId": "s1", "partitionCount": 1, "retentionSeconds": 3600},
        headers=world.headers["user_a"],
    )
    await publish(world, 10)
    async with svc.db.write() as conn:
        await consumer_offsets.commit(conn, 100, "$dispatcher", "s1", {0: 10}, datetime.now(UTC))
    monkeypatch.setattr(streams, "TRIM_BATCH", 3)
    trimmed_below: list[int] = []
    real_trim = event_queries.trim

    async def trim(conn: Any, org_id: int, stream: str, partition: int, below: int) -> Any:
        trimmed_below.append(below)
        return await real_trim(conn, org_id, stream, partition, below)

    monkeypatch.setattr(event_queries, "trim", trim)
    later = StreamService(svc.db, clock=lambda: datetime.now(UTC) + timedelta(hours=2))

    report = await later.enforce_retention()

    assert (report.streams, report.events) == (1, 10)
    assert trimmed_below == [3, 6, 9, 10]
