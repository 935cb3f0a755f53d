"""The API-management endpoints (seed 000) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.gateway_helpers import BASE, configure, gateway_world
from tests.support import World

from junctionbox.testing import Behaviour, RecordingSink


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def gw_world(db_url: str, tmp_path: Path, upstream: RecordingSink) -> AsyncIterator[World]:
    async with gateway_world(db_url, tmp_path, upstream) as world:
        yield world


async def test_configure_list_update_delete(gw_world: World, upstream: RecordingSink) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    created = await configure(
        client,
        headers,
        100,
        {
            "name": "orders",
            "path": "/orders/{id}",
            "method": "GET",
            "targetUrl": upstream.url("/api"),
            "authentication": {"type": "JWT", "jwt": {"secret": "s" * 32}},
        },
    )
    route_id = created["routeId"]
    assert created["gatewayPath"] == "/gw/100/orders/{id}"
    assert created["authentication"]["jwt"]["secret"] == "********"
    assert created["methods"] == ["GET"]

    listed = (await client.get(f"{BASE}/routes?orgId=100", headers=headers)).json()
    assert [r["routeId"] for r in listed["routes"]] == [route_id]
    assert listed["routes"][0]["authentication"]["jwt"]["secret"] == "********"

    updated = await configure(
        client,
        headers,
        100,
        {
            "routeId": route_id,
            "path": "/orders/{id}",
            "methods": ["GET", "PUT"],
            "targetUrl": upstream.url("/api"),
            "authentication": {"type": "JWT", "jwt": {"secret": "********"}},
        },
    )
    assert updated["routeId"] == route_id
    assert updated["methods"] == ["GET", "PUT"]
    # the masked secret sent back kept the stored one: the route still compiles
    table = await gw_world.services.gateway.table(100)
    assert table.routes[0].jwt is not None
    assert table.routes[0].jwt.key == "s" * 32

    # another tenant sees nothing and cannot delete it
    other = gw_world.headers["user_b"]
    assert (await client.get(f"{BASE}/routes?orgId=200", headers=other)).json()["total"] == 0
    gone = await client.delete(f"{BASE}/route/{route_id}?orgId=200", headers=other)
    assert gone.status_code == 404
    forbidden = await client.get(f"{BASE}/routes?orgId=100", headers=other)
    assert forbidden.status_code == 404  # another tenant is not revealed

    deleted = await client.delete(f"{BASE}/route/{route_id}?orgId=100", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(f"{BASE}/routes?orgId=100", headers=headers)).json()["total"] == 0
    again = await client.delete(f"{BASE}/route/{route_id}?orgId=100", headers=headers)
    assert again.status_code == 404
    assert again.json()["code"] == "NOT_FOUND"


async def test_validation_names_the_location(gw_world: World, upstream: RecordingSink) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    cases = [
        ({"path": "/a/../b"}, ["body", "path"]),
        ({"path": "a"}, ["body", "path"]),
        ({"targetUrl": "ftp://x"}, ["body", "targets", 0]),
        ({"targetService": "billing"}, ["body", "targetService"]),
        (
            {"transformation": {"request": {"headers": {"set": {"X-A": "1\r\nX-B: 2"}}}}},
            ["body", "transformation", "request", "headers", "set", "X-A"],
        ),
        (
            {"transformation": {"response": {"body": {"mode": "JSONATA", "script": "{"}}}},
            None,
        ),
        ({"security": {"ipRules": {"deny": ["10.0.0.0/33"]}}}, ["body", "security", "ipRules"]),
        ({"authentication": {"type": "JWT"}}, ["body", "authentication", "jwt", "secret"]),
    ]
    for change, loc in cases:
        body = {"path": "/x", "targetUrl": upstream.url(), **change}
        response = await client.post(f"{BASE}/configure?orgId=100", json=body, headers=headers)
        assert response.status_code == 400, (change, response.text)
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        if loc is not None:
            assert problem["details"][0]["loc"][: len(loc)] == loc, problem
    assert (await client.get(f"{BASE}/routes?orgId=100", headers=headers)).json()["total"] == 0


async def test_rate_limits_security_and_test_endpoints(
    gw_world: World, upstream: RecordingSink
) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    route = await configure(
        client,
        headers,
        100,
        {
            "path": "/items/{id}",
            "methods": ["POST"],
            "targetUrl": upstream.url("/base"),
            "targetEndpoint": "/v2/items/{id}",
            "transformation": {
                "request": {
                    "headers": {"set": {"X-Partner": "acme"}, "remove": ["X-Internal"]},
                    "body": {"mode": "JSONATA", "script": '{"item": name}'},
                }
            },
        },
    )
    rid = route["routeId"]
    limits = await client.put(
        f"{BASE}/rate-limits?orgId=100",
        json={"routeId": rid, "perClient": {"maxRequests": 5, "windowSeconds": 60}},
        headers=headers,
    )
    assert limits.status_code == 200
    assert limits.json()["scope"] == "route"
    bad = await client.put(
        f"{BASE}/rate-limits?orgId=100", json={"perRoute": {"maxRequests": 0}}, headers=headers
    )
    assert bad.status_code == 400
    tenant_wide = await client.put(
        f"{BASE}/security?orgId=100",
        json={"ipRules": {"deny": ["203.0.113.0/24"]}, "cors": {"allowedOrigins": ["https://a"]}},
        headers=headers,
    )
    assert tenant_wide.status_code == 200
    assert tenant_wide.json()["scope"] == "tenant"
    assert (
        await client.put(
            f"{BASE}/security?orgId=100", json={"ipRules": {"allow": ["nope"]}}, headers=headers
        )
    ).status_code == 400

    dry = await client.post(
        f"{BASE}/test?orgId=100",
        json={
            "method": "POST",
            "path": "/items/42",
            "query": "a=1",
            "headers": {"X-Internal": "secret", "Authorization": "Bearer t", "Connection": "x"},
            "body": {"name": "lamp"},
        },
        headers=headers,
    )
    assert dry.status_code == 200, dry.text
    result = dry.json()
    assert result["matched"]
    assert result["sent"] is False
    assert result["params"] == {"id": "42"}
    assert result["checks"]["ipAllowed"] is False  # 203.0.113.10 is in the denied /24
    sent = result["upstream"]
    assert sent["url"] == upstream.url("/base/v2/items/42") + "?a=1"
    assert sent["body"] == {"item": "lamp"}
    names = {k.lower(): v for k, v in sent["headers"]}
    assert names["x-partner"] == "acme"
    assert "x-internal" not in names
    assert names["authorization"] == "********"
    assert "connection" not in names
    assert upstream.requests == []  # nothing was sent

    nomatch = await client.post(
        f"{BASE}/test?orgId=100", json={"method": "GET", "path": "/items/42"}, headers=headers
    )
    assert nomatch.json() == {"matched": False, "allowedMethods": ["POST"]}

    stored = (await client.get(f"{BASE}/routes?orgId=100", headers=headers)).json()["routes"][0]
    assert stored["rateLimiting"]["perClient"]["maxRequests"] == 5


async def test_analytics_and_health(gw_world: World, upstream: RecordingSink) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    upstream.on("/ok", Behaviour(200, b"{}"))
    upstream.on("/bad", Behaviour(500))
    ok = await configure(client, headers, 100, {"path": "/ok", "targetUrl": upstream.url()})
    bad = await configure(client, headers, 100, {"path": "/bad", "targetUrl": upstream.url()})
    for _ in range(4):
        assert (await client.get("/gw/100/ok")).status_code == 200
    for _ in range(2):
        assert (await client.get("/gw/100/bad")).status_code == 500
    analytics = (await client.get(f"{BASE}/analytics?orgId=100", headers=headers)).json()
    by_id = {r["routeId"]: r for r in analytics["routes"]}
    assert by_id[ok["routeId"]]["requests"] == 4
    assert by_id[ok["routeId"]]["errorRate"] == 0
    assert by_id[bad["routeId"]]["errorRate"] == 1.0
    assert by_id[ok["routeId"]]["p50Ms"] is not None
    assert by_id[ok["routeId"]]["p99Ms"] >= by_id[ok["routeId"]]["p50Ms"]
    assert by_id[ok["routeId"]]["topClients"] == [{"client": "ip:198.51.100.7", "requests": 4}]
    assert analytics["total"]["requests"] == 6
    # rollups are added, not replaced: a second flush keeps the first counts
    assert (await client.get("/gw/100/ok")).status_code == 200
    again = (await client.get(f"{BASE}/analytics?orgId=100", headers=headers)).json()
    assert again["total"]["requests"] == 7
    other = gw_world.headers["user_b"]
    assert (await client.get(f"{BASE}/analytics?orgId=200", headers=other)).json()["routes"] == []

    passive = (await client.get(f"{BASE}/health?orgId=100", headers=headers)).json()
    health = {r["routeId"]: r for r in passive["routes"]}
    assert health[ok["routeId"]]["healthy"] is True
    assert health[bad["routeId"]]["upstreams"][0]["consecutiveFailures"] == 2
    assert passive["rateLimitBackend"]["backend"] == "memory"
    active = (await client.get(f"{BASE}/health?orgId=100&active=true", headers=headers)).json()
    assert active["checked"] == "active"


async def test_management_needs_credentials(gw_world: World) -> None:
    response = await gw_world.client.get(f"{BASE}/routes?orgId=100")
    assert response.status_code == 401


async def test_routes_are_paged_and_filtered(gw_world: World, upstream: RecordingSink) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    for path in ("/a", "/b", "/c"):
        await configure(client, headers, 100, {"path": path, "targetUrl": upstream.url()})
    await configure(
        client, headers, 100, {"path": "/d", "targetUrl": upstream.url(), "status": "INACTIVE"}
    )
    first = (await client.get(f"{BASE}/routes?orgId=100&limit=2", headers=headers)).json()
    assert [r["path"] for r in first["routes"]] == ["/a", "/b"]
    assert first["total"] == 4
    assert first["hasMore"] is True
    last = (await client.get(f"{BASE}/routes?orgId=100&limit=2&page=2", headers=headers)).json()
    assert [r["path"] for r in last["routes"]] == ["/c", "/d"]
    assert last["hasMore"] is False
    inactive = await client.get(f"{BASE}/routes?orgId=100&status=INACTIVE", headers=headers)
    assert [r["path"] for r in inactive.json()["routes"]] == ["/d"]
    assert (await client.get("/gw/100/d")).status_code == 404  # inactive routes are not served
    assert (await client.get("/gw/100/a")).status_code == 200
