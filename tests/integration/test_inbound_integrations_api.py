"""/api/v1/inbound-integrations: CRUD, masking, versions, enable/disable, validation,
tenant isolation (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.inbound_helpers import (
    ADMIN_API,
    GOOD_KEY,
    client_fixture,  # noqa: F401 (fixtures)
    create,
    integration,
    services_fixture,  # noqa: F401
    settings_fixture,  # noqa: F401
    sink_fixture,  # noqa: F401
)
from tests.support import World

from junctionbox.testing import RecordingSink

TOKEN = "upstream-token-0123456789"


def full(sink: RecordingSink, **changes: Any) -> dict[str, Any]:
    return integration(
        sink,
        inboundAuthType="API_KEY",
        inboundAuthConfig={"name": "X-Partner-Key", "value": GOOD_KEY},
        outgoingAuthType="BEARER",
        outgoingAuthConfig={"token": TOKEN},
        requestTransformationMode="JSONATA",
        requestTransformScript='{"id": patientId}',
        rateLimits={"enabled": True, "maxRequests": 10, "windowSeconds": 60},
        timeoutMs=5000,
        **changes,
    )


async def test_create_read_masks_credentials(world: World, sink: RecordingSink) -> None:
    created = await create(world, full(sink))
    assert created["id"].startswith("inb_")
    assert created["direction"] == "INBOUND"
    assert created["inboundAuthConfig"] == {"name": "X-Partner-Key", "value": "****6789"}
    assert created["outgoingAuthConfig"] == {"token": "****6789"}
    assert created["proxyUrl"] == "/api/v1/integrations/appointment-booking?orgId=100"
    assert created["allowedMethods"] == ["POST"]
    assert created["retryPolicy"]["maxRetries"] == 2
    got = await world.client.get(f"{ADMIN_API}/{created['id']}", headers=world.headers["key_a"])
    assert got.status_code == 200
    assert GOOD_KEY not in got.text
    assert TOKEN not in got.text
    stored = await world.services.inbound.get(_tenant_stub(world), created["id"])
    assert stored.integration.inbound_auth.secrets == {"value": GOOD_KEY}


def _tenant_stub(world: World) -> Any:
    from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, TenantContext

    principal = Principal(PrincipalKind.USER, "usr_x", Role.ADMIN, None)
    return TenantContext(Entity(100, None, "Org a"), principal)


async def test_update_keeps_masked_and_omitted_secrets(world: World, sink: RecordingSink) -> None:
    created = await create(world, full(sink))
    url = f"{ADMIN_API}/{created['id']}"
    # PUT of the document read back (masks included) keeps both credentials.
    put = await world.client.put(
        url, json={**created, "name": "Renamed"}, headers=world.headers["user_a"]
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 2
    patch = await world.client.patch(url, json={"timeoutMs": 1000}, headers=world.headers["user_a"])
    assert patch.status_code == 200, patch.text
    stored = await world.services.inbound.get(_tenant_stub(world), created["id"])
    assert stored.integration.inbound_auth.secrets == {"value": GOOD_KEY}
    assert stored.integration.auth.secrets == {"token": TOKEN}
    assert stored.integration.timeout_ms == 1000
    assert stored.integration.name == "Renamed"
    bad = await world.client.patch(
        url, json={"inboundAuthConfig": {"value": "****zzzz"}}, headers=world.headers["user_a"]
    )
    assert bad.status_code == 400
    versions = await world.client.get(f"{url}/versions", headers=world.headers["user_a"])
    assert [v["version"] for v in versions.json()["versions"]] == [3, 2, 1]
    first = await world.client.get(f"{url}/versions/1", headers=world.headers["user_a"])
    assert first.json()["integration"]["name"] == "Appointment booking"
    assert first.json()["integration"]["inboundAuthConfig"]["value"] == "****6789"


async def test_list_filters_and_pages(world: World, sink: RecordingSink) -> None:
    for index in range(3):
        await create(world, integration(sink, type=f"type-{index}", name=f"Partner {index}"))
    await world.client.post(
        f"{ADMIN_API}/{(await create(world, integration(sink, type='off')))['id']}/disable",
        headers=world.headers["user_a"],
    )
    listed = await world.client.get(f"{ADMIN_API}?limit=2", headers=world.headers["user_a"])
    page = listed.json()
    assert page["total"] == 4
    assert page["hasMore"] is True
    assert len(page["integrations"]) == 2
    active = await world.client.get(f"{ADMIN_API}?isActive=false", headers=world.headers["user_a"])
    assert [i["type"] for i in active.json()["integrations"]] == ["off"]
    by_type = await world.client.get(f"{ADMIN_API}?type=type-1", headers=world.headers["user_a"])
    assert [i["name"] for i in by_type.json()["integrations"]] == ["Partner 1"]
    search = await world.client.get(
        f"{ADMIN_API}?search=PARTNER 2", headers=world.headers["user_a"]
    )
    assert [i["type"] for i in search.json()["integrations"]] == ["type-2"]


async def test_enable_disable_delete(world: World, sink: RecordingSink) -> None:
    created = await create(world, integration(sink))
    url = f"{ADMIN_API}/{created['id']}"
    off = await world.client.post(f"{url}/disable", headers=world.headers["user_a"])
    assert off.json()["isActive"] is False
    on = await world.client.post(f"{url}/enable", headers=world.headers["user_a"])
    assert on.json()["isActive"] is True
    assert (await world.client.delete(url, headers=world.headers["user_a"])).status_code == 204
    assert (await world.client.get(url, headers=world.headers["user_a"])).status_code == 404


async def test_type_unique_per_tenant(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    again = await world.client.post(
        f"{ADMIN_API}?orgId=100", json=integration(sink), headers=world.headers["user_a"]
    )
    assert again.status_code == 409
    assert again.json()["code"] == "CONFLICT"
    await create(world, integration(sink), who="user_b", org=200)  # another tenant: fine


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"type": "has space"}, ["body", "type"]),
        ({"targetUrl": None}, ["body", "targetUrl"]),
        ({"targetUrl": "http://10.0.0.5/x"}, ["body", "targetUrl"]),
        ({"httpMethod": "TRACE"}, ["body", "httpMethod"]),
        ({"allowedMethods": ["GET"]}, ["body", "allowedMethods"]),
        (
            {"inboundAuthType": "API_KEY", "inboundAuthConfig": {"value": "short"}},
            ["body", "inboundAuthConfig", "value"],
        ),
        (
            {
                "inboundAuthType": "API_KEY",
                "inboundAuthConfig": {"name": "X-API-Key", "value": GOOD_KEY},
            },
            ["body", "inboundAuthConfig", "name"],
        ),
        (
            {"inboundAuthType": "BASIC", "inboundAuthConfig": {"username": "u"}},
            ["body", "inboundAuthConfig", "password"],
        ),
        (
            {"requestTransformationMode": "JSONATA", "requestTransformScript": '{"a": '},
            ["body", "requestTransformScript"],
        ),
        (
            {"responseTransformationMode": "SCRIPT", "responseTransformScript": "return ("},
            ["body", "responseTransformScript"],
        ),
        (
            {
                "requestFieldMappings": [
                    {"sourceField": "a", "targetField": "b", "transform": "nope"}
                ]
            },
            ["body", "requestFieldMappings", 0, "transform"],
        ),
        ({"retryPolicy": {"maxRetries": 9}}, ["body", "retryPolicy", "maxRetries"]),
    ],
)
async def test_save_time_validation(
    world: World, sink: RecordingSink, changes: dict[str, Any], loc: list[Any]
) -> None:
    response = await world.client.post(
        f"{ADMIN_API}?orgId=100", json=integration(sink, **changes), headers=world.headers["user_a"]
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert any(d["loc"][: len(loc)] == loc for d in body["details"]), body


async def test_another_tenant_cannot_see_or_change(world: World, sink: RecordingSink) -> None:
    created = await create(world, integration(sink))
    url = f"{ADMIN_API}/{created['id']}"
    for who in ("user_b", "key_b"):
        assert (await world.client.get(url, headers=world.headers[who])).status_code == 404
        patch = await world.client.patch(url, json={"name": "x"}, headers=world.headers[who])
        assert patch.status_code == 404
        assert (await world.client.delete(url, headers=world.headers[who])).status_code == 404
    listed = await world.client.get(ADMIN_API, headers=world.headers["user_b"])
    assert listed.json()["total"] == 0
    foreign = await world.client.get(f"{ADMIN_API}?orgId=100", headers=world.headers["user_b"])
    assert foreign.status_code == 404


async def test_restore_a_version_over_rest(world: World, sink: RecordingSink) -> None:
    created = await create(world, full(sink))
    url = f"{ADMIN_API}/{created['id']}"
    changed = await world.client.patch(
        url,
        json={"name": "Changed", "inboundAuthConfig": {"value": "another-partner-key-987"}},
        headers=world.headers["user_a"],
    )
    assert changed.status_code == 200, changed.text
    await world.client.post(f"{url}/disable", headers=world.headers["user_a"])
    restored = await world.client.post(f"{url}/versions/1/restore", headers=world.headers["user_a"])
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["version"] == 4
    assert body["name"] == "Appointment booking"
    assert body["isActive"] is False  # the switch stays as it is now
    assert body["inboundAuthConfig"]["value"] == "****6789"
    stored = await world.services.inbound.get(_tenant_stub(world), created["id"])
    assert stored.integration.inbound_auth.secrets == {"value": GOOD_KEY}  # version 1's
    versions = await world.client.get(f"{url}/versions", headers=world.headers["user_a"])
    assert versions.json()["versions"][0]["change"] == "RESTORED:1"
    missing = await world.client.post(f"{url}/versions/99/restore", headers=world.headers["user_a"])
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    for who in ("user_b", "key_b"):  # another tenant's integration does not exist for them
        foreign = await world.client.post(f"{url}/versions/1/restore", headers=world.headers[who])
        assert foreign.status_code == 404
