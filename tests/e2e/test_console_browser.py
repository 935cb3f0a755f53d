"""The console in a real browser: an operator logs in, creates an outbound integration
pointed at a recording sink, sees a published event's delivery in the logs, sees a forced
failure land in the DLQ and retries it from there; a USER is kept out of admin pages; a form
post without the CSRF token is refused. Every page visited is saved as a screenshot under
``tests/artifacts/console/``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from tests.acceptance.test_serve import ADMIN
from tests.e2e.conftest import admin_headers

from junctionbox.testing import Behaviour, RecordingSink

PUBLISH = "/api/v1/integration/events/publish"
ORG = 648
USER = {"email": "operator@example.com", "password": "operator-pass-1"}
WAIT_SECONDS = 30.0  # bound of every wait for the server's background work


async def shot(page: Any, artifacts: Path, name: str) -> None:
    await page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


async def reload_until(page: Any, url: str, selector: str, text: str) -> None:
    """Reload ``url`` until ``selector`` contains ``text`` (bounded by WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        await page.goto(url)
        if text in await page.locator(selector).inner_text():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} did not appear in {selector} of {url}")
        await asyncio.sleep(0.5)


async def set_up_tenant(base: str) -> str:
    """An organization, a USER in it and an API key for the producer (via the API)."""
    headers = admin_headers(base)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        org = await http.post("/api/v1/admin/orgs", json={"orgId": ORG, "name": "Acme Care"})
        assert org.status_code == 201, org.text
        user = await http.post("/api/v1/admin/users", json={**USER, "role": "USER", "orgId": ORG})
        assert user.status_code == 201, user.text
        key = await http.post("/api/v1/admin/api-keys", json={"orgId": ORG, "name": "producer"})
        assert key.status_code == 201, key.text
        return str(key.json()["key"])


async def publish(base: str, key: str, event_id: str) -> None:
    event = {"type": "order.created", "id": event_id, "source": "shop", "data": {"id": 7}}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(PUBLISH, json=event, headers={"x-api-key": key})
        assert response.status_code == 201, response.text


async def log_in(page: Any, base: str, who: dict[str, str]) -> None:
    await page.goto(f"{base}/console/login")
    await page.fill("input[name=email]", who["email"])
    await page.fill("input[name=password]", who["password"])
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console/dashboard")


async def create_integration(page: Any, base: str, sink: RecordingSink, artifacts: Path) -> None:
    await page.goto(f"{base}/console/integrations/new")
    await page.fill("input[name=name]", "Orders to partner")
    await page.fill("input[name=eventType]", "order.created")
    await page.fill("input[name=targetUrl]", "not a url")
    await page.click("#save")
    # Validation messages beside the fields, the form kept as typed.
    await page.locator(".field-error").first.wait_for()
    await shot(page, artifacts, "04-integration-form-errors")
    await page.fill("input[name=targetUrl]", sink.url("/hook"))
    await page.select_option("select[name=transformationMode]", "JSONATA")
    await page.fill("#transformScript", '{"orderRef": id}')
    await page.fill("#sample", '{"id": 42}')
    await page.click("#run-test")  # htmx: the live test shows the transformed body
    await page.locator("#test-output").wait_for()
    assert '"orderRef":42' in (await page.inner_text("#test-output")).replace(" ", "")
    await shot(page, artifacts, "05-transformation-live-test")
    await page.fill("input[name='retryPolicy.maxRetries']", "0")  # fail fast into the DLQ
    await page.click("#save")
    await page.locator("#signing-secret").wait_for()
    await shot(page, artifacts, "06-integration-created")
    await page.click("#open-integration")
    await page.locator("h1").wait_for()
    await page.click("#test-send")  # the saved integration's test preview (htmx)
    await page.locator("#test-output").wait_for()
    assert '"orderRef":1' in (await page.inner_text("#test-output")).replace(" ", "")
    await shot(page, artifacts, "07-integration-detail")


