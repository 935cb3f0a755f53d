"""The service registry (/api/v1/integration/api-gateway/services) and gateway routes that
target a registered service, against real upstreams on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from tests.integration.gateway_helpers import BASE, CLIENT_IP, configure
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.engine.service_health import ServiceHealthChecker
from junctionbox.runtime import RolePlan, build_services, role_loops
from junctionbox.store.tables import gateway_services
from junctionbox.store.types import utcnow
from junctionbox.testing import Behaviour, RecordingSink

SERVICES = f"{BASE}/services"


@pytest.fixture
async def blue() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def green() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@asynccontextmanager
async def registry_world(
    db_url: str, tmp_path: Path, *sinks: RecordingSink
) -> AsyncIterator[World]:
    """Two tenants; the SSRF allowlist names exactly the test's upstreams."""
    allowlist = ",".join(s.allowlist_entry for s in sinks)
    svc = build_services(make_settings(db_url, tmp_path, ssrf_allowlist=allowlist))
    transport = httpx.ASGITransport(app=create_app(svc), client=(CLIENT_IP, 1234))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield await World(http, svc).build()
    finally:
        await svc.close()


@pytest.fixture
async def world(
    db_url: str, tmp_path: Path, blue: RecordingSink, green: RecordingSink
) -> AsyncIterator[World]:
    async with registry_world(db_url, tmp_path, blue, green) as built:
        yield built


def user(world: World, org: int = 100) -> dict[str, str]:
    return world.headers["user_a" if org == 100 else "user_b"]


async def register(world: World, body: dict[str, Any], org: int = 100) -> dict[str, Any]:
    response = await world.client.post(
        f"{SERVICES}?orgId={org}", json=body, headers=user(world, org)
    )
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def service(name: str, *urls: str, **extra: Any) -> dict[str, Any]:
    return {"serviceName": name, "endpoints": [{"url": u} for u in urls], **extra}


