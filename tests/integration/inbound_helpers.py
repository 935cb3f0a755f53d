"""Shared pieces of the inbound proxy tests: an upstream that records and answers, and the
services built with the SSRF allowlist naming exactly that upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.testing import RecordingSink

PROXY = "/api/v1/integrations"
ADMIN_API = "/api/v1/inbound-integrations"
GOOD_KEY = "partner-key-0123456789"


@pytest.fixture(name="sink")
async def sink_fixture() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as started:
        yield started


@pytest.fixture(name="settings_overrides")
def settings_fixture() -> dict[str, Any]:
    return {}


@pytest.fixture(name="services")
async def services_fixture(
    db_url: str, tmp_path: Path, sink: RecordingSink, settings_overrides: dict[str, Any]
) -> AsyncIterator[Services]:
    settings = make_settings(
        db_url, tmp_path, ssrf_allowlist=sink.allowlist_entry, **settings_overrides
    )
    svc = build_services(settings)
    svc.proxy.sleep = _no_sleep  # backoff delays are computed, not waited for, in tests
    yield svc
    await svc.close()


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture(name="client")
async def client_fixture(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def integration(sink: RecordingSink, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Appointment booking",
        "type": "appointment-booking",
        "targetUrl": sink.url("/book"),
        "httpMethod": "POST",
    }
    body.update(fields)
    return body


async def create(world: World, body: dict[str, Any], who: str = "user_a", org: int = 100) -> Any:
    response = await world.client.post(
        f"{ADMIN_API}?orgId={org}", json=body, headers=world.headers[who]
    )
    assert response.status_code == 201, response.text
    return response.json()
