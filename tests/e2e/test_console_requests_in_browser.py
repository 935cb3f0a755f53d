"""The requests-in pages in a real browser: a USER creates an inbound integration pointed at
a recording upstream (with the transformation's live test) and a caller goes through the
proxy; a webhook source is created, its secret read once, and a signed webhook posted to it
shows in the source's recent requests; a gateway route is created and dry-run tested; the
analytics, health and security pages render. Screenshots under ``tests/artifacts/console/``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.e2e.test_console_browser import ORG, USER, log_in, set_up_tenant, shot

from junctionbox.testing import Behaviour, RecordingSink

WAIT_SECONDS = 30.0  # bound of every wait for the server's background work


async def create_inbound(page: Any, base: str, sink: RecordingSink, artifacts: Path) -> None:
    await page.goto(f"{base}/console/inbound/new")
    await page.fill("input[name=name]", "Bookings")
    await page.fill("input[name=type]", "bookings")
    await page.fill("input[name=targetUrl]", "not a url")
    await page.click("#save")
    await page.locator(".field-error").first.wait_for()  # the problem beside the field
    await shot(page, artifacts, "30-inbound-form-errors")
    await page.fill("input[name=targetUrl]", sink.url("/upstream/bookings"))
    await page.select_option("select[name=inboundAuthType]", "API_KEY")
    await page.fill("textarea[name=inboundAuthConfig]", '{"value": "partner-key-123"}')
    await page.select_option("select[name=requestTransformationMode]", "JSONATA")
    await page.fill("textarea[name=requestTransformScript]", '{"patient": patientId}')
    await page.fill("#sample", '{"patientId": "p-7"}')
    await page.click("#test-request")  # htmx: the live test on the sample
    await page.locator("#result-request pre").wait_for()
    assert '"patient":"p-7"' in (await page.inner_text("#result-request")).replace(" ", "")
    await shot(page, artifacts, "31-inbound-live-test")
    await page.click("#save")
    await page.locator("#proxy-url").wait_for()
    assert "/api/v1/integrations/bookings" in await page.inner_text("#proxy-url")
    assert "X-Integration-Key" in await page.inner_text("#proxy-curl")
    await shot(page, artifacts, "32-inbound-detail")


async def call_proxy(base: str, key: str, sink: RecordingSink) -> None:
    url = f"{base}/api/v1/integrations/bookings?orgId={ORG}"
    headers = {"x-api-key": key, "x-integration-key": "partner-key-123"}
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(url, json={"patientId": "p-7"}, headers={"x-api-key": key})
        assert refused.status_code == 401, refused.text
        answer = await http.post(url, json={"patientId": "p-7"}, headers=headers)
        assert answer.status_code == 200, answer.text
    received = sink.requests_to("/upstream/bookings")
    assert [orjson.loads(r.body) for r in received] == [{"patient": "p-7"}]


async def create_source(page: Any, base: str, artifacts: Path) -> tuple[str, str]:
    """The source's receive URL and its secret (shown this once)."""
    await page.goto(f"{base}/console/webhook-sources/new")
    await page.fill("input[name=name]", "partner-hooks")
    await page.select_option("select[name=eventTypeFrom]", "FIXED")
    await page.fill("input[name=eventType]", "partner.ping")
    await page.select_option("select[name='verification.scheme']", "HMAC_SHA256")
    await page.fill("input[name='verification.header']", "X-Signature")
    await page.click("#save")
    await page.locator("#source-secret").wait_for()
    await shot(page, artifacts, "33-webhook-source-secret-once")
    return await page.inner_text("#receive-url"), (await page.inner_text("#source-secret")).strip()


async def post_webhook(url: str, secret: str) -> None:
    body = b'{"id": "m-1", "ok": true}'
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"x-signature": signature, "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(url, content=body, headers=headers)
        assert answer.status_code == 202, answer.text


async def reload_until(page: Any, url: str, selector: str, text: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        await page.goto(url)
        if text in await page.locator(selector).inner_text():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} did not appear in {selector} of {url}")
        await asyncio.sleep(0.5)


async def create_route(page: Any, base: str, sink: RecordingSink, artifacts: Path) -> None:
    await page.goto(f"{base}/console/gateway/new")
    await page.fill("input[name=name]", "Orders API")
    await page.fill("input[name=path]", "/orders/{id}")
    await page.fill("input[name=targetUrl]", sink.url())
    await page.fill("input[name=targetEndpoint]", "/v2/orders/{id}")
    await page.fill("textarea[name=caching]", '{"enabled": true, "ttlSeconds": 30}')
    await page.click("#save")
    await page.locator("#gateway-url").wait_for()
    await page.fill("#route-test input[name=path]", "/orders/42")
    await page.click("#run-route-test")  # htmx: the dry run, nothing sent
    await page.locator("#test-result pre").wait_for()
    assert "/v2/orders/42" in await page.inner_text("#test-result")
    await shot(page, artifacts, "35-gateway-route-dry-run")


async def test_requests_in_journey(
    server: str, sink: RecordingSink, browser: Any, artifacts: Path
) -> None:
    base = server
    key = await set_up_tenant(base)
    sink.on("/upstream/bookings", Behaviour(200, b'{"ref": "b-1"}'))
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await log_in(page, base, USER)

    await create_inbound(page, base, sink, artifacts)
    await call_proxy(base, key, sink)

    url, secret = await create_source(page, base, artifacts)
    await post_webhook(url, secret)
    source_page = f"{base}/console/webhook-sources/{url.rsplit('/', 1)[1]}"
    await reload_until(page, source_page, "main", "partner.ping")
    assert secret not in await page.inner_text("main")  # shown once only
    await shot(page, artifacts, "34-webhook-source-receipts")

    await create_route(page, base, sink, artifacts)
    for name, path in (
        ("36-inbound-list", "/console/inbound"),
        ("37-webhook-sources", "/console/webhook-sources"),
        ("38-gateway-routes", "/console/gateway"),
        ("39-gateway-analytics", "/console/gateway/analytics"),
        ("40-gateway-health", "/console/gateway/health"),
        ("41-gateway-security", "/console/gateway/settings"),
    ):
        response = await page.goto(f"{base}{path}")
        assert response is not None
        assert response.status == 200, path
        await shot(page, artifacts, name)
    await context.close()