async def gw_paths(world: World, path: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        statuses.append((await world.client.get(f"/gw/100{path}")).status_code)
    return statuses


# --- registry CRUD ---


async def test_register_read_list_update_and_deregister(world: World, blue: RecordingSink) -> None:
    client, headers = world.client, user(world)
    created = await register(
        world,
        service(
            "billing",
            blue.url("/v1"),
            serviceVersion="2.3.0",
            serviceType="GRAPHQL",
            capabilities=["invoices"],
            dependencies=[{"serviceName": "ledger"}],
            metadata={"team": "payments"},
            configuration={"heartbeatTtlSeconds": 30},
        ),
    )
    service_id = created["serviceId"]
    assert service_id.startswith("svc_")
    assert created["status"] == "ACTIVE"
    assert created["endpoints"] == [{"url": blue.url("/v1"), "weight": 1}]
    assert created["configuration"]["heartbeatTtlSeconds"] == 30
    assert created["metadata"] == {"team": "payments"}
    assert created["registrationTime"]
    assert created["lastHeartbeat"] is None

    again = await world.client.post(
        f"{SERVICES}?orgId=100", json=service("billing", blue.url("/v2")), headers=headers
    )
    assert again.status_code == 200  # the same name replaces the registration
    assert again.json()["serviceId"] == service_id
    assert again.json()["endpoints"][0]["url"] == blue.url("/v2")

    by_name = await client.get(f"{SERVICES}/billing?orgId=100", headers=headers)
    assert by_name.status_code == 200
    assert by_name.json()["serviceId"] == service_id

    await register(world, service("audit", blue.url("/audit")))
    page = (await client.get(f"{SERVICES}?orgId=100&limit=1", headers=headers)).json()
    assert [s["serviceName"] for s in page["services"]] == ["audit"]
    assert page["total"] == 2
    assert page["hasMore"] is True

    put = await client.put(
        f"{SERVICES}/{service_id}?orgId=100",
        json=service("billing", blue.url("/v3"), serviceVersion="3.0.0"),
        headers=headers,
    )
    assert put.status_code == 200, put.text
    assert put.json()["serviceVersion"] == "3.0.0"
    patched = await client.patch(
        f"{SERVICES}/{service_id}?orgId=100", json={"status": "INACTIVE"}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "INACTIVE"
    assert patched.json()["endpoints"][0]["url"] == blue.url("/v3")  # untouched by PATCH

    deleted = await client.delete(f"{SERVICES}/{service_id}?orgId=100", headers=headers)
    assert deleted.status_code == 204
    gone = await client.get(f"{SERVICES}/{service_id}?orgId=100", headers=headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "NOT_FOUND"


async def test_validation_errors_name_the_location(world: World, blue: RecordingSink) -> None:
    good = service("billing", blue.url("/v1"))
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"endpoints": [{"url": "ftp://x"}]}, ["body", "endpoints", 0, "url"]),
        ({"endpoints": [{"url": blue.url("/a?x=1")}]}, ["body", "endpoints", 0, "url"]),
        (
            {"endpoints": [{"url": blue.url("/a")}, {"url": blue.url("/a/")}]},
            ["body", "endpoints", 1, "url"],
        ),
        ({"endpoints": []}, ["body", "endpoints"]),
        ({"endpoints": [{"url": blue.url("/a"), "weight": 0}]}, ["body", "endpoints", 0, "weight"]),
        ({"healthCheckUrl": "gopher://x/health"}, ["body", "healthCheckUrl"]),
        ({"healthCheckUrl": "/health#x"}, ["body", "healthCheckUrl"]),
        ({"serviceName": "has space"}, ["body", "serviceName"]),
        ({"serviceName": "http://x"}, ["body", "serviceName"]),
        ({"status": "UNHEALTHY"}, ["body", "status"]),
        ({"serviceType": "CORBA"}, ["body", "serviceType"]),
        (
            {"configuration": {"healthCheck": {"intervalSeconds": 0}}},
            ["body", "configuration", "healthCheck", "intervalSeconds"],
        ),
        ({"unknown": 1}, ["body", "unknown"]),
    ]
    for change, loc in cases:
        response = await world.client.post(
            f"{SERVICES}?orgId=100", json={**good, **change}, headers=user(world)
        )
        assert response.status_code == 400, (change, response.text)
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        assert problem["details"][0]["loc"][: len(loc)] == loc, (change, problem)
    listed = await world.client.get(f"{SERVICES}?orgId=100", headers=user(world))
    assert listed.json()["total"] == 0


