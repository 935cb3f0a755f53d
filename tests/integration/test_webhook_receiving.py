"""``POST /api/v1/webhooks/{sourceId}`` over the API, on SQLite and PostgreSQL: every scheme
verifies and stores the raw body as an event; refusals, replays and limits answer as
documented and are logged as INBOUND lines."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from tests.integration.webhook_helpers import (
    SENDERS,
    SOURCES,
    Sender,
    create_source,
    inbound_lines,
    logged_events,
    receipts,
    receive_path,
    source_fields,
)
from tests.support import World

from junctionbox.domain import signing
from junctionbox.domain.webhook_verification import GENERIC_MESSAGE
from junctionbox.engine.webhook_janitor import WebhookJanitor
from junctionbox.services.webhook_intake import WebhookIntake
from junctionbox.store.types import utcnow

ORG_A = 100


def body_of(msg_id: str, **extra: Any) -> bytes:
    # Spaces and key order kept on purpose: the stored bytes must be these bytes.
    return b'{"id": "%s",  "kind": "order.created", "n": 1%s}' % (
        msg_id.encode(),
        b"".join(b', "%s": %s' % (k.encode(), orjson.dumps(v)) for k, v in extra.items()),
    )


async def post(world: World, source_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return await world.client.post(receive_path(source_id), content=body, headers=headers)


# ---------------------------------------------------------------- every scheme


@pytest.mark.parametrize("scheme", sorted(SENDERS))
async def test_each_scheme_verifies_and_stores_the_raw_body(world: World, scheme: str) -> None:
    sender = SENDERS[scheme]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = body_of("msg_one")
    response = await post(world, source["id"], body, sender.headers(body, msg_id="msg_one"))
    assert response.status_code == 202, response.text
    assert response.json()["id"] == "msg_one"
    assert response.json()["status"] == "accepted"
    [event] = await logged_events(world.services, ORG_A)
    assert (event["event_id"], event["type"], event["payload"]) == (
        "msg_one",
        "order.created",
        body,
    )
    assert event["source"] == "webhook:" + source["id"]
    assert event["data_content_type"] == "application/json"
    [line] = await inbound_lines(world.services, source["id"])
    assert (line["direction"], line["status"], line["response_status"]) == (
        "INBOUND",
        "SUCCESS",
        202,
    )
    assert line["event_id"] == "msg_one"
    assert sender.secret not in orjson.dumps(line["request_headers"]).decode()


@pytest.mark.parametrize("scheme", sorted(SENDERS))
async def test_each_scheme_refuses_a_wrong_secret_and_a_tampered_body(
    world: World, scheme: str
) -> None:
    sender = SENDERS[scheme]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = body_of("msg_two")
    impostor = Sender(scheme, sender.verification, sender.secret[:-1] + "X")
    wrong = await post(world, source["id"], body, impostor.headers(body, msg_id="msg_two"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == GENERIC_MESSAGE
    assert wrong.json()["code"] == "UNAUTHORIZED"
    if scheme not in ("BASIC", "API_KEY"):  # credentials schemes do not sign the body
        signed = sender.headers(body, msg_id="msg_two")
        tampered = await post(world, source["id"], body.replace(b"1", b"2"), signed)
        assert tampered.status_code == 401
        assert tampered.json()["error"] == GENERIC_MESSAGE
    assert await logged_events(world.services, ORG_A) == []
    lines = await inbound_lines(world.services, source["id"])
    assert {(r["status"], r["response_status"], r["error_category"]) for r in lines} == {
        ("FAILED", 401, "UNAUTHORIZED")
    }
    assert all(r["error_message"] and r["error_message"] != GENERIC_MESSAGE for r in lines)


@pytest.mark.parametrize("scheme", ["STANDARD_WEBHOOKS", "STRIPE"])
async def test_stale_and_future_timestamps_are_refused(world: World, scheme: str) -> None:
    sender = SENDERS[scheme]
    source = await create_source(
        world.client, world.headers["user_a"], **source_fields(sender, toleranceSeconds=60)
    )
    body = body_of("msg_t")
    now = int(time.time())
    for at in (now - 120, now + 120):
        response = await post(
            world, source["id"], body, sender.headers(body, msg_id="msg_t", at=at)
        )
        assert response.status_code == 401
        assert response.json()["error"] == GENERIC_MESSAGE
    lines = await inbound_lines(world.services, source["id"])
    assert all("tolerance" in r["error_message"] for r in lines)
    ok = await post(world, source["id"], body, sender.headers(body, msg_id="msg_t", at=now - 30))
    assert ok.status_code == 202


# ---------------------------------------------------------------- replays and duplicates


async def test_a_resent_webhook_is_acknowledged_not_stored_twice(world: World) -> None:
    sender = SENDERS["STANDARD_WEBHOOKS"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = body_of("msg_r")
    first = await post(world, source["id"], body, sender.headers(body, msg_id="msg_r"))
    again = await post(world, source["id"], body, sender.headers(body, msg_id="msg_r"))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert again.json()["id"] == first.json()["id"] == "msg_r"
    assert again.json()["offset"] == first.json()["offset"]
    assert len(await logged_events(world.services, ORG_A)) == 1
    [receipt] = await receipts(world.services, source["id"])
    assert receipt["event_id"] == "msg_r"
    # The same id with another (validly signed) body is a replay of the id: refused.
    other = body_of("msg_r", extra=True)
    reused = await post(world, source["id"], other, sender.headers(other, msg_id="msg_r"))
    assert reused.status_code == 409
    assert len(await logged_events(world.services, ORG_A)) == 1


async def test_reject_duplicates_answers_409_to_a_repeated_id(world: World) -> None:
    sender = SENDERS["GITHUB"]
    fields = source_fields(sender, rejectDuplicates=True)
    source = await create_source(world.client, world.headers["user_a"], **fields)
    body = body_of("d-1")
    assert (
        await post(world, source["id"], body, sender.headers(body, msg_id="d-1"))
    ).status_code == 202
    repeated = await post(world, source["id"], body, sender.headers(body, msg_id="d-1"))
    assert repeated.status_code == 409
    assert repeated.json()["code"] == "CONFLICT"


async def test_concurrent_copies_of_one_message_store_one_event(world: World) -> None:
    sender = SENDERS["STANDARD_WEBHOOKS"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = body_of("msg_c")
    headers = sender.headers(body, msg_id="msg_c")
    responses = await asyncio.wait_for(
        asyncio.gather(*(post(world, source["id"], body, headers) for _ in range(8))), 30
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    assert {r.json()["id"] for r in responses} == {"msg_c"}
    assert len(await logged_events(world.services, ORG_A)) == 1


async def test_expired_receipts_are_purged_and_the_log_still_deduplicates(world: World) -> None:
    sender = SENDERS["STANDARD_WEBHOOKS"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = body_of("msg_x")
    assert (
        await post(world, source["id"], body, sender.headers(body, msg_id="msg_x"))
    ).status_code == 202
    purged = await world.services.webhooks.purge_expired(utcnow() + timedelta(days=4))
    assert purged == 1
    assert await receipts(world.services, source["id"]) == []
    again = await post(world, source["id"], body, sender.headers(body, msg_id="msg_x"))
    assert again.status_code == 200
    assert len(await logged_events(world.services, ORG_A)) == 1


async def test_without_a_message_id_each_webhook_is_a_new_event(world: World) -> None:
    sender = SENDERS["API_KEY"]
    fields = {"verification": {**sender.verification, "secret": sender.secret}}
    source = await create_source(world.client, world.headers["user_a"], **fields)
    body = b'{"n": 1}'
    for _ in range(2):
        response = await post(world, source["id"], body, {"x-partner-key": sender.secret})
        assert response.status_code == 202
        assert response.json()["id"].startswith("evt_")
    assert len(await logged_events(world.services, ORG_A)) == 2


# ---------------------------------------------------------------- event type, body, limits


async def test_event_type_from_a_header_and_from_the_body(world: World) -> None:
    sender = SENDERS["GITHUB"]
    by_header = source_fields(
        sender, eventTypeFrom="HEADER", eventType="X-GitHub-Event", eventTypePrefix="github."
    )
    source = await create_source(world.client, world.headers["user_a"], **by_header)
    body = b'{"ref": "main"}'
    headers = sender.headers(body, msg_id="g-1") | {"x-github-event": "push"}
    assert (await post(world, source["id"], body, headers)).status_code == 202
    missing = await post(world, source["id"], body, sender.headers(body, msg_id="g-2"))
    assert missing.status_code == 400

    by_body = source_fields(
        SENDERS["STRIPE"], eventTypeFrom="BODY", eventType="type", eventTypePrefix="stripe."
    )
    stripe_source = await create_source(world.client, world.headers["user_a"], **by_body)
    stripe_body = b'{"id": "evt_s1", "type": "charge.succeeded"}'
    stripe_headers = SENDERS["STRIPE"].headers(stripe_body)
    assert (await post(world, stripe_source["id"], stripe_body, stripe_headers)).status_code == 202
    not_json = b"type=charge.succeeded"
    refused = await post(world, stripe_source["id"], not_json, SENDERS["STRIPE"].headers(not_json))
    assert refused.status_code == 400
    assert refused.json()["code"] == "VALIDATION_ERROR"
    types = sorted(e["type"] for e in await logged_events(world.services, ORG_A))
    assert types == ["github.push", "stripe.charge.succeeded"]


async def test_a_form_body_with_a_fixed_type_is_stored_as_sent(world: World) -> None:
    sender = SENDERS["API_KEY"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = b"status=delivered&id=SM123"
    headers = sender.headers(body, msg_id="SM123") | {
        "content-type": "application/x-www-form-urlencoded"
    }
    assert (await post(world, source["id"], body, headers)).status_code == 202
    [event] = await logged_events(world.services, ORG_A)
    assert (event["payload"], event["data_content_type"]) == (
        body,
        "application/x-www-form-urlencoded",
    )
    broken = await post(
        world,
        source["id"],
        b"{not json",
        sender.headers(b"", msg_id="x") | {"content-type": "application/json"},
    )
    assert broken.status_code == 400


async def test_a_body_over_the_sources_limit_is_413(world: World) -> None:
    sender = SENDERS["API_KEY"]
    source = await create_source(
        world.client, world.headers["user_a"], **source_fields(sender, maxBodyBytes=100)
    )
    body = b'{"pad": "' + b"x" * 200 + b'"}'
    response = await post(world, source["id"], body, sender.headers(body, msg_id="big"))
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    [line] = await inbound_lines(world.services, source["id"])
    assert line["response_status"] == 413


async def test_unknown_and_disabled_sources_are_404(world: World) -> None:
    sender = SENDERS["API_KEY"]
    body = b"{}"
    unknown = await post(world, "whsrc_01J00000000000000000000000", body, sender.headers(body))
    assert unknown.status_code == 404
    malformed = await post(world, "x" * 300, body, sender.headers(body))
    assert malformed.status_code == 404
    source = await create_source(
        world.client, world.headers["user_a"], isActive=False, **source_fields(sender)
    )
    disabled = await post(world, source["id"], body, sender.headers(body))
    assert disabled.status_code == 404
    assert disabled.json()["error"] == unknown.json()["error"]


async def test_a_registered_schema_is_enforced_at_the_door(world: World) -> None:
    schema = {"type": "object", "required": ["orderId"]}
    registered = await world.client.put(
        "/api/v1/integration/events/schema",
        json={"eventType": "order.created", "schema": schema},
        headers=world.headers["user_a"],
    )
    assert registered.status_code == 201, registered.text
    sender = SENDERS["API_KEY"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    bad = b'{"n": 1}'
    refused = await post(world, source["id"], bad, sender.headers(bad, msg_id="s-1"))
    assert refused.status_code == 422
    good = b'{"orderId": 7}'
    assert (
        await post(world, source["id"], good, sender.headers(good, msg_id="s-2"))
    ).status_code == 202


async def test_inbound_lines_are_listed_by_the_logs_api(world: World) -> None:
    sender = SENDERS["API_KEY"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = b'{"n": 1}'
    await post(world, source["id"], body, sender.headers(body, msg_id="l-1"))
    listed = await world.client.get(
        "/api/v1/logs", params={"direction": "INBOUND"}, headers=world.headers["user_a"]
    )
    assert listed.status_code == 200, listed.text
    assert [row["eventId"] for row in listed.json()["logs"]] == ["l-1"]
    other = await world.client.get(
        "/api/v1/logs", params={"direction": "INBOUND"}, headers=world.headers["user_b"]
    )
    assert other.json()["logs"] == []


async def test_standard_webhooks_v1a_with_the_senders_public_key(world: World) -> None:
    private, public = signing.generate_keypair()
    fields = {"verification": {"scheme": "STANDARD_WEBHOOKS", "secret": public}}
    source = await create_source(world.client, world.headers["key_a"], **fields)
    body = b'{"n": 1}'
    now = int(time.time())
    headers = signing.webhook_headers("msg_ed", now, body, [private])
    assert headers["webhook-signature"].startswith("v1a,")
    assert (await post(world, source["id"], body, headers)).status_code == 202
    forged = signing.webhook_headers("msg_ed", now, body, [signing.generate_keypair()[0]])
    assert (await post(world, source["id"], body, forged)).status_code == 401


async def test_the_janitor_loop_purges_expired_receipts(world: World) -> None:
    sender = SENDERS["GITHUB"]
    source = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    body = b"{}"
    assert (
        await post(world, source["id"], body, sender.headers(body, msg_id="j-1"))
    ).status_code == 202
    svc = world.services
    # An intake whose clock is four days ahead: the receipt (kept three days) has expired.
    later = WebhookIntake(
        svc.db,
        svc.event_log,
        svc.schemas,
        svc.webhook_sources,
        replay_ttl=timedelta(days=3),
        clock=lambda: utcnow() + timedelta(days=4),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(WebhookJanitor(later, interval_seconds=0.01).run(stop))
    try:
        for _ in range(250):  # bounded: at most about 5 s
            if not await receipts(svc, source["id"]):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await receipts(svc, source["id"]) == []


async def test_a_units_source_stores_the_units_events(world: World) -> None:
    sender = SENDERS["API_KEY"]
    body = {"name": "unit-src", "eventType": "order.created", **source_fields(sender)}
    created = await world.client.post(
        SOURCES, params={"orgId": 101}, json=body, headers=world.headers["user_a"]
    )
    assert created.status_code == 201, created.text
    assert created.json()["orgId"] == 101
    payload = b'{"n": 1}'
    response = await post(
        world, created.json()["id"], payload, sender.headers(payload, msg_id="u-1")
    )
    assert response.status_code == 202
    [event] = await logged_events(world.services, 101)
    assert event["event_id"] == "u-1"
    assert await logged_events(world.services, ORG_A) == []
