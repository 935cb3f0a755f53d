"""POST /api/v1/integration/events/replay: stored events dispatched again, same webhook-id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.integration.dispatch_helpers import (
    EVENTS,
    add_integration,
    delivery_jobs,
    dispatcher,
    order,
    payload_of,
    publish_as,
    scheduled_rows,
    set_active,
)
from tests.support import World

from junctionbox.domain.delivery import Trigger, message_id
from junctionbox.queue.jobs import Job
from junctionbox.services import replay as replay_module

REPLAY = f"{EVENTS}/replay"


async def replay(world: World, body: dict[str, Any], *, caller: str = "user_a", org: int = 100):
    return await world.client.post(
        f"{REPLAY}?orgId={org}", json=body, headers=world.headers[caller]
    )


async def replayed(world: World) -> list[Job]:
    return [
        j for j in await delivery_jobs(world.services) if payload_of(j).trigger is Trigger.REPLAY
    ]


async def test_replay_by_offset_range_keeps_the_webhook_id(world: World) -> None:
    svc = world.services
    hook = await add_integration(svc, 100, "orders", eventType="order.*")
    placed = await publish_as(svc, 100, [order(n) for n in range(5)])
    partition = placed[0]["partition"]
    await dispatcher(svc).dispatch_pending()
    originals = {payload_of(j).event_id: payload_of(j).message_id for j in await delivery_jobs(svc)}
    body = {"stream": "orders", "partition": partition, "fromOffset": 1, "toOffset": 3}
    response = await replay(world, body)
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["dryRun"], result["events"], result["deliveries"]) == (False, 3, 3)
    replay_id = result["replayId"]
    assert replay_id.startswith("rpl_")
    jobs = await replayed(world)
    assert sorted(payload_of(j).event_id for j in jobs) == ["ord-1", "ord-2", "ord-3"]
    for job in jobs:
        payload = payload_of(job)
        assert payload.message_id == originals[payload.event_id]
        assert payload.message_id == message_id(100, "shop", payload.event_id, hook.id, 0)
        assert job.dedupe_key == f"replay:{replay_id}:{payload.message_id}"
        assert payload.correlation_id == replay_id
    again = await replay(world, body)
    assert again.json()["replayId"] != replay_id
    assert len(await replayed(world)) == 6  # a second replay is a second set of deliveries


async def test_replay_by_time_range_and_type(world: World) -> None:
    svc = world.services
    await add_integration(svc, 100, "everything", eventType="*")
    await publish_as(svc, 100, [order(1), {"type": "invoice.paid", "data": {}, "id": "inv-1"}])
    await asyncio.sleep(0.02)
    between = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.02)
    await publish_as(svc, 100, [order(2), {"type": "invoice.paid", "data": {}, "id": "inv-2"}])
    later = await replay(world, {"stream": "orders", "fromTime": between})
    assert later.json()["events"] == 2
    assert sorted(payload_of(j).event_id for j in await replayed(world)) == ["inv-2", "ord-2"]
    earlier = await replay(
        world, {"stream": "orders", "toTime": between, "eventTypes": ["order.*", "invoice.x"]}
    )
    assert (earlier.json()["events"], earlier.json()["deliveries"]) == (1, 1)
    everything = await replay(
        world, {"stream": "orders", "fromTime": "2000-01-01T00:00:00Z", "eventTypes": ["*"]}
    )
    assert everything.json()["events"] == 4


async def test_replay_to_one_integration_dry_run_and_matching_rules(world: World) -> None:
    svc = world.services
    first = await add_integration(svc, 100, "first")
    await add_integration(svc, 100, "second")
    await add_integration(svc, 100, "big-only", filter="event.data.total > 100")
    await add_integration(
        svc, 100, "later", schedulingMode="DELAYED", schedulingConfig={"delayMs": 600_000}
    )
    await publish_as(svc, 100, [order(1, total=500), order(2, total=5)])
    dry = await replay(world, {"stream": "orders", "fromOffset": 0, "dryRun": True})
    assert dry.status_code == 200
    assert dry.json() == {"replayId": None, "dryRun": True, "events": 2, "deliveries": 7}
    assert await delivery_jobs(svc) == []
    one = await replay(world, {"stream": "orders", "fromOffset": 0, "integrationId": first.id})
    assert one.json()["deliveries"] == 2
    assert {payload_of(j).integration_id for j in await replayed(world)} == {first.id}
    await replay(world, {"stream": "orders", "fromOffset": 0})
    assert len(await replayed(world)) == 2 + 7
    assert await scheduled_rows(svc) == []  # a replay sends now, whatever the schedule


async def test_invalid_replays_are_refused_with_the_field(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = world.services
    off = await add_integration(svc, 100, "off")
    await set_active(svc, off.id, False)
    own_only = await add_integration(svc, 100, "org-only", scope="ENTITY_ONLY")
    await publish_as(svc, 100, [order(n) for n in range(3)])
    await publish_as(svc, 101, [order(9)])
    cases: list[tuple[dict[str, Any], int, list[Any] | None]] = [
        ({"stream": "orders"}, 400, ["body", "fromOffset"]),
        ({"stream": "orders", "fromOffset": 0, "fromTime": "2020-01-01T00:00:00Z"}, 400, None),
        ({"stream": "orders", "fromOffset": 3, "toOffset": 1}, 400, ["body", "toOffset"]),
        (
            {"stream": "orders", "fromTime": "2030-01-01T00:00:00Z", "toTime": "2020-01-01T00:00Z"},
            400,
            ["body", "toTime"],
        ),
        ({"stream": "orders", "fromOffset": 0, "partition": 99}, 400, ["body", "partition"]),
        ({"stream": "orders", "fromOffset": 0, "eventTypes": ["a b"]}, 400, None),
        ({"stream": "orders", "fromOffset": 0, "eventTypes": ["a*b"]}, 400, None),
        ({"stream": "orders", "fromOffset": -1}, 400, ["body", "fromOffset"]),
        ({"stream": "orders", "fromOffset": 0, "bogus": 1}, 400, ["body", "bogus"]),
        ({"stream": "no such", "fromOffset": 0}, 400, ["body", "stream"]),
        ({"stream": "missing", "fromOffset": 0}, 404, None),
        ({"stream": "orders", "fromOffset": 0, "integrationId": "int_nope"}, 404, None),
        ({"stream": "orders", "fromOffset": 0, "integrationId": off.id}, 409, None),
    ]
    for body, status, loc in cases:
        response = await replay(world, body)
        assert response.status_code == status, (body, response.text)
        if loc is not None:
            assert loc in [d["loc"] for d in response.json()["details"]], (body, response.text)
    unit = await replay(
        world, {"stream": "orders", "fromOffset": 0, "integrationId": own_only.id}, org=101
    )
    assert unit.status_code == 400
    assert "ENTITY_ONLY" in unit.json()["error"]
    monkeypatch.setattr(replay_module, "MAX_REPLAY_EVENTS", 2)
    too_many = await replay(world, {"stream": "orders", "fromOffset": 0})
    assert too_many.status_code == 400
    assert "holds 3 events" in too_many.json()["error"]
    assert len(await replayed(world)) == 0  # nothing refused was enqueued
    within = await replay(world, {"stream": "orders", "fromOffset": 1})
    assert within.status_code == 202
    assert within.json()["deliveries"] == 2  # the organization's own ENTITY_ONLY integration


async def test_replay_is_tenant_scoped(world: World) -> None:
    svc = world.services
    theirs = await add_integration(svc, 200, "theirs")
    await add_integration(svc, 100, "ours")
    await publish_as(svc, 100, [order(1)])
    await publish_as(svc, 200, [order(2)], stream="private")
    body = {"stream": "orders", "fromOffset": 0}
    for caller in ("user_b", "key_b"):
        assert (await replay(world, body, caller=caller)).status_code == 404
    assert (await replay(world, {**body, "integrationId": theirs.id})).status_code == 404
    assert (await replay(world, {"stream": "private", "fromOffset": 0})).status_code == 404
    own = await replay(world, {"stream": "private", "fromOffset": 0}, caller="key_b", org=200)
    assert own.json()["deliveries"] == 1
    assert [payload_of(j).integration_id for j in await replayed(world)] == [theirs.id]