async def test_operator_journey(
    server: str, sink: RecordingSink, browser: Any, artifacts: Path
) -> None:
    base = server
    key = await set_up_tenant(base)
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"{base}/console/login")
    await shot(page, artifacts, "01-login")
    await log_in(page, base, ADMIN)
    await shot(page, artifacts, "02-dashboard-empty")
    # The ADMIN's org switcher lists the organization.
    assert "Acme Care" in await page.inner_text("#org-switch")

    await create_integration(page, base, sink, artifacts)

    # A published event is delivered and shows in the logs.
    await publish(base, key, "evt-ok-1")
    await sink.wait_for(1, timeout=WAIT_SECONDS)
    await reload_until(page, f"{base}/console/logs", "#logs tbody", "SUCCESS")
    await shot(page, artifacts, "08-delivery-logs")
    await page.locator("#logs tbody a").first.click()
    await page.locator("#curl").wait_for()
    assert "curl" in await page.inner_text("#curl")
    await shot(page, artifacts, "09-delivery-detail")

    # The destination fails: the delivery ends in the DLQ; retried from there it succeeds.
    sink.on("/hook", Behaviour(status=500))
    await publish(base, key, "evt-fail-1")
    await reload_until(page, f"{base}/console/dlq", "#dlq tbody", "PENDING_RETRY")
    await shot(page, artifacts, "10-dlq-entry")
    sink.on("/hook", Behaviour(status=200))
    before = len(sink.requests_to("/hook"))
    await page.locator("button.retry-one").first.click()  # confirmed in the dialog
    await page.locator(".flash.ok").wait_for()
    assert "queued" in await page.inner_text(".flash.ok")
    await sink.wait_for(before + 1, timeout=WAIT_SECONDS)
    await reload_until(page, f"{base}/console/dlq", "#dlq tbody", "empty")
    await shot(page, artifacts, "11-dlq-after-retry")
    await reload_until(page, f"{base}/console/dashboard", "#kpi-deliveries", "3")
    await shot(page, artifacts, "03-dashboard")

    # The other pages render.
    for name, path in (
        ("12-integrations", "/console/integrations"),
        ("12-events", "/console/events"),
        ("13-scheduled", "/console/scheduled"),
        ("14-lookups", "/console/lookups"),
        ("15-event-types", "/console/event-types"),
        ("16-streams-sources", "/console/sources"),
        ("17-admin-orgs", "/console/admin/orgs"),
        ("18-admin-users", "/console/admin/users"),
        ("19-admin-api-keys", "/console/admin/api-keys"),
        ("20-admin-audit", "/console/admin/audit"),
    ):
        response = await page.goto(f"{base}{path}")
        assert response is not None
        assert response.status == 200, path
        await shot(page, artifacts, name)

    # An API key is shown once, at creation.
    await page.goto(f"{base}/console/admin/api-keys")
    await page.fill("input[name=name]", "console-key")
    await page.click("#create-key")
    assert (await page.inner_text("#new-key")).startswith("jbk_")
    await shot(page, artifacts, "21-api-key-created")

    # Dark mode and a phone-sized screen.
    dark = await browser.new_context(color_scheme="dark", viewport={"width": 390, "height": 844})
    await dark.add_cookies(await context.cookies())
    phone = await dark.new_page()
    await phone.goto(f"{base}/console/dashboard")
    await shot(phone, artifacts, "22-dashboard-dark-phone")
    await dark.close()

    # CSRF: a form post from this very session without the token is refused.
    refused = await context.request.post(
        f"{base}/console/lookups", form={"type": "t", "key": "k", "value": "v"}
    )
    assert refused.status == 403
    await context.close()


async def test_user_cannot_reach_admin_pages(server: str, browser: Any, artifacts: Path) -> None:
    base = server
    await set_up_tenant(base)
    context = await browser.new_context()
    page = await context.new_page()
    await log_in(page, base, USER)
    nav = await page.inner_text("nav.side")
    assert "Dashboard" in nav
    assert "Users" not in nav
    assert "API keys" not in nav
    response = await page.goto(f"{base}/console/admin/users")
    assert response is not None
    assert response.status == 403
    assert "ADMIN role" in await page.inner_text("main")
    await shot(page, artifacts, "23-user-refused-admin")
    await context.close()
