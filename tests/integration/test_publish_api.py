"""Publishing events over HTTP: envelopes, CloudEvents modes, validation, idempotency."""

from __future__ import annotations

import asyncio
import base64

import orjson
from tests.support import World

from junctionbox.store.queries import events as queries

PUBLISH = "/api/v1/integration/events/publish"


async def stored(world: World, org_id: int = 100, stream: str = "default") -> list:
    async with world.services.db.read() as conn:
        return await queries.read(
            conn, queries.EventFilter(org_id, stream), limit=1000, by_time=True
        )


async def test_one_event_is_stored_with_its_bytes_and_placement(world: World) -> None:
    body = b'{"type": "order.created", "data": {"id": 7,  "total": 1.50}, "subject": "o-7"}'
    response = await world.client.post(
        f"{PUBLISH}?orgId=100",
        content=body,
        headers={**world.headers["key_a"], "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    placed = response.json()
    assert placed["status"] == "accepted"
    assert (placed["stream"], placed["offset"]) == ("default", 0)
    [event] = await stored(world)
    assert event.payload == b'{"id": 7,  "total": 1.50}'
    assert (event.event_id, event.partition, event.subject) == (
        placed["id"],
        placed["partition"],
        "o-7",
    )


async def test_a_batch_returns_each_events_place(world: World) -> None:
    events = [{"type": "t.a", "data": {"n": n}, "partitionKey": "k"} for n in range(5)]
    response = await world.client.post(
        f"{PUBLISH}?orgId=100&stream=orders",
        json={"events": events},
        headers=world.headers["user_a"],
    )
    assert response.status_code == 201
    body = response.json()
    assert body["accepted"] == 5
    assert [e["offset"] for e in body["events"]] == [0, 1, 2, 3, 4]
    assert {e["stream"] for e in body["events"]} == {"orders"}
    assert len({e["partition"] for e in body["events"]}) == 1


async def test_cloudevents_structured_batch_and_binary_modes(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    structured = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/crm",
        "type": "contact.updated",
        "time": "2026-11-22T10:00:00Z",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data": {"name": "Ada"},
    }
    one = await http.post(
        PUBLISH,
        content=orjson.dumps(structured),
        headers={**key, "content-type": "application/cloudevents+json"},
    )
    assert one.status_code == 201, one.text
    batch = [
        {**structured, "id": "ce-2"},
        {
            **structured,
            "id": "ce-3",
            "data": None,
            "data_base64": base64.b64encode(b"\x00\xff").decode(),
            "datacontenttype": "application/octet-stream",
        },
    ]
    many = await http.post(
        PUBLISH,
        content=orjson.dumps(batch),
        headers={**key, "content-type": "application/cloudevents-batch+json"},
    )
    assert many.status_code == 422  # data and data_base64 together
    batch[1].pop("data")
    many = await http.post(
        PUBLISH,
        content=orjson.dumps(batch),
        headers={**key, "content-type": "application/cloudevents-batch+json"},
    )
    assert many.status_code == 201, many.text
    binary = await http.post(
        PUBLISH,
        content=b"<xml>hi</xml>",
        headers={
            **key,
            "content-type": "application/xml",
            "ce-specversion": "1.0",
            "ce-id": "ce-4",
            "ce-source": "/erp",
            "ce-type": "invoice.sent",
            "ce-subject": "inv%2042",
        },
    )
    assert binary.status_code == 201, binary.text
    by_id = {e.event_id: e for e in await stored(world)}
    assert by_id["ce-1"].extensions["traceparent"].startswith("00-0af7")
    assert by_id["ce-1"].time is not None
    assert by_id["ce-1"].source == "/crm"
    assert by_id["ce-3"].payload == b"\x00\xff"
    assert by_id["ce-4"].payload == b"<xml>hi</xml>"
    assert by_id["ce-4"].subject == "inv 42"
    assert by_id["ce-4"].data_content_type == "application/xml"


async def test_a_repeated_id_from_one_source_is_acknowledged_once(world: World) -> None:
    event = {"type": "t", "id": "same", "source": "crm", "data": {}}
    first = await world.client.post(PUBLISH, json=event, headers=world.headers["key_a"])
    again = await world.client.post(PUBLISH, json=event, headers=world.headers["key_a"])
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["status"] == "duplicate"
    assert again.json()["offset"] == first.json()["offset"]
    assert len(await stored(world)) == 1


async def test_bad_input_is_a_clear_4xx_and_stores_nothing(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    json_headers = {**key, "content-type": "application/json"}
    cases = [
        (b'{"type": "t", "data": ', json_headers, 400, "VALIDATION_ERROR"),
        (b'{"type": "t"}', {**key, "content-type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"data": {}}', json_headers, 422, "UNPROCESSABLE"),
        (b'{"type": "t", "data": {"a": "x\\u0000y"}}', json_headers, 422, "UNPROCESSABLE"),
        (b'{"type": "t", "data": "\xff\xfe"}', json_headers, 400, "VALIDATION_ERROR"),
        (
            b'{"type": "t", "data": ' + b"[" * 100 + b"]" * 100 + b"}",
            json_headers,
            422,
            "UNPROCESSABLE",
        ),
        (
            b'{"type": "t", "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
            json_headers,
            400,
            "VALIDATION_ERROR",
        ),
        (b'{"type": "has space", "data": 1}', json_headers, 422, "UNPROCESSABLE"),
        (b'{"type": "t", "time": "yesterday", "data": 1}', json_headers, 422, "UNPROCESSABLE"),
        (b'{"type": "t", "bogus": 1}', json_headers, 422, "UNPROCESSABLE"),
        (b"[]", json_headers, 400, "VALIDATION_ERROR"),
        (b'{"events": [{"type": "ok"}, {"nope": 1}]}', json_headers, 422, "UNPROCESSABLE"),
    ]
    for body, headers, status, code in cases:
        response = await http.post(PUBLISH, content=body, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), body[:60]
    missing = await http.post(PUBLISH, content=b'{"data": {}}', headers=json_headers)
    assert missing.json()["details"][0]["loc"] == ["body", "/type"]
    batch = await http.post(PUBLISH, content=cases[-1][0], headers=json_headers)
    assert batch.json()["details"][0]["loc"] == ["body", "/events/1/nope"]
    assert await stored(world) == []


async def test_limits_on_batch_size_and_event_size(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    too_many = {"events": [{"type": "t"}] * 1001}
    response = await http.post(PUBLISH, json=too_many, headers=key)
    assert (response.status_code, response.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    big = {"type": "t", "data": "x" * (64 * 1024 + 1)}
    response = await http.post(PUBLISH, json=big, headers=key)
    assert response.status_code == 413
    assert await stored(world) == []


async def test_partial_batches_answer_per_item(world: World) -> None:
    events = [{"type": "ok", "data": 1}, {"data": 2}, {"type": "ok", "data": 3}]
    response = await world.client.post(
        f"{PUBLISH}?partial=true", json={"events": events}, headers=world.headers["key_a"]
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [e["status"] for e in body["events"]] == ["accepted", "rejected", "accepted"]
    assert body["events"][1]["errors"][0]["pointer"] == "/events/1/type"
    assert len(await stored(world)) == 2


async def test_registered_schemas_validate_at_the_door(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    schema = {
        "type": "object",
        "properties": {"patient": {"type": "object", "properties": {"age": {"type": "integer"}}}},
        "required": ["patient"],
    }
    registered = await http.put(
        "/api/v1/integration/events/schema",
        json={"eventType": "patient.admitted", "schema": schema},
        headers=key,
    )
    assert registered.status_code == 201, registered.text
    bad = await http.post(
        PUBLISH, json={"type": "patient.admitted", "data": {"patient": {"age": "x"}}}, headers=key
    )
    assert bad.status_code == 422
    assert bad.json()["details"][0]["loc"] == ["body", "/data/patient/age"]
    good = await http.post(
        PUBLISH, json={"type": "patient.admitted", "data": {"patient": {"age": 3}}}, headers=key
    )
    assert good.status_code == 201
    other_tenant = await http.post(
        PUBLISH, json={"type": "patient.admitted", "data": {}}, headers=world.headers["key_b"]
    )
    assert other_tenant.status_code == 201  # org 200 has no such schema


async def test_idempotency_key_replays_and_refuses_a_different_body(world: World) -> None:
    http = world.client
    headers = {**world.headers["key_a"], "idempotency-key": "abc"}
    first = await http.post(PUBLISH, json={"type": "t", "data": 1}, headers=headers)
    again = await http.post(PUBLISH, json={"type": "t", "data": 1}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    different = await http.post(PUBLISH, json={"type": "t", "data": 2}, headers=headers)
    assert (different.status_code, different.json()["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    other_tenant = await http.post(
        PUBLISH,
        json={"type": "t", "data": 1},
        headers={**world.headers["key_b"], "idempotency-key": "abc"},
    )
    assert other_tenant.status_code == 201
    assert other_tenant.content != first.content
    assert len(await stored(world)) == 1


async def test_refused_requests_do_not_burn_the_key(world: World) -> None:
    headers = {**world.headers["key_a"], "idempotency-key": "k2"}
    refused = await world.client.post(PUBLISH, json={"data": 1}, headers=headers)
    assert refused.status_code == 422
    fixed = await world.client.post(PUBLISH, json={"type": "t", "data": 1}, headers=headers)
    assert fixed.status_code == 201


async def test_fifty_concurrent_requests_with_one_key_execute_once(world: World) -> None:
    headers = {**world.headers["key_a"], "idempotency-key": "burst"}
    body = {"events": [{"type": "t", "data": n} for n in range(10)]}
    responses = await asyncio.gather(
        *(world.client.post(PUBLISH, json=body, headers=headers) for _ in range(50))
    )
    statuses = {r.status_code for r in responses}
    assert statuses <= {201, 409}, statuses
    executed = [r for r in responses if r.status_code == 201]
    assert len({r.content for r in executed}) == 1
    assert len(await stored(world)) == 10


async def test_tenants_publish_into_their_own_logs(world: World) -> None:
    http = world.client
    assert (
        await http.post(f"{PUBLISH}?orgId=200", json={"type": "t"}, headers=world.headers["key_a"])
    ).status_code == 404
    unit = await http.post(
        f"{PUBLISH}?orgId=101", json={"type": "t"}, headers=world.headers["user_a"]
    )
    assert unit.status_code == 201
    assert len(await stored(world, 101)) == 1
    assert await stored(world, 100) == []
    assert (await http.post(PUBLISH, json={"type": "t"})).status_code == 401
