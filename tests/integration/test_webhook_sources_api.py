"""``/api/v1/webhook-sources`` on SQLite and PostgreSQL: CRUD, masked secrets, rotation with
two active secrets, and tenant isolation."""

from __future__ import annotations

import orjson
from sqlalchemy import select
from tests.integration.webhook_helpers import (
    SENDERS,
    SOURCES,
    create_source,
    receive_path,
    source_fields,
)
from tests.support import World

from junctionbox.store.tables import audit_logs, webhook_sources


async def test_create_generates_a_secret_shown_once_and_masked_after(world: World) -> None:
    user = world.headers["user_a"]
    created = await create_source(world.client, user, name="billing", stream="partners")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["receiveUrl"] == "http://testserver" + receive_path(created["id"])
    assert created["id"].startswith("whsrc_")
    assert created["verification"]["scheme"] == "STANDARD_WEBHOOKS"
    assert (created["stream"], created["toleranceSeconds"], created["isActive"]) == (
        "partners",
        300,
        True,
    )
    [hint] = created["secrets"]
    assert hint["current"]
    assert hint["hint"] == "…" + secret[-4:]
    fetched = await world.client.get(f"{SOURCES}/{created['id']}", headers=user)
    assert fetched.status_code == 200
    assert "secret" not in fetched.json()
    assert secret not in fetched.text
    listed = await world.client.get(SOURCES, headers=user)
    assert [s["id"] for s in listed.json()["sources"]] == [created["id"]]
    assert listed.json()["total"] == 1
    async with world.services.db.read() as conn:
        stored = (await conn.execute(select(webhook_sources.c.secrets))).scalar_one()
        audited = (await conn.execute(select(audit_logs))).mappings().all()
    assert secret not in orjson.dumps(stored).decode()
    assert audited
    assert all(secret not in str(dict(row)) for row in audited)


async def test_a_given_secret_is_not_echoed(world: World) -> None:
    sender = SENDERS["GITHUB"]
    created = await create_source(world.client, world.headers["user_a"], **source_fields(sender))
    assert created["secret"] is None
    assert sender.secret not in orjson.dumps(created).decode()


async def test_update_and_delete(world: World) -> None:
    user = world.headers["user_a"]
    created = await create_source(world.client, user, name="one")
    path = f"{SOURCES}/{created['id']}"
    patched = await world.client.patch(
        path,
        json={
            "name": "renamed",
            "isActive": False,
            "eventTypeFrom": "HEADER",
            "eventType": "X-Event",
            "toleranceSeconds": 60,
        },
        headers=user,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["isActive"], body["eventTypeFrom"], body["toleranceSeconds"]) == (
        "renamed",
        False,
        "HEADER",
        60,
    )
    assert body["secrets"][0]["hint"] == created["secrets"][0]["hint"]  # secrets kept
    # Changing the scheme needs a secret that fits it.
    wrong = await world.client.patch(
        path, json={"verification": {"scheme": "STRIPE", "secret": " "}}, headers=user
    )
    assert wrong.status_code == 400
    to_key = await world.client.patch(
        path,
        json={"verification": {"scheme": "API_KEY", "header": "X-Key", "secret": "k-1"}},
        headers=user,
    )
    assert to_key.status_code == 200, to_key.text
    assert to_key.json()["verification"]["scheme"] == "API_KEY"
    to_github = await world.client.patch(
        path, json={"verification": {"scheme": "GITHUB"}}, headers=user
    )
    assert to_github.status_code == 200, to_github.text
    assert to_github.json()["verification"]["header"] is None
    nulled = await world.client.patch(path, json={"name": None}, headers=user)
    assert nulled.status_code == 400
    assert (await world.client.delete(path, headers=user)).status_code == 204
    assert (await world.client.get(path, headers=user)).status_code == 404


