"""Tenant isolation and roles on every endpoint.

Routes are enumerated from the application, so an endpoint added later is covered too:
every non-public route refuses a caller without credentials, every admin route refuses
USER and API_KEY callers, and tenant-scoped routes answer 404 for another tenant's org.
"""

from __future__ import annotations

import re

import pytest
from tests.support import World

from junctionbox.api.app import create_app

PUBLIC = {
    "/health",
    "/api/v1/health",
    "/api/v1/health/live",
    "/api/v1/health/ready",
    "/api/v1/auth/login",
    "/api/v1/webhooks/{source_id}",  # partners' webhooks: verified by the source's scheme
}


def _routes(services) -> list[tuple[str, str]]:
    """Every documented API operation (hidden aliases share their handler's dependencies)."""
    spec = create_app(services).openapi()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_every_private_route_needs_credentials(world: World) -> None:
    checked = 0
    for method, path in _routes(world.services):
        if path in PUBLIC:
            continue
        response = await world.client.request(method, _concrete(path), json={})
        assert response.status_code == 401, (method, path, response.status_code)
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("caller", ["user_a", "key_a"])
async def test_admin_routes_refuse_other_roles(world: World, caller: str) -> None:
    admin_routes = [(m, p) for m, p in _routes(world.services) if p.startswith("/api/v1/admin")]
    assert admin_routes
    for method, path in admin_routes:
        response = await world.client.request(
            method, _concrete(path), json={}, headers=world.headers[caller]
        )
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize("caller", ["user_a", "key_a"])
async def test_tenant_routes_hide_other_tenants(world: World, caller: str) -> None:
    headers = world.headers[caller]
    for org_id in (100, 101):  # own org and own unit
        own = await world.client.get(f"/api/v1/tenant?orgId={org_id}", headers=headers)
        assert own.status_code == 200
        assert own.json()["orgId"] == org_id
    default = await world.client.get("/api/v1/tenant", headers=headers)
    assert default.json()["orgId"] == 100
    for org_id in (200, 201, 999):  # another tenant's org and unit look like missing ones
        other = await world.client.get(f"/api/v1/tenant?orgId={org_id}", headers=headers)
        assert other.status_code == 404
        assert other.json()["code"] == "NOT_FOUND"


async def test_admin_may_act_for_any_tenant_but_must_name_it(world: World) -> None:
    admin = world.headers["admin"]
    unit = (await world.client.get("/api/v1/tenant?orgId=201", headers=admin)).json()
    assert unit["isUnit"] is True
    assert unit["organization"]["orgId"] == 200
    missing = await world.client.get("/api/v1/tenant", headers=admin)
    assert missing.status_code == 400
