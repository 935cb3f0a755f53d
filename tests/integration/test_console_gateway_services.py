"""The console's gateway page lists the tenant's registered services (read-only), on SQLite
and PostgreSQL, and only the tenant's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.integration.console_helpers import console_login
from tests.integration.gateway_helpers import BASE, gateway_world
from tests.support import World

from junctionbox.api.app import create_app
from junctionbox.testing import RecordingSink


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def gw_world(db_url: str, tmp_path: Path, upstream: RecordingSink) -> AsyncIterator[World]:
    async with gateway_world(db_url, tmp_path, upstream) as found:
        yield found


@pytest.fixture
async def gw_browser(gw_world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gw_world.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_the_gateway_page_lists_the_tenants_services(
    gw_world: World, gw_browser: httpx.AsyncClient, upstream: RecordingSink
) -> None:
    for org, who, name in ((100, "user_a", "billing-a"), (200, "user_b", "billing-b")):
        body = {
            "serviceName": name,
            "serviceVersion": "4.2.0",
            "endpoints": [
                {"url": upstream.url("/one"), "weight": 3},
                {"url": upstream.url("/two")},
            ],
        }
        response = await gw_world.client.post(
            f"{BASE}/services?orgId={org}", json=body, headers=gw_world.headers[who]
        )
        assert response.status_code == 201, response.text

    empty = await gw_browser.get("/console/gateway")
    assert empty.status_code in (302, 303, 401)  # not logged in
    await console_login(gw_browser, "user-a@example.com", "password-123")
    page = await gw_browser.get("/console/gateway")
    assert page.status_code == 200, page.text
    assert "Registered services" in page.text
    assert "billing-a" in page.text
    assert "4.2.0" in page.text
    assert f"{upstream.url('/one')} (weight 3)" in page.text
    assert "billing-b" not in page.text  # another tenant's