async def test_bad_configurations_are_400_and_names_unique(world: World) -> None:
    user = world.headers["user_a"]
    cases = [
        {"name": "x", "eventType": "a", "verification": {}},
        {"name": "x", "eventType": "a", "verification": {"scheme": "HMAC_SHA256"}},
        {"name": "x", "eventType": "a", "verification": {"scheme": "BASIC"}},
        {"name": "x", "eventType": "a b", "verification": {"scheme": "GITHUB"}},
        {"name": "x", "eventType": "a", "verification": {"scheme": "NOPE"}},
        {
            "name": "x",
            "eventType": "a",
            "verification": {"scheme": "STANDARD_WEBHOOKS", "secret": "plain"},
        },
        {"name": "x", "eventType": "a", "unknown": 1, "verification": {"scheme": "GITHUB"}},
    ]
    for body in cases:
        response = await world.client.post(SOURCES, json=body, headers=user)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) >= {"error", "code", "statusCode", "timestamp", "requestId"}
    await create_source(world.client, user, name="taken")
    again = await world.client.post(
        SOURCES,
        json={"name": "taken", "eventType": "a", "verification": {"scheme": "GITHUB"}},
        headers=user,
    )
    assert again.status_code == 409


async def test_rotation_keeps_two_secrets_active_then_one(world: World) -> None:
    user = world.headers["user_a"]
    sender = SENDERS["API_KEY"]
    created = await create_source(world.client, user, **source_fields(sender))
    rotate = f"{SOURCES}/{created['id']}/rotate"
    rotated = await world.client.post(rotate, json={}, headers=user)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret
    assert new_secret != sender.secret
    assert [s["current"] for s in rotated.json()["secrets"]] == [True, False]
    assert rotated.json()["secrets"][1]["expiresAt"] is not None
    target = receive_path(created["id"])
    for key in (sender.secret, new_secret):  # both verify during the overlap
        response = await world.client.post(target, content=b"{}", headers={"x-partner-key": key})
        assert response.status_code == 202, response.text
    third = await world.client.post(
        rotate, json={"secret": "third-key", "overlapSeconds": 0}, headers=user
    )
    assert third.json()["secret"] is None
    assert len(third.json()["secrets"]) == 1
    for key, status in ((new_secret, 401), (sender.secret, 401), ("third-key", 202)):
        response = await world.client.post(target, content=b"{}", headers={"x-partner-key": key})
        assert response.status_code == status
    too_long = await world.client.post(rotate, json={"overlapSeconds": 10**9}, headers=user)
    assert too_long.status_code == 400


async def test_another_tenant_can_neither_read_nor_manage_a_source(world: World) -> None:
    created = await create_source(world.client, world.headers["user_a"], name="private")
    path = f"{SOURCES}/{created['id']}"
    for who in ("user_b", "key_b"):
        headers = world.headers[who]
        assert (await world.client.get(path, headers=headers)).status_code == 404
        assert (
            await world.client.patch(path, json={"name": "x"}, headers=headers)
        ).status_code == 404
        assert (
            await world.client.post(f"{path}/rotate", json={}, headers=headers)
        ).status_code == 404
        assert (await world.client.delete(path, headers=headers)).status_code == 404
        listed = await world.client.get(SOURCES, headers=headers)
        assert listed.json()["sources"] == []
    # An ADMIN acting for the other tenant sees nothing either; acting for the owner, it does.
    admin = world.headers["admin"]
    assert (await world.client.get(path, params={"orgId": 200}, headers=admin)).status_code == 404
    assert (await world.client.get(path, params={"orgId": 100}, headers=admin)).status_code == 200
    # User B may not act for org A at all.
    crossed = await world.client.get(
        SOURCES, params={"orgId": 100}, headers=world.headers["user_b"]
    )
    assert crossed.status_code == 404  # the tenancy rule: another org is not found
    assert (await world.client.get(path, headers=world.headers["key_a"])).status_code == 200
    # Names are per tenant: B may use A's name.
    await create_source(world.client, world.headers["user_b"], name="private")


async def test_unauthenticated_management_is_401(world: World) -> None:
    response = await world.client.get(SOURCES)
    assert response.status_code == 401
