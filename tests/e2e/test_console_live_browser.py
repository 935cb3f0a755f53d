"""The console's live events page in a real browser: events published over the API appear
as they are appended, filtered by type, and only the user's own organization's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.e2e.conftest import admin_headers
from tests.e2e.test_console_browser import USER, log_in, publish, set_up_tenant, shot

OTHER_ORG = 649


async def other_tenant_key(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, headers=admin_headers(base), timeout=10) as http:
        org = await http.post("/api/v1/admin/orgs", json={"orgId": OTHER_ORG, "name": "Other"})
        assert org.status_code == 201, org.text
        key = await http.post("/api/v1/admin/api-keys", json={"orgId": OTHER_ORG, "name": "p"})
        assert key.status_code == 201, key.text
        return str(key.json()["key"])


async def test_live_events_follow_the_log(server: str, browser: Any, artifacts: Path) -> None:
    base = server
    key = await set_up_tenant(base)
    foreign_key = await other_tenant_key(base)
    page = await (await browser.new_context()).new_page()
    await log_in(page, base, USER)
    await page.goto(f"{base}/console/events/live?types=order.*")
    await page.locator("#live-status", has_text="following").wait_for()
    await publish(base, foreign_key, "evt-foreign-1")  # another organization's
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        other_type = {"type": "invoice.paid", "id": "evt-inv-1", "source": "s", "data": {}}
        response = await http.post(
            "/api/v1/integration/events/publish", json=other_type, headers={"x-api-key": key}
        )
        assert response.status_code == 201
    await publish(base, key, "evt-live-1")
    await publish(base, key, "evt-live-2")
    rows = page.locator("#live-events tbody tr")
    await rows.filter(has_text="evt-live-2").wait_for()
    await rows.filter(has_text="evt-live-1").wait_for()
    text = await page.inner_text("#live-events")
    assert "evt-foreign-1" not in text  # the other organization's event
    assert "evt-inv-1" not in text  # filtered out by type
    assert (await rows.first.inner_text()).count("evt-live-2") == 1  # newest first
    await shot(page, artifacts, "30-live-events")
