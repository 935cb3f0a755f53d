"""Shared pieces of the gateway tests: a recording upstream and an app allowed to reach it.

Each test module declares the fixtures with these helpers (fixtures imported from another
module are not picked up below the root conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.runtime import build_services
from junctionbox.testing import RecordingSink

BASE = "/api/v1/integration/api-gateway"
CLIENT_IP = "198.51.100.7"


@asynccontextmanager
async def gateway_world(
    db_url: str, tmp_path: Path, upstream: RecordingSink, **overrides: Any
) -> AsyncIterator[World]:
    """A two-tenant world whose app may reach ``upstream``; requests come from CLIENT_IP."""
    settings = make_settings(db_url, tmp_path, ssrf_allowlist=upstream.allowlist_entry, **overrides)
    svc = build_services(settings)
    transport = httpx.ASGITransport(app=create_app(svc), client=(CLIENT_IP, 1234))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield await World(http, svc).build()
    finally:
        await svc.close()


async def configure(
    client: httpx.AsyncClient, headers: dict[str, str], org: int, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(f"{BASE}/configure?orgId={org}", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result