async def test_patch_with_nulls_is_a_clear_answer(world: World, blue: RecordingSink) -> None:
    created = await register(
        world, service("billing", blue.url("/v1"), configuration={"heartbeatTtlSeconds": 5})
    )
    path = f"{SERVICES}/{created['serviceId']}?orgId=100"
    for body, loc in (
        ({"serviceName": None}, ["body", "serviceName"]),
        ({"endpoints": None}, ["body", "endpoints"]),
    ):
        response = await world.client.patch(path, json=body, headers=user(world))
        assert response.status_code == 400, (body, response.text)
        assert response.json()["details"][0]["loc"] == loc
    cleared = await world.client.patch(
        path,
        json={"configuration": None, "metadata": None, "healthCheckUrl": None},
        headers=user(world),
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["configuration"]["heartbeatTtlSeconds"] is None
    assert cleared.json()["metadata"] == {}


async def test_services_are_isolated_between_tenants(world: World, blue: RecordingSink) -> None:
    created = await register(world, service("billing", blue.url("/v1")))
    other = user(world, 200)
    sid = created["serviceId"]
    for method, path in (
        ("GET", f"{SERVICES}/{sid}"),
        ("GET", f"{SERVICES}/billing"),
        ("PATCH", f"{SERVICES}/{sid}"),
        ("DELETE", f"{SERVICES}/{sid}"),
        ("POST", f"{SERVICES}/{sid}/heartbeat"),
    ):
        body = {"status": "INACTIVE"} if method == "PATCH" else None
        response = await world.client.request(method, f"{path}?orgId=200", json=body, headers=other)
        assert response.status_code == 404, (method, path, response.text)
    listed = await world.client.get(f"{SERVICES}?orgId=200", headers=other)
    assert listed.json()["total"] == 0
    # The other tenant may register the same name, and cannot route to tenant 100's service.
    assert (await register(world, service("billing", blue.url("/b")), org=200))["serviceId"] != sid
    refused = await world.client.post(
        f"{BASE}/configure?orgId=200", json={"path": "/x", "targetService": sid}, headers=other
    )
    assert refused.status_code == 400
    assert refused.json()["details"][0]["loc"] == [
        "body",
        "targetService",
    ]
    # Tenant 200's credentials cannot act for tenant 100 (which they are not told exists).
    refused = await world.client.get(f"{SERVICES}?orgId=100", headers=other)
    assert refused.status_code == 404


async def test_heartbeat_with_an_api_key_and_ttl_expiry(world: World, blue: RecordingSink) -> None:
    created = await register(
        world, service("billing", blue.url("/v1"), configuration={"heartbeatTtlSeconds": 60})
    )
    sid = created["serviceId"]
    assert created["status"] == "ACTIVE"  # within one TTL of registering
    beat = await world.client.post(
        f"{SERVICES}/{sid}/heartbeat?orgId=100", headers=world.headers["key_a"]
    )
    assert beat.status_code == 200, beat.text
    assert beat.json()["status"] == "ACTIVE"
    assert beat.json()["lastHeartbeat"]

    late = utcnow() - timedelta(seconds=61)
    async with world.services.db.write() as conn:
        await conn.execute(
            update(gateway_services)
            .where(gateway_services.c.id == sid)
            .values(last_heartbeat=late, registered_at=late)
        )
    found = (await world.client.get(f"{SERVICES}/{sid}?orgId=100", headers=user(world))).json()
    assert found["status"] == "UNHEALTHY"
    assert found["registeredStatus"] == "ACTIVE"
    assert found["health"]["heartbeatExpired"] is True
    health = (await world.client.get(f"{BASE}/health?orgId=100", headers=user(world))).json()
    assert health["status"] == "degraded"
    assert [(s["serviceName"], s["status"]) for s in health["services"]] == [
        ("billing", "UNHEALTHY")
    ]

    beat = await world.client.post(
        f"{SERVICES}/billing/heartbeat?orgId=100", headers=world.headers["key_a"]
    )
    assert beat.json()["status"] == "ACTIVE"


# --- routes through services ---


async def test_a_route_round_robins_over_the_service_endpoints(
    world: World, blue: RecordingSink
) -> None:
    await register(world, service("orders", blue.url("/a"), blue.url("/b")))
    route = await configure(
        world.client,
        user(world),
        100,
        {"path": "/orders/*", "targetService": "orders", "targetEndpoint": "/v2/orders"},
    )
    assert route["targetService"] == "orders"
    assert await gw_paths(world, "/orders/7", 4) == [200] * 4
    assert [r.path for r in blue.requests] == [
        "/a/v2/orders/7",
        "/b/v2/orders/7",
        "/a/v2/orders/7",
        "/b/v2/orders/7",
    ]

    dry = await world.client.post(
        f"{BASE}/test?orgId=100", json={"path": "/orders/9"}, headers=user(world)
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["upstream"]["url"] == blue.url("/a/v2/orders/9")
    assert dry.json()["service"]["serviceName"] == "orders"
    assert len(blue.requests) == 4  # a dry run sends nothing


async def test_weights_share_the_traffic(world: World, blue: RecordingSink) -> None:
    await register(
        world,
        {
            "serviceName": "orders",
            "endpoints": [{"url": blue.url("/a"), "weight": 3}, {"url": blue.url("/b")}],
        },
    )
    await configure(world.client, user(world), 100, {"path": "/o", "targetService": "orders"})
    assert await gw_paths(world, "/o", 8) == [200] * 8
    paths = [r.path for r in blue.requests]
    assert paths.count("/a/o") == 6
    assert paths.count("/b/o") == 2


async def test_updating_the_service_moves_its_routes_traffic(
    world: World, blue: RecordingSink, green: RecordingSink
) -> None:
    created = await register(world, service("orders", blue.url("/api")))
    await configure(
        world.client, user(world), 100, {"path": "/x", "targetService": created["serviceId"]}
    )
    assert await gw_paths(world, "/x", 1) == [200]
    assert [r.path for r in blue.requests] == ["/api/x"]

    await register(world, service("orders", green.url("/api")))  # re-registration
    assert await gw_paths(world, "/x", 2) == [200, 200]
    assert [r.path for r in green.requests] == ["/api/x", "/api/x"]

    patched = await world.client.patch(
        f"{SERVICES}/orders?orgId=100",
        json={"endpoints": [{"url": blue.url("/new")}]},
        headers=user(world),
    )
    assert patched.status_code == 200, patched.text
    assert await gw_paths(world, "/x", 1) == [200]
    assert blue.requests[-1].path == "/new/x"


async def test_moving_a_service_drops_its_routes_cached_answers(
    world: World, blue: RecordingSink, green: RecordingSink
) -> None:
    blue.on("/api/x", Behaviour(200, b"blue"))
    green.on("/api/x", Behaviour(200, b"green"))
    await register(world, service("orders", blue.url("/api")))
    body = {"path": "/x", "targetService": "orders", "caching": {"enabled": True}}
    await configure(world.client, user(world), 100, body)
    first = await world.client.get("/gw/100/x")
    second = await world.client.get("/gw/100/x")
    assert (first.text, second.text) == ("blue", "blue")
    assert second.headers["x-cache"] == "HIT"

    await register(world, service("orders", green.url("/api")))
    moved = await world.client.get("/gw/100/x")
    assert moved.text == "green"
    assert moved.headers["x-cache"] == "MISS"


async def test_out_of_service_service_answers_503(world: World, blue: RecordingSink) -> None:
    await register(world, service("orders", blue.url("/api"), status="INACTIVE"))
    await configure(world.client, user(world), 100, {"path": "/x", "targetService": "orders"})
    response = await world.client.get("/gw/100/x")
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert blue.requests == []
    dry = await world.client.post(
        f"{BASE}/test?orgId=100", json={"path": "/x"}, headers=user(world)
    )
    assert dry.json()["service"]["inService"] is False


async def test_a_service_in_use_cannot_be_deleted_or_renamed(
    world: World, blue: RecordingSink
) -> None:
    created = await register(world, service("orders", blue.url("/api")))
    sid = created["serviceId"]
    route = await configure(
        world.client, user(world), 100, {"path": "/x", "targetService": "orders"}
    )
    refused = await world.client.delete(f"{SERVICES}/{sid}?orgId=100", headers=user(world))
    assert refused.status_code == 409
    assert refused.json()["code"] == "CONFLICT"
    assert route["routeId"] in refused.json()["error"]
    renamed = await world.client.patch(
        f"{SERVICES}/{sid}?orgId=100", json={"serviceName": "orders2"}, headers=user(world)
    )
    assert renamed.status_code == 409
    assert route["routeId"] in renamed.json()["error"]

    gone = await world.client.delete(
        f"{BASE}/route/{route['routeId']}?orgId=100", headers=user(world)
    )
    assert gone.status_code == 204
    deleted = await world.client.delete(f"{SERVICES}/{sid}?orgId=100", headers=user(world))
    assert deleted.status_code == 204


async def test_a_url_in_target_service_still_works(world: World, blue: RecordingSink) -> None:
    await configure(
        world.client, user(world), 100, {"path": "/x", "targetService": blue.url("/legacy")}
    )
    assert await gw_paths(world, "/x", 1) == [200]
    assert blue.requests[-1].path == "/legacy/x"


# --- active health checks ---


async def test_health_checker_marks_endpoints_down_and_up(
    world: World, blue: RecordingSink
) -> None:
    check = {"unhealthyThreshold": 2, "healthyThreshold": 2}
    await register(
        world,
        service(
            "orders",
            blue.url("/a"),
            blue.url("/b"),
            healthCheckUrl="/health",
            configuration={"healthCheck": check},
        ),
    )
    await configure(world.client, user(world), 100, {"path": "/x", "targetService": "orders"})
    svc = world.services
    checker = ServiceHealthChecker(svc.registry, svc.http, on_change=svc.gateway.forget)
    blue.on("/a/health", Behaviour(500))
    blue.on("/b/health", Behaviour(200))

    assert await checker.run_once(force=True) == 1  # one failure: still up
    assert await gw_paths(world, "/x", 2) == [200, 200]
    assert sorted(r.path for r in blue.requests if r.path.endswith("/x")) == ["/a/x", "/b/x"]

    await checker.run_once(force=True)  # second failure in a row: /a is down
    blue.requests.clear()
    assert await gw_paths(world, "/x", 3) == [200] * 3
    assert [r.path for r in blue.requests] == ["/b/x"] * 3
    found = (await world.client.get(f"{SERVICES}/orders?orgId=100", headers=user(world))).json()
    probes = found["health"]["activeCheck"]["probes"]
    assert probes[blue.url("/a/health")]["healthy"] is False
    assert probes[blue.url("/a/health")]["lastStatus"] == 500
    assert probes[blue.url("/b/health")]["healthy"] is True
    assert found["status"] == "ACTIVE"  # one endpoint can still serve

    blue.on("/a/health", Behaviour(200))
    await checker.run_once(force=True)  # one success: still down
    await checker.run_once(force=True)  # second success: up again
    blue.requests.clear()
    assert await gw_paths(world, "/x", 2) == [200, 200]
    assert sorted(r.path for r in blue.requests) == ["/a/x", "/b/x"]
    health = (await world.client.get(f"{BASE}/health?orgId=100", headers=user(world))).json()
    assert health["services"][0]["status"] == "ACTIVE"
    assert health["routes"][0]["serviceName"] == "orders"


async def test_a_failing_service_check_makes_it_unhealthy_but_still_served(
    world: World, blue: RecordingSink
) -> None:
    await register(
        world,
        service(
            "orders",
            blue.url("/a"),
            healthCheckUrl=blue.url("/status"),
            configuration={"healthCheck": {"unhealthyThreshold": 1}},
        ),
    )
    await configure(world.client, user(world), 100, {"path": "/x", "targetService": "orders"})
    blue.on("/status", Behaviour.reset())
    svc = world.services
    checker = ServiceHealthChecker(svc.registry, svc.http, on_change=svc.gateway.forget)
    await checker.run_once(force=True)
    assert await checker.run_once() == 0  # not due again before its interval
    found = (await world.client.get(f"{SERVICES}/orders?orgId=100", headers=user(world))).json()
    assert found["status"] == "UNHEALTHY"
    assert found["health"]["activeCheck"]["probes"][blue.url("/status")]["lastError"]
    # Every endpoint marked down: the gateway tries them anyway rather than refuse.
    assert await gw_paths(world, "/x", 1) == [200]


async def test_the_health_checker_keeps_the_ssrf_guard(
    db_url: str, tmp_path: Path, blue: RecordingSink, green: RecordingSink
) -> None:
    async with registry_world(db_url, tmp_path, blue) as only_blue:  # green not allowlisted
        await register(
            only_blue,
            service(
                "orders",
                blue.url("/a"),
                healthCheckUrl=green.url("/health"),
                configuration={"healthCheck": {"unhealthyThreshold": 1}},
            ),
        )
        svc = only_blue.services
        await ServiceHealthChecker(svc.registry, svc.http).run_once(force=True)
        found = await only_blue.client.get(f"{SERVICES}/orders?orgId=100", headers=user(only_blue))
        probe = found.json()["health"]["activeCheck"]["probes"][green.url("/health")]
        assert probe["healthy"] is False
        assert green.requests == []


async def test_the_api_role_runs_the_health_checker(world: World) -> None:
    loops = role_loops(world.services, RolePlan.parse("api"))
    assert any(isinstance(getattr(loop, "__self__", None), ServiceHealthChecker) for loop in loops)
    others = role_loops(world.services, RolePlan.parse("worker"))
    assert not any(
        isinstance(getattr(loop, "__self__", None), ServiceHealthChecker) for loop in others
    )
