"""Short-lived read caches on the publish path: what changes on this node applies at once."""

from __future__ import annotations

from tests.support import World

PUBLISH = "/api/v1/integration/events/publish"
EVENT = {"type": "cache.probe", "data": {"n": 1}}


async def test_a_revoked_key_is_refused_at_once_though_it_was_cached(world: World) -> None:
    http, admin, key = world.client, world.headers["admin"], world.headers["key_a"]
    assert (await http.post(PUBLISH, json=EVENT, headers=key)).status_code == 201  # cached
    keys = (await http.get("/api/v1/admin/api-keys?orgId=100", headers=admin)).json()
    revoked = await http.delete(f"/api/v1/admin/api-keys/{keys['apiKeys'][0]['id']}", headers=admin)
    assert revoked.status_code == 200
    refused = await http.post(PUBLISH, json=EVENT, headers=key)
    assert refused.status_code == 401
    assert (await http.post(PUBLISH, json=EVENT, headers=world.headers["key_b"])).status_code == 201


async def test_a_deactivated_user_and_a_logged_out_token_are_refused_at_once(
    world: World,
) -> None:
    http, admin = world.client, world.headers["admin"]
    user_a = world.headers["user_a"]
    assert (await http.post(PUBLISH, json=EVENT, headers=user_a)).status_code == 201  # cached
    users = (await http.get("/api/v1/admin/users?search=user-a", headers=admin)).json()
    patched = await http.patch(
        f"/api/v1/admin/users/{users['users'][0]['id']}", json={"isActive": False}, headers=admin
    )
    assert patched.status_code == 200
    assert (await http.post(PUBLISH, json=EVENT, headers=user_a)).status_code == 401

    user_b = world.headers["user_b"]
    assert (await http.get("/api/v1/auth/me", headers=user_b)).status_code == 200  # cached
    assert (await http.post("/api/v1/auth/logout", headers=user_b)).status_code == 200
    assert (await http.get("/api/v1/auth/me", headers=user_b)).status_code == 401


async def test_a_schema_registered_after_a_publish_applies_to_the_next_one(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    assert (await http.post(PUBLISH, json=EVENT, headers=key)).status_code == 201  # "no schema"
    schema = {"type": "object", "properties": {"n": {"type": "string"}}}
    registered = await http.put(
        "/api/v1/integration/events/schema",
        json={"eventType": "cache.probe", "schema": schema},
        headers=key,
    )
    assert registered.status_code == 201, registered.text
    refused = await http.post(PUBLISH, json=EVENT, headers=key)
    assert refused.status_code == 422
    assert refused.json()["details"][0]["loc"] == ["body", "/data/n"]
    deleted = await http.delete("/api/v1/integration/events/types/cache.probe", headers=key)
    assert deleted.status_code in {200, 204}, deleted.text
    assert (await http.post(PUBLISH, json=EVENT, headers=key)).status_code == 201


async def test_a_deleted_organization_is_not_found_at_once(world: World) -> None:
    http, admin = world.client, world.headers["admin"]
    created = await http.post("/api/v1/admin/orgs", json={"orgId": 300, "name": "c"}, headers=admin)
    assert created.status_code == 201
    url = "/api/v1/integration/events/types?orgId=300"  # resolves the tenant, writes nothing
    assert (await http.get(url, headers=admin)).status_code == 200  # cached
    assert (await http.delete("/api/v1/admin/orgs/300", headers=admin)).status_code in {200, 204}
    assert (await http.get(url, headers=admin)).status_code == 404
    assert (await http.post(f"{PUBLISH}?orgId=300", json=EVENT, headers=admin)).status_code == 404


async def test_a_deleted_stream_is_recreated_by_the_next_publish(world: World) -> None:
    http, key = world.client, world.headers["key_a"]
    url = f"{PUBLISH}?stream=cached"
    assert (await http.post(url, json=EVENT, headers=key)).status_code == 201  # count cached
    deleted = await http.delete("/api/v1/integration/events/stream/cached", headers=key)
    assert deleted.status_code in {200, 204}, deleted.text
    again = await http.post(url, json=EVENT, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["offset"] == 0
