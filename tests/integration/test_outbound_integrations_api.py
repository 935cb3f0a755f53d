"""/api/v1/outbound-integrations and /api/v1/templates: CRUD, masking, versions, enable and
disable, signing secrets and rotation, save-time validation, tenant isolation, test calls."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.domain.signing import verify
from junctionbox.errors import ConflictError
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.store.queries import integrations as queries
from junctionbox.store.types import utcnow
from junctionbox.testing import RecordingSink

BASE = "/api/v1/outbound-integrations"
TOKEN = "tok-very-secret-0123456789"
ORDER = {"orderId": "o-1", "total": 42, "customer": {"name": " Ada "}}


def body(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "Orders to partner",
        "eventType": "order.*",
        "targetUrl": "https://receiver.example.com/hooks",
        "outgoingAuthType": "BEARER",
        "outgoingAuthConfig": {"token": TOKEN},
    }
    document.update(changes)
    return document


async def call(
    world: World,
    method: str,
    path: str,
    json: Any = None,
    *,
    caller: str = "user_a",
    expect: int | None = 200,
    **params: Any,
) -> Any:
    response = await world.client.request(
        method, path, json=json, headers=world.headers[caller], params=params or None
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    assert TOKEN not in response.text  # the credential never leaves, whatever the route
    return response.json() if response.content else None


async def create(world: World, caller: str = "user_a", **changes: Any) -> dict[str, Any]:
    created: dict[str, Any] = await call(
        world, "POST", BASE, body(**changes), caller=caller, expect=201
    )
    return created


async def stored_secrets(services: Services, integration_id: str) -> dict[str, Any]:
    async with services.db.read() as conn:
        found = await queries.load_integration(conn, services.secretbox, integration_id)
    assert found is not None
    return dict(found.integration.auth.secrets)


def problems(response: httpx.Response) -> set[tuple[Any, ...]]:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "VALIDATION_ERROR"
    return {tuple(d["loc"]) for d in response.json()["details"]}


# --- create, read, list ---


async def test_create_returns_the_document_masked_and_the_signing_secret(world: World) -> None:
    created = await create(world, direction="OUTBOUND")
    assert created["id"].startswith("int_")
    assert created["orgId"] == 100
    assert created["version"] == 1
    assert created["isActive"] is True
    assert created["consecutiveFailures"] == 0
    assert created["disabledReason"] is None
    assert created["targetUrl"] == "https://receiver.example.com/hooks"
    assert created["httpMethod"] == "POST"
    assert created["outgoingAuthConfig"] == {"token": "****6789"}
    assert created["signingSecret"].startswith("whsec_")
    assert created["signingPublicKey"] is None
    assert created["signing"]["algorithm"] == "HMAC_SHA256"
    assert created["retryPolicy"]["maxRetries"] >= 0
    assert created["createdAt"]
    assert created["updatedAt"]

    fetched = await call(world, "GET", f"{BASE}/{created['id']}")
    assert "signingSecret" not in fetched
    assert fetched["outgoingAuthConfig"] == {"token": "****6789"}
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}


async def test_every_credential_kind_is_masked_in_every_response(world: World) -> None:
    short = await create(
        world,
        name="short",
        outgoingAuthType="BASIC",
        outgoingAuthConfig={"username": "svc", "password": "pw-1"},
    )
    assert short["outgoingAuthConfig"] == {"username": "svc", "password": "****"}
    headers = await create(
        world,
        name="headers",
        outgoingAuthType="CUSTOM_HEADERS",
        outgoingAuthConfig={"headers": {"X-Tenant": "t-1", "X-Key": "key-abcdefghijklmnop"}},
    )
    assert headers["outgoingAuthConfig"]["headers"] == {"X-Tenant": "****", "X-Key": "****mnop"}
    oauth = await create(
        world,
        name="oauth",
        outgoingAuthType="OAUTH2",
        outgoingAuthConfig={
            "tokenUrl": "https://auth.example.com/token",
            "clientId": "client-1",
            "clientSecret": "client-secret-0000000000",
        },
    )
    assert oauth["outgoingAuthConfig"] == {
        "tokenUrl": "https://auth.example.com/token",
        "clientId": "client-1",
        "clientSecret": "****0000",
    }
    listed = await world.client.get(BASE, headers=world.headers["user_a"])
    for secret in ("pw-1", "key-abcdefghijklmnop", "client-secret-0000000000"):
        assert secret not in listed.text


async def test_list_filters_search_and_pages(world: World) -> None:
    await create(world, name="Alpha orders", eventType="order.*")
    await create(world, name="Beta exact", eventType="order.created")
    await create(world, name="Gamma all", eventType="*", isActive=False)
    await create(world, name="Delta other", eventType="invoice.paid")
    found = await call(world, "GET", BASE, limit=2)
    assert found["total"] == 4
    assert found["hasMore"] is True
    assert [i["name"] for i in found["integrations"]] == ["Alpha orders", "Beta exact"]
    matching = await call(world, "GET", BASE, eventType="order.created")
    assert {i["name"] for i in matching["integrations"]} == {
        "Alpha orders",
        "Beta exact",
        "Gamma all",
    }
    active = await call(world, "GET", BASE, eventType="order.created", isActive="true")
    assert {i["name"] for i in active["integrations"]} == {"Alpha orders", "Beta exact"}
    searched = await call(world, "GET", BASE, search="ELTA")
    assert [i["name"] for i in searched["integrations"]] == ["Delta other"]
    assert (await call(world, "GET", BASE, search="%"))["total"] == 0
    unit = await call(world, "GET", BASE, orgId=101)
    assert unit["total"] == 0  # the unit's own integrations; the org's are not listed here


# --- updates and credentials ---


async def test_put_keeps_credentials_sent_back_masked_or_omitted(world: World) -> None:
    created = await create(world)
    document = {**created, "targetUrl": "https://receiver.example.com/v2"}
    replaced = await call(world, "PUT", f"{BASE}/{created['id']}", document)
    assert replaced["version"] == 2
    assert replaced["targetUrl"] == "https://receiver.example.com/v2"
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}

    without = body(targetUrl="https://receiver.example.com/v3")
    del without["outgoingAuthConfig"]
    await call(world, "PUT", f"{BASE}/{created['id']}", without)
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}

    changed = await call(
        world, "PUT", f"{BASE}/{created['id']}", body(outgoingAuthConfig={"token": "new-token"})
    )
    assert changed["outgoingAuthConfig"] == {"token": "****"}
    assert await stored_secrets(world.services, created["id"]) == {"token": "new-token"}


async def test_a_mask_that_matches_nothing_is_refused(world: World) -> None:
    created = await create(world)
    response = await world.client.put(
        f"{BASE}/{created['id']}",
        json=body(outgoingAuthConfig={"token": "****zzzz"}),
        headers=world.headers["user_a"],
    )
    assert ("body", "outgoingAuthConfig", "token") in problems(response)
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}


async def test_put_without_is_active_keeps_the_state_and_switching_type_drops_secrets(
    world: World,
) -> None:
    created = await create(world)
    await call(world, "POST", f"{BASE}/{created['id']}/disable")
    kept = await call(world, "PUT", f"{BASE}/{created['id']}", body())
    assert kept["isActive"] is False
    switched = await call(
        world,
        "PUT",
        f"{BASE}/{created['id']}",
        body(outgoingAuthType="BASIC", outgoingAuthConfig={"username": "u", "token": TOKEN}),
        expect=400,
    )
    assert ["body", "outgoingAuthConfig", "password"] in [d["loc"] for d in switched["details"]]
    basic = await call(
        world,
        "PUT",
        f"{BASE}/{created['id']}",
        body(
            outgoingAuthType="BASIC",
            outgoingAuthConfig={"username": "u", "password": "p-123456789012", "token": TOKEN},
        ),
    )
    assert basic["outgoingAuthConfig"] == {"username": "u", "password": "****9012"}
    assert await stored_secrets(world.services, created["id"]) == {"password": "p-123456789012"}


async def test_patch_merges_then_validates(world: World) -> None:
    created = await create(
        world, rateLimits={"enabled": True, "maxRequests": 5, "windowSeconds": 1}
    )
    path = f"{BASE}/{created['id']}"
    renamed = await call(
        world, "PATCH", path, {"name": "Renamed", "rateLimits": {"maxRequests": 9}}
    )
    assert renamed["name"] == "Renamed"
    assert renamed["version"] == 2
    assert renamed["rateLimits"] == {"enabled": True, "maxRequests": 9, "windowSeconds": 1.0}
    assert renamed["targetUrl"] == created["targetUrl"]
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}

    cleared = await call(world, "PATCH", path, {"filter": "event.type == 'order.created'"})
    assert cleared["filter"] == "event.type == 'order.created'"
    assert (await call(world, "PATCH", path, {"filter": None}))["filter"] is None

    bad = await world.client.patch(path, json={"targetUrl": None}, headers=world.headers["user_a"])
    assert ("body", "targetUrl") in problems(bad)
    api_key = await call(
        world,
        "PATCH",
        path,
        {"outgoingAuthType": "API_KEY", "outgoingAuthConfig": {"name": "X-Key", "value": "v" * 20}},
    )
    assert api_key["outgoingAuthConfig"] == {"name": "X-Key", "value": "****vvvv", "in": "header"}
    assert await stored_secrets(world.services, created["id"]) == {"value": "v" * 20}


async def test_unique_names_per_tenant(world: World) -> None:
    first = await create(world, name="Same")
    duplicate = await world.client.post(
        BASE, json=body(name="Same"), headers=world.headers["user_a"]
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "CONFLICT"
    other = await create(world, name="Other")
    renamed = await world.client.patch(
        f"{BASE}/{other['id']}", json={"name": "Same"}, headers=world.headers["user_a"]
    )
    assert renamed.status_code == 409
    await create(world, caller="user_b", name="Same")  # another tenant may use the name
    await call(world, "PATCH", f"{BASE}/{first['id']}", {"name": "Same"})  # its own name


# --- versions ---


async def test_versions_list_show_and_restore_with_the_old_credentials(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    await call(
        world,
        "PUT",
        path,
        body(targetUrl="https://receiver.example.com/v2", outgoingAuthConfig={"token": "t2"}),
    )
    await call(world, "POST", f"{path}/disable")
    versions = (await call(world, "GET", f"{path}/versions"))["versions"]
    assert [(v["version"], v["change"]) for v in versions] == [
        (3, "DISABLED"),
        (2, "UPDATED"),
        (1, "CREATED"),
    ]
    assert all(v["createdBy"] and v["createdAt"] for v in versions)
    first = await call(world, "GET", f"{path}/versions/1")
    assert first["version"] == 1
    assert first["integration"]["targetUrl"] == "https://receiver.example.com/hooks"
    assert first["integration"]["outgoingAuthConfig"] == {"token": "****6789"}
    await call(world, "GET", f"{path}/versions/9", expect=404)

    restored = await call(world, "POST", f"{path}/versions/1/restore")
    assert restored["version"] == 4
    assert restored["targetUrl"] == "https://receiver.example.com/hooks"
    assert restored["isActive"] is False  # restoring does not switch deliveries back on
    assert await stored_secrets(world.services, created["id"]) == {"token": TOKEN}
    latest = (await call(world, "GET", f"{path}/versions"))["versions"][0]
    assert latest["change"] == "RESTORED:1"


# --- enable, disable, delete ---


async def test_disable_and_enable_reset_the_failure_streak(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    disabled = await call(world, "POST", f"{path}/disable", {"reason": "maintenance"})
    assert disabled["isActive"] is False
    assert disabled["disabledReason"] == "disabled by a user: maintenance"
    assert disabled["disabledAt"] is not None
    again = await call(world, "POST", f"{path}/disable")
    assert again["version"] == disabled["version"]  # already off: nothing written
    enabled = await call(world, "POST", f"{path}/enable")
    assert enabled["isActive"] is True
    assert enabled["disabledReason"] is None

    async with world.services.db.write() as conn:  # the engine auto-disables after failures
        for _ in range(2):
            await queries.record_outcome(
                conn, created["id"], failed=True, disable_after=2, now=utcnow()
            )
    auto = await call(world, "GET", path)
    assert auto["isActive"] is False
    assert auto["consecutiveFailures"] == 2
    assert "consecutive failures" in auto["disabledReason"]
    revived = await call(world, "POST", f"{path}/enable")
    assert revived["isActive"] is True
    assert revived["consecutiveFailures"] == 0
    assert revived["disabledReason"] is None


async def test_delete(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    await call(world, "DELETE", path, expect=204)
    await call(world, "GET", path, expect=404)
    await call(world, "GET", f"{path}/versions", expect=404)
    await call(world, "DELETE", path, expect=404)
    await create(world)  # the name is free again


async def test_changes_are_audited(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    await call(world, "PATCH", path, {"description": "d"})
    await call(world, "POST", f"{path}/disable")
    await call(world, "POST", f"{path}/enable")
    await call(world, "POST", f"{path}/secret/rotate", {})
    await call(world, "POST", f"{path}/versions/1/restore")
    await call(world, "DELETE", path, expect=204)
    response = await world.client.get(
        "/api/v1/admin/audit-logs",
        params={"resourceType": "outbound_integration", "limit": 50},
        headers=world.headers["admin"],
    )
    assert response.status_code == 200
    assert TOKEN not in response.text
    assert created["signingSecret"] not in response.text
    actions = {entry["action"] for entry in response.json()["auditLogs"]}
    assert actions == {
        f"integration.{a}"
        for a in ("create", "update", "disable", "enable", "rotate_secret", "restore", "delete")
    }


# --- signing secrets ---


def _sign_check(secret: str, preview: dict[str, Any]) -> None:
    headers = {h["name"]: h["value"] for h in preview["headers"]}
    Webhook(secret).verify(preview["body"].encode(), headers)


async def test_secret_read_and_rotation_with_overlap(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    old = created["signingSecret"]
    secret = await call(world, "GET", f"{path}/secret")
    assert secret["signingSecret"] == old
    assert secret["algorithm"] == "HMAC_SHA256"
    assert [k["current"] for k in secret["keys"]] == [True]

    rotated = await call(world, "POST", f"{path}/secret/rotate", {"overlapSeconds": 3600})
    new = rotated["signingSecret"]
    assert new.startswith("whsec_")
    assert new != old
    assert (await call(world, "GET", f"{path}/secret"))["signingSecret"] == new
    assert [k["current"] for k in rotated["keys"]] == [False, True]
    assert rotated["keys"][0]["expiresAt"] is not None

    preview = (await call(world, "POST", f"{path}/test", {"event": {"data": ORDER}}))["actions"][0]
    assert len(preview["signature"].split()) == 2  # both keys sign during the overlap
    _sign_check(old, preview)
    _sign_check(new, preview)

    await call(world, "POST", f"{path}/secret/rotate", {"overlapSeconds": 0})
    newest = (await call(world, "GET", f"{path}/secret"))["signingSecret"]
    preview = (await call(world, "POST", f"{path}/test"))["actions"][0]
    assert len(preview["signature"].split()) == 2  # the newest and the one still overlapping
    _sign_check(newest, preview)
    _sign_check(old, preview)
    with pytest.raises(WebhookVerificationError):
        _sign_check(new, preview)  # retired at once: overlap 0


async def test_rotation_to_a_chosen_secret_is_checked(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}/secret/rotate"
    mine = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert (await call(world, "POST", path, {"secret": mine}))["signingSecret"] == mine
    await call(world, "POST", path, {"secret": mine}, expect=409)
    short = await world.client.post(
        path, json={"secret": "whsec_c2hvcnQ="}, headers=world.headers["user_a"]
    )
    assert ("body", "secret") in problems(short)
    too_long = await world.client.post(
        path, json={"overlapSeconds": 10**9}, headers=world.headers["user_a"]
    )
    assert ("body", "overlapSeconds") in problems(too_long)


async def test_ed25519_shows_only_the_public_key(world: World) -> None:
    created = await create(world, signing={"algorithm": "ED25519"})
    assert created["signingSecret"] is None
    public = created["signingPublicKey"]
    assert public.startswith("whpk_")
    secret = await call(world, "GET", f"{BASE}/{created['id']}/secret")
    assert secret["signingSecret"] is None
    assert secret["signingPublicKey"] == public
    preview = (await call(world, "POST", f"{BASE}/{created['id']}/test"))["actions"][0]
    headers = {h["name"]: h["value"] for h in preview["headers"]}
    assert preview["signature"].startswith("v1a,")
    verify(
        headers["webhook-id"],
        headers["webhook-timestamp"],
        preview["body"].encode(),
        headers["webhook-signature"],
        [public],
        now=time.time(),
    )
    everything = await world.client.get(BASE, headers=world.headers["user_a"])
    assert "whsk_" not in everything.text

    back = await call(
        world, "PATCH", f"{BASE}/{created['id']}", {"signing": {"algorithm": "HMAC_SHA256"}}
    )
    assert back["signingPublicKey"] is None
    assert (await call(world, "GET", f"{BASE}/{created['id']}/secret"))["signingSecret"].startswith(
        "whsec_"
    )


# --- save-time validation ---


BAD_CONFIGURATIONS: list[tuple[dict[str, Any], tuple[Any, ...]]] = [
    ({"targetUrl": "ftp://files.example.com/x"}, ("body", "targetUrl")),
    ({"targetUrl": "http://10.0.0.7/hook"}, ("body", "targetUrl")),
    ({"targetUrl": "http://[::ffff:127.0.0.1]:8080/"}, ("body", "targetUrl")),
    ({"targetUrl": "http://localhost:9000/hook"}, ("body", "targetUrl")),
    (
        {"actions": [{"targetUrl": "http://169.254.169.254/latest"}]},
        ("body", "actions", 0, "targetUrl"),
    ),
    (
        {"schedulingMode": "RECURRING", "schedulingConfig": {"expression": "61 * * * *"}},
        ("body", "schedulingConfig", "expression"),
    ),
    ({"filter": "event.data.total >"}, ("body", "filter")),
    ({"filter": "1 + 1"}, ("body", "filter")),
    (
        {"transformationMode": "JSONATA", "transformScript": '{"a": orderId'},
        ("body", "transformScript"),
    ),
    (
        {"transformationMode": "SCRIPT", "transformScript": "return { id: payload.id "},
        ("body", "transformScript"),
    ),
    (
        {"fieldMappings": [{"sourceField": "a", "targetField": "b", "transform": "shout"}]},
        ("body", "fieldMappings", 0, "transform"),
    ),
    (
        {
            "actions": [
                {"transformationMode": "SCRIPT", "transformScript": "return ("},
            ]
        },
        ("body", "actions", 0, "transformScript"),
    ),
    (
        {
            "outgoingAuthType": "CUSTOM_HEADERS",
            "outgoingAuthConfig": {"headers": {"X-Id": "a\r\nInjected: yes"}},
        },
        ("body", "outgoingAuthConfig", "headers", "X-Id"),
    ),
    (
        {
            "outgoingAuthType": "CUSTOM_HEADERS",
            "outgoingAuthConfig": {"headers": {"Bad Name": "v"}},
        },
        ("body", "outgoingAuthConfig", "headers", "Bad Name"),
    ),
    ({"outgoingAuthConfig": {"token": "t\nx"}}, ("body", "outgoingAuthConfig", "token")),
    (
        {"outgoingAuthType": "CUSTOM_HEADERS", "outgoingAuthConfig": {"headers": {"Host": "x"}}},
        ("body", "outgoingAuthConfig", "headers", "Host"),
    ),
    (
        {"outgoingAuthType": "BASIC", "outgoingAuthConfig": {"username": "a:b", "password": "p"}},
        ("body", "outgoingAuthConfig", "username"),
    ),
    ({"name": ""}, ("body", "name")),
    ({"httpMethod": "GET"}, ("body", "httpMethod")),
    ({"timeoutMs": 0}, ("body", "timeoutMs")),
    ({"unknownField": 1}, ("body", "unknownField")),
    ({"direction": "INBOUND"}, ("body", "direction")),
    ({"signing": {"algorithm": "ED25519", "hexHeader": True}}, ("body", "signing", "hexHeader")),
    (
        {"rateLimits": {"enabled": True, "maxRequests": 0}},
        ("body", "rateLimits", "maxRequests"),
    ),
]


async def test_bad_configurations_are_400_with_their_location(world: World) -> None:
    for changes, loc in BAD_CONFIGURATIONS:
        response = await world.client.post(
            BASE, json=body(**changes), headers=world.headers["user_a"]
        )
        assert loc in problems(response), (changes, response.text)
    assert (await call(world, "GET", BASE))["total"] == 0


async def test_several_problems_are_reported_at_once(world: World) -> None:
    response = await world.client.post(
        BASE,
        json=body(
            targetUrl="http://127.0.0.1/x",
            filter="(",
            transformScript="x(",
            transformationMode="SCRIPT",
        ),
        headers=world.headers["user_a"],
    )
    assert {("body", "targetUrl"), ("body", "filter"), ("body", "transformScript")} <= problems(
        response
    )


async def test_simple_lookups_compile_without_tables(world: World) -> None:
    mappings = [
        {"sourceField": "g", "targetField": "gender", "transform": "lookup", "lookupType": "G"}
    ]
    created = await create(world, fieldMappings=mappings)
    assert created["transformationMode"] == "SIMPLE"
    assert created["fieldMappings"] == mappings


async def test_allowlisted_literal_addresses_may_be_saved(tmp_path: Path, db_url: str) -> None:
    async with RecordingSink() as sink, _world(db_url, tmp_path, sink.allowlist_entry) as world:
        await create(world, targetUrl=sink.url("/in"))
        other_port = f"http://127.0.0.1:{sink.port + 1}/in"
        response = await world.client.post(
            BASE, json=body(name="x", targetUrl=other_port), headers=world.headers["user_a"]
        )
        assert ("body", "targetUrl") in problems(response)


# --- tenant isolation ---


async def test_other_tenants_cannot_see_or_touch_an_integration(world: World) -> None:
    created = await create(world)
    path = f"{BASE}/{created['id']}"
    for caller in ("user_b", "key_b"):
        assert (await call(world, "GET", BASE, caller=caller))["total"] == 0
        for method, suffix, payload in (
            ("GET", "", None),
            ("PUT", "", body()),
            ("PATCH", "", {"name": "x"}),
            ("DELETE", "", None),
            ("POST", "/enable", None),
            ("POST", "/disable", None),
            ("GET", "/versions", None),
            ("GET", "/versions/1", None),
            ("POST", "/versions/1/restore", None),
            ("GET", "/secret", None),
            ("POST", "/secret/rotate", {}),
            ("POST", "/test", {}),
        ):
            response = await world.client.request(
                method, path + suffix, json=payload, headers=world.headers[caller]
            )
            assert response.status_code == 404, (caller, method, suffix, response.text)
            assert created["signingSecret"] not in response.text
        forged = await world.client.get(path, params={"orgId": 100}, headers=world.headers[caller])
        assert forged.status_code == 404
    as_unit = await world.client.get(path, params={"orgId": 101}, headers=world.headers["user_a"])
    assert as_unit.status_code == 404  # owned by the org, not by its unit
    assert (await call(world, "GET", path, caller="key_a"))["id"] == created["id"]
    admin = await call(world, "GET", path, caller="admin", orgId=100)
    assert admin["id"] == created["id"]
    after = await call(world, "GET", f"{path}/secret")
    assert after["signingSecret"] == created["signingSecret"]


# --- templates ---


async def test_templates_list_and_every_one_creates(world: World) -> None:
    listed = await call(world, "GET", "/api/v1/templates", limit=100)
    assert listed["total"] >= 7
    ids = {t["id"] for t in listed["templates"]}
    assert {"generic-webhook", "slack-incoming-webhook", "oauth2-crm-upsert"} <= ids
    modes = {t["transformationMode"] for t in listed["templates"]}
    assert {"SIMPLE", "JSONATA", "SCRIPT", None} <= modes
    assert "RECURRING" in {t["schedulingMode"] for t in listed["templates"]}
    for template_id in sorted(ids):
        template = await call(world, "GET", f"/api/v1/templates/{template_id}")
        assert template["placeholders"]
        created = await call(world, "POST", BASE, template["body"], expect=201)
        event = template["sampleEvent"]
        preview = await call(world, "POST", f"{BASE}/{created['id']}/test", {"event": event})
        assert preview["actions"][0]["body"]
    await call(world, "GET", "/api/v1/templates/nope", expect=404)
    chat = await call(world, "GET", "/api/v1/templates", category="chat")
    assert {t["category"] for t in chat["templates"]} == {"chat"}
    assert (await world.client.get("/api/v1/templates")).status_code == 401


# --- test calls ---


async def test_test_call_shows_the_request_and_sends_nothing(tmp_path: Path, db_url: str) -> None:
    async with RecordingSink() as sink, _world(db_url, tmp_path, sink.allowlist_entry) as world:
        created = await create(
            world,
            targetUrl=sink.url("/hooks?tenant=a"),
            fieldMappings=[
                {"sourceField": "orderId", "targetField": "id"},
                {"sourceField": "customer.name", "targetField": "name", "transform": "trim"},
            ],
            actions=[
                {"name": "first"},
                {
                    "name": "second",
                    "httpMethod": "PUT",
                    "transformationMode": "JSONATA",
                    "transformScript": '{"total": total}',
                    "delayMs": 1000,
                },
            ],
        )
        report = await call(
            world,
            "POST",
            f"{BASE}/{created['id']}/test",
            {"event": {"type": "order.created", "data": ORDER, "id": "e-1"}},
        )
        assert report["sent"] is False
        assert report["event"]["id"] == "e-1"
        assert report["event"]["data"] == ORDER
        first, second = report["actions"]
        assert first["method"] == "POST"
        assert first["url"] == sink.url("/hooks?tenant=a")
        assert first["transformed"] == {"id": "o-1", "name": "Ada"}
        assert orjson.loads(first["body"]) == {"id": "o-1", "name": "Ada"}
        headers = {h["name"]: h["value"] for h in first["headers"]}
        assert headers["authorization"] == "Bearer ****"
        assert headers["webhook-id"] == first["messageId"]
        assert headers["webhook-signature"] == first["signature"]
        _sign_check(created["signingSecret"], first)
        assert sink.url("/hooks?tenant=a") in first["curl"]
        assert "Bearer ****" in first["curl"]
        assert second["method"] == "PUT"
        assert second["transformed"] == {"total": 42}
        assert second["messageId"] != first["messageId"]
        again = await call(
            world,
            "POST",
            f"{BASE}/{created['id']}/test",
            {"event": {"type": "order.created", "data": ORDER, "id": "e-1"}},
        )
        assert again["actions"][0]["messageId"] == first["messageId"]  # stable webhook-id
        assert sink.requests == []


async def test_test_call_defaults_and_transform_errors(world: World) -> None:
    created = await create(world, eventType="order.*")
    report = await call(world, "POST", f"{BASE}/{created['id']}/test")
    assert report["event"]["type"] == "order.test"
    assert report["actions"][0]["body"] == "{}"
    assert report["actions"][0]["transformed"] is None
    failing = await create(
        world,
        name="failing",
        transformationMode="SCRIPT",
        transformScript="throw new Error('no way')",
    )
    response = await world.client.post(
        f"{BASE}/{failing['id']}/test", json={}, headers=world.headers["user_a"]
    )
    assert response.status_code == 422
    assert response.json()["code"] == "TRANSFORM_ERROR"
    assert "no way" in response.json()["error"]


# --- helpers ---


class _world:
    """A World whose SSRF allowlist lets the given sink through."""

    def __init__(self, db_url: str, tmp_path: Path, allowlist: str) -> None:
        self.settings = make_settings(db_url, tmp_path, ssrf_allowlist=allowlist)

    async def __aenter__(self) -> World:
        self.services = build_services(self.settings)
        transport = httpx.ASGITransport(app=create_app(self.services))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return await World(self.http, self.services).build()

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.services.close()


async def test_test_call_says_whether_the_event_would_match(world: World) -> None:
    created = await create(world, eventType="order.created", filter="event.data.total > 100")
    path = f"{BASE}/{created['id']}/test"

    async def match(event: dict[str, Any]) -> dict[str, Any]:
        report = await call(world, "POST", path, {"event": event})
        result: dict[str, Any] = report["match"]
        return result

    small = await match({"data": ORDER})
    assert small == {
        "matches": False,
        "isActive": True,
        "typeMatches": True,
        "filterMatches": False,
        "filterError": None,
    }
    assert (await match({"data": {**ORDER, "total": 500}}))["matches"] is True
    other = await match({"type": "invoice.paid", "data": {**ORDER, "total": 500}})
    assert (other["matches"], other["typeMatches"]) == (False, False)
    missing = await match({"data": {}})
    assert missing["matches"] is False
    assert missing["filterError"]
    await call(world, "POST", f"{BASE}/{created['id']}/disable")
    inactive = await match({"data": {**ORDER, "total": 500}})
    assert (inactive["matches"], inactive["isActive"], inactive["filterMatches"]) == (
        False,
        False,
        True,
    )


async def test_an_unsaved_configuration_can_be_tried(world: World) -> None:
    draft = body(fieldMappings=[{"sourceField": "orderId", "targetField": "ref"}])
    report = await call(
        world, "POST", f"{BASE}/test", {"integration": draft, "event": {"data": ORDER}}
    )
    assert report["integrationId"] is None
    assert report["version"] == 0
    (action,) = report["actions"]
    assert action["transformed"] == {"ref": "o-1"}
    _sign_check(report["signingSecret"], action)
    assert (await call(world, "GET", BASE))["total"] == 0  # nothing was saved
    bad = await world.client.post(
        f"{BASE}/test",
        json={"integration": body(filter="event.x >")},
        headers=world.headers["user_a"],
    )
    assert ("body", "integration", "filter") in problems(bad)


async def test_a_stale_version_cannot_be_saved(world: World) -> None:
    created = await create(world)
    svc = world.services
    async with svc.db.read() as conn:
        stale = await queries.load_integration(conn, svc.secretbox, created["id"])
    assert stale is not None
    async with svc.db.write() as conn:
        saved = await queries.save_integration(
            conn,
            svc.secretbox,
            stale,
            stale.integration,
            change="UPDATED",
            actor=None,
            now=utcnow(),
        )
    assert saved.version == 2
    with pytest.raises(ConflictError):
        async with svc.db.write() as conn:
            await queries.save_integration(
                conn,
                svc.secretbox,
                stale,
                stale.integration,
                change="UPDATED",
                actor=None,
                now=utcnow(),
            )
    versions = (await call(world, "GET", f"{BASE}/{created['id']}/versions"))["versions"]
    assert [v["version"] for v in versions] == [2, 1]

    async with svc.db.read() as conn:  # read, then the engine auto-disables it meanwhile
        before = await queries.load_integration(conn, svc.secretbox, created["id"])
    assert before is not None
    async with svc.db.write() as conn:
        await queries.disable_integration(conn, created["id"], "410 Gone", utcnow())
    with pytest.raises(ConflictError):
        async with svc.db.write() as conn:
            await queries.save_integration(
                conn,
                svc.secretbox,
                before,
                before.integration,
                change="UPDATED",
                actor=None,
                now=utcnow(),
            )
    assert (await call(world, "GET", f"{BASE}/{created['id']}"))["isActive"] is False
