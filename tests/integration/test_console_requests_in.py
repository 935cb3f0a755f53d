"""The console's requests-in pages over plain HTTP (inbound integrations, gateway routes,
webhook sources), on SQLite and PostgreSQL: render, create, problems beside the fields,
CSRF refusal, tenant isolation."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.integration.console_helpers import console_login
from tests.integration.gateway_helpers import gateway_world
from tests.support import World

from junctionbox.api.app import create_app
from junctionbox.services.container import Services
from junctionbox.testing import Behaviour, RecordingSink

USER_A = ("user-a@example.com", "password-123")
FIELD_ERROR = re.compile(r'name="([^"]+)"[^<]*(?:<[^>]*>[^<]*)*?<span class="field-error"')


@pytest.fixture
async def browser(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def error_beside(page: str, field: str) -> str:
    """The problem shown right after the field named ``field``."""
    start = page.index(f'name="{field}"')
    end = page.index("</label>", start)
    found = re.search(r'<span class="field-error" role="alert">([^<]*)</span>', page[start:end])
    assert found, f"no problem shown beside {field}"
    return html.unescape(found.group(1))


async def api(world: World, who: str, method: str, path: str, body: Any = None) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.headers[who])
    assert response.status_code in (200, 201), response.text
    return response.json()


INBOUND = {
    "name": "Bookings",
    "type": "bookings",
    "targetUrl": "https://partner.example.com/api/bookings",
    "httpMethod": "POST",
    "allowedMethods": "POST, GET",
    "inboundAuthType": "API_KEY",
    "inboundAuthConfig": '{"value": "a-long-partner-key"}',
    "outgoingAuthType": "BEARER",
    "outgoingAuthConfig": '{"token": "upstream-token-123"}',
    "rateLimits": '{"enabled": true, "maxRequests": 5, "windowSeconds": 60}',
    "timeoutMs": "5000",
    "retryPolicy": '{"maxRetries": 1}',
    "requestTransformationMode": "JSONATA",
    "requestTransformScript": '{"patient": patientId}',
    "isActive": "on",
}


async def test_inbound_create_detail_edit_and_versions(
    world: World, browser: httpx.AsyncClient, services: Services
) -> None:
    token = await console_login(browser, *USER_A)
    form = await browser.get("/console/inbound/new")
    assert form.status_code == 200
    assert 'name="inboundAuthConfig"' in form.text
    created = await browser.post("/console/inbound/new", data={**INBOUND, "csrf_token": token})
    assert created.status_code == 303, created.text
    detail = await browser.get(created.headers["location"])
    assert detail.status_code == 200
    page = html.unescape(detail.text)
    assert "/api/v1/integrations/bookings?orgId=100" in page
    assert "X-Integration-Key: $INTEGRATION_KEY" in page  # the curl example
    assert "a-long-partner-key" not in page
    assert "upstream-token-123" not in page
    integration_id = created.headers["location"].split("/")[-1].split("?")[0]
    stored = await services.inbound.get(await _tenant(services, world), integration_id)
    assert stored.integration.rate_limit.max_requests == 5
    assert stored.integration.allowed_methods == ("POST", "GET")
    # Editing with the credentials left masked keeps them.
    edit = await browser.get(f"/console/inbound/{integration_id}/edit")
    assert "********" in edit.text or "***" in edit.text
    values = _form_values(edit.text)
    values.update({"name": "Bookings v2", "csrf_token": token})
    saved = await browser.post(f"/console/inbound/{integration_id}/edit", data=values)
    assert saved.status_code == 303, saved.text
    after = await services.inbound.get(await _tenant(services, world), integration_id)
    assert after.integration.name == "Bookings v2"
    assert after.integration.auth.secrets == stored.integration.auth.secrets
    assert after.integration.inbound_auth.secrets == stored.integration.inbound_auth.secrets
    assert after.version == 2
    listing = await browser.get("/console/inbound?status=active&search=Bookings")
    assert "Bookings v2" in listing.text
    assert "Bookings v2" not in (await browser.get("/console/inbound?status=inactive")).text
    v1 = await browser.get(f"/console/inbound/{integration_id}/versions/1")
    assert v1.status_code == 200
    assert "Bookings" in v1.text
    changed = {"outgoingAuthConfig": {"token": "another-token-456"}}
    await api(world, "user_a", "PATCH", f"/api/v1/inbound-integrations/{integration_id}", changed)
    restored = await browser.post(
        f"/console/inbound/{integration_id}/restore", data={"version": "1", "csrf_token": token}
    )
    assert restored.status_code == 303
    back = await services.inbound.get(await _tenant(services, world), integration_id)
    assert back.integration.name == "Bookings"
    assert back.version == 4  # the old configuration with the credentials it had
    assert back.integration.auth.secrets == stored.integration.auth.secrets
    off = await browser.post(
        f"/console/inbound/{integration_id}/active", data={"active": "false", "csrf_token": token}
    )
    assert off.status_code == 303
    assert not (
        await services.inbound.get(await _tenant(services, world), integration_id)
    ).integration.is_active
    gone = await browser.post(
        f"/console/inbound/{integration_id}/delete", data={"csrf_token": token}
    )
    assert gone.status_code == 303
    assert (await browser.get(f"/console/inbound/{integration_id}")).status_code == 404


async def _tenant(services: Services, world: World) -> Any:
    principal = await services.auth.authenticate_token(
        world.headers["user_a"]["authorization"].split()[1]
    )
    return await services.tenancy.resolve(principal, None)


def _form_values(page: str) -> dict[str, str]:
    """The values a browser would submit from the form on ``page``."""
    values: dict[str, str] = {}
    for name, value in re.findall(r'<input name="([^"]+)" value="([^"]*)"', page):
        values[name] = html.unescape(value)
    for name, value in re.findall(r'<textarea name="([^"]+)">([^<]*)</textarea>', page):
        values[name] = html.unescape(value)
    for name, body in re.findall(r'<select name="([^"]+)">(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        values[name] = chosen.group(1) if chosen else ""
    for name in re.findall(r'<input type="checkbox" name="([^"]+)" checked', page):
        values[name] = "on"
    return values


async def test_inbound_problems_are_shown_beside_the_fields(
    world: World, browser: httpx.AsyncClient
) -> None:
    token = await console_login(browser, *USER_A)
    bad = {**INBOUND, "targetUrl": "ftp://nowhere", "rateLimits": "{not json", "csrf_token": token}
    answer = await browser.post("/console/inbound/new", data=bad)
    assert answer.status_code == 400
    assert "not valid JSON" in error_beside(answer.text, "rateLimits")
    bad["rateLimits"] = INBOUND["rateLimits"]
    answer = await browser.post("/console/inbound/new", data=bad)
    assert answer.status_code == 400
    assert error_beside(answer.text, "targetUrl")
    bad = {**INBOUND, "timeoutMs": "soon", "csrf_token": token}
    answer = await browser.post("/console/inbound/new", data=bad)
    assert answer.status_code == 400
    assert error_beside(answer.text, "timeoutMs")


async def test_inbound_live_transformation_test(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    data = {
        "side": "request",
        "requestTransformationMode": "JSONATA",
        "requestTransformScript": '{"patient": patientId}',
        "sample": '{"patientId": "123"}',
    }
    ok = await browser.post(
        "/console/inbound/test-transform", data=data, headers={"x-csrf-token": token}
    )
    assert ok.status_code == 200
    assert '"patient": "123"' in html.unescape(ok.text)
    data = {**data, "side": "response", "responseTransformationMode": "SIMPLE",
            "responseFieldMappings": '[{"sourceField": "a", "targetField": "b"}]',
            "sample": '{"a": 7}'}  # fmt: skip
    mapped = await browser.post(
        "/console/inbound/test-transform", data=data, headers={"x-csrf-token": token}
    )
    assert '"b": 7' in html.unescape(mapped.text)
    data["responseTransformationMode"] = "JSONATA"
    data["responseTransformScript"] = "{{{"
    broken = await browser.post(
        "/console/inbound/test-transform", data=data, headers={"x-csrf-token": token}
    )
    assert "transformation failed" in broken.text


async def test_inbound_csrf_and_tenant_isolation(world: World, browser: httpx.AsyncClient) -> None:
    body = {"name": "theirs", "type": "theirs", "targetUrl": "https://partner.example.com/x"}
    theirs = await api(world, "user_b", "POST", "/api/v1/inbound-integrations", body)
    body = {"name": "mine", "type": "mine", "targetUrl": "https://partner.example.com/y"}
    mine = await api(world, "user_a", "POST", "/api/v1/inbound-integrations", body)
    token = await console_login(browser, *USER_A)
    refused = await browser.post("/console/inbound/new", data={**INBOUND})
    assert refused.status_code == 403
    listing = (await browser.get("/console/inbound")).text
    assert "mine" in listing
    assert "theirs" not in listing
    assert (await browser.get(f"/console/inbound/{theirs['id']}")).status_code == 404
    assert (await browser.get(f"/console/inbound/{theirs['id']}/edit")).status_code == 404
    assert (await browser.get(f"/console/inbound/{mine['id']}")).status_code == 200
    for action in ("active", "delete", "restore"):
        answer = await browser.post(
            f"/console/inbound/{theirs['id']}/{action}",
            data={"active": "false", "version": "1", "csrf_token": token},
        )
        assert answer.status_code == 404
    still = await api(world, "user_b", "GET", f"/api/v1/inbound-integrations/{theirs['id']}")
    assert still["isActive"] is True


SOURCE = {
    "name": "partner-hooks",
    "stream": "partners",
    "eventTypeFrom": "BODY",
    "eventType": "type",
    "eventTypePrefix": "partner.",
    "verification.scheme": "HMAC_SHA256",
    "verification.header": "X-Signature",
    "verification.encoding": "HEX",
    "toleranceSeconds": "300",
    "maxBodyBytes": "10000",
    "isActive": "on",
}
SECRET_SHOWN = re.compile(r'<pre class="code" id="source-secret">([^<]+)</pre>')


def sign(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_webhook_source_secret_shown_once_rotation_and_receipts(
    world: World, browser: httpx.AsyncClient
) -> None:
    token = await console_login(browser, *USER_A)
    assert (await browser.get("/console/webhook-sources/new")).status_code == 200
    created = await browser.post(
        "/console/webhook-sources/new", data={**SOURCE, "csrf_token": token}
    )
    assert created.status_code == 200, created.text
    found = SECRET_SHOWN.search(created.text)
    assert found, "the generated secret is shown on creation"
    secret = html.unescape(found.group(1))
    source_id = re.search(r"/api/v1/webhooks/(whsrc_[0-9A-Za-z]+)", created.text).group(1)  # type: ignore[union-attr]
    assert "X-Signature" in html.unescape(created.text)  # the sender example
    body = b'{"type": "order.paid", "id": "m1"}'
    sent = await world.client.post(
        f"/api/v1/webhooks/{source_id}",
        content=body,
        headers={"x-signature": sign(secret, body), "content-type": "application/json"},
    )
    assert sent.status_code == 202, sent.text
    forged = await world.client.post(
        f"/api/v1/webhooks/{source_id}",
        content=body,
        headers={"x-signature": "00" * 32, "content-type": "application/json"},
    )
    assert forged.status_code == 401
    detail = await browser.get(f"/console/webhook-sources/{source_id}")
    assert detail.status_code == 200
    assert secret not in detail.text  # never again
    assert "partner.order.paid" in detail.text  # the receipt's event type
    assert detail.text.count("b-FAILED") + detail.text.count("b-SUCCESS") >= 2
    rotated = await browser.post(
        f"/console/webhook-sources/{source_id}/rotate",
        data={"overlapSeconds": "3600", "csrf_token": token},
    )
    assert rotated.status_code == 200
    new_secret = html.unescape(SECRET_SHOWN.search(rotated.text).group(1))  # type: ignore[union-attr]
    assert new_secret != secret
    for key, message_id in ((secret, "m2"), (new_secret, "m3")):  # both verify in the overlap
        payload = f'{{"type": "order.paid", "id": "{message_id}"}}'.encode()
        answer = await world.client.post(
            f"/api/v1/webhooks/{source_id}",
            content=payload,
            headers={"x-signature": sign(key, payload), "content-type": "application/json"},
        )
        assert answer.status_code == 202, answer.text
    edited = await browser.post(
        f"/console/webhook-sources/{source_id}/edit",
        data={**SOURCE, "name": "renamed-hooks", "toleranceSeconds": "60", "csrf_token": token},
    )
    assert edited.status_code == 303, edited.text
    page = (await browser.get(f"/console/webhook-sources/{source_id}")).text
    assert "renamed-hooks" in page
    assert "60 s" in page
    assert "renamed-hooks" in (await browser.get("/console/webhook-sources")).text
    deleted = await browser.post(
        f"/console/webhook-sources/{source_id}/delete", data={"csrf_token": token}
    )
    assert deleted.status_code == 303
    assert (await browser.get(f"/console/webhook-sources/{source_id}")).status_code == 404


async def test_webhook_source_problems_beside_the_fields(
    world: World, browser: httpx.AsyncClient
) -> None:
    token = await console_login(browser, *USER_A)
    missing = {**SOURCE, "verification.scheme": "", "csrf_token": token}
    answer = await browser.post("/console/webhook-sources/new", data=missing)
    assert answer.status_code == 400
    assert "verified" in error_beside(answer.text, "verification.scheme")
    wrong = {**SOURCE, "toleranceSeconds": "often", "csrf_token": token}
    answer = await browser.post("/console/webhook-sources/new", data=wrong)
    assert answer.status_code == 400
    assert error_beside(answer.text, "toleranceSeconds")
    bad_key = {
        **SOURCE,
        "verification.scheme": "STANDARD_WEBHOOKS",
        "verification.header": "",
        "verification.encoding": "",
        "verification.secret": "not-a-standard-secret",
        "csrf_token": token,
    }
    answer = await browser.post("/console/webhook-sources/new", data=bad_key)
    assert answer.status_code == 400
    shown = error_beside(answer.text, "verification.secret")
    assert shown
    assert "not-a-standard-secret" not in answer.text  # a secret is never echoed back


async def test_webhook_source_csrf_and_tenant_isolation(
    world: World, browser: httpx.AsyncClient
) -> None:
    body = {"name": "theirs", "eventType": "t", "verification": {"scheme": "STANDARD_WEBHOOKS"}}
    theirs = await api(world, "user_b", "POST", "/api/v1/webhook-sources", body)
    token = await console_login(browser, *USER_A)
    assert (await browser.post("/console/webhook-sources/new", data=SOURCE)).status_code == 403
    assert "theirs" not in (await browser.get("/console/webhook-sources")).text
    for path in ("", "/edit"):
        page = await browser.get(f"/console/webhook-sources/{theirs['id']}{path}")
        assert page.status_code == 404
    for action in ("rotate", "active", "delete", "edit"):
        answer = await browser.post(
            f"/console/webhook-sources/{theirs['id']}/{action}",
            data={**SOURCE, "active": "false", "csrf_token": token},
        )
        assert answer.status_code == 404, action
    still = await api(world, "user_b", "GET", f"/api/v1/webhook-sources/{theirs['id']}")
    assert still["isActive"] is True
    assert still["secrets"] == theirs["secrets"]


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def gw_world(db_url: str, tmp_path: Any, upstream: RecordingSink) -> AsyncIterator[World]:
    async with gateway_world(db_url, tmp_path, upstream) as found:
        yield found


@pytest.fixture
async def gw_browser(gw_world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gw_world.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


ROUTE = {
    "name": "Orders",
    "path": "/orders/{id}",
    "methods": "GET, POST",
    "status": "ACTIVE",
    "targetEndpoint": "/v2/orders/{id}",
    "timeoutSeconds": "5",
    "authentication": '{"type": "API_KEY"}',
    "caching": '{"enabled": true, "ttlSeconds": 30}',
    "rateLimiting": '{"perClient": {"maxRequests": 100, "windowSeconds": 60}}',
    "transformation": '{"request": {"headers": {"set": {"X-From": "gw"}}}}',
}


async def test_gateway_route_create_test_analytics_and_delete(
    gw_world: World, gw_browser: httpx.AsyncClient, upstream: RecordingSink
) -> None:
    token = await console_login(gw_browser, *USER_A)
    assert (await gw_browser.get("/console/gateway/new")).status_code == 200
    data = {**ROUTE, "targetUrl": upstream.url(), "csrf_token": token}
    created = await gw_browser.post("/console/gateway/new", data=data)
    assert created.status_code == 303, created.text
    route_id = created.headers["location"].split("/")[-1].split("?")[0]
    # The dry run shows what would go upstream; nothing is sent.
    dry = await gw_browser.post(
        "/console/gateway/test",
        data={"routeId": route_id, "method": "GET", "path": "/orders/42", "headers": "X-A: 1"},
        headers={"x-csrf-token": token},
    )
    assert dry.status_code == 200
    shown = html.unescape(dry.text)
    assert "/v2/orders/42" in shown
    assert '"sent": false' in shown
    assert upstream.requests == []
    # Traffic through the gateway shows in the route's analytics and health.
    upstream.on("/v2/orders/1", Behaviour(200, b"{}"))
    key = gw_world.headers["key_a"]
    for _ in range(3):
        answer = await gw_world.client.get("/gw/100/orders/1", headers=key)
        assert answer.status_code == 200, answer.text
    detail = await gw_browser.get(f"/console/gateway/routes/{route_id}")
    assert detail.status_code == 200
    assert '<strong id="kpi-requests">3</strong>' in detail.text
    assert "<svg" in detail.text
    assert upstream.url() in detail.text
    assert "Orders" in (await gw_browser.get("/console/gateway")).text
    analytics = await gw_browser.get("/console/gateway/analytics?hours=2")
    assert analytics.status_code == 200
    assert ">3</td>" in analytics.text
    health = await gw_browser.get("/console/gateway/health")
    assert health.status_code == 200
    assert "memory" in health.text
    # Edit: the form round-trips.
    edit = await gw_browser.get(f"/console/gateway/routes/{route_id}/edit")
    assert "/v2/orders/{id}" in html.unescape(edit.text)
    data = {**data, "name": "Orders v2", "status": "INACTIVE"}
    saved = await gw_browser.post(f"/console/gateway/routes/{route_id}/edit", data=data)
    assert saved.status_code == 303, saved.text
    assert "Orders v2" in (await gw_browser.get("/console/gateway?status=INACTIVE")).text
    gone = await gw_browser.post(
        f"/console/gateway/routes/{route_id}/delete", data={"csrf_token": token}
    )
    assert gone.status_code == 303
    assert (await gw_browser.get(f"/console/gateway/routes/{route_id}")).status_code == 404


async def test_gateway_problems_beside_the_fields_and_settings(
    gw_world: World, gw_browser: httpx.AsyncClient, upstream: RecordingSink
) -> None:
    token = await console_login(gw_browser, *USER_A)
    bad = {**ROUTE, "targetUrl": upstream.url(), "timeoutSeconds": "-1", "csrf_token": token}
    answer = await gw_browser.post("/console/gateway/new", data=bad)
    assert answer.status_code == 400
    assert error_beside(answer.text, "timeoutSeconds")
    bad = {**ROUTE, "targetUrl": upstream.url(), "caching": "{", "csrf_token": token}
    answer = await gw_browser.post("/console/gateway/new", data=bad)
    assert "not valid JSON" in error_beside(answer.text, "caching")
    bad = {**ROUTE, "targetUrl": upstream.url(), "authentication": '{"type": "OAUTH"}',
           "csrf_token": token}  # fmt: skip
    answer = await gw_browser.post("/console/gateway/new", data=bad)
    assert "type" in error_beside(answer.text, "authentication")
    settings = {
        "cors": '{"allowedOrigins": ["https://app.example.com"]}',
        "ipRules": '{"deny": ["198.51.100.0/24"]}',
        "requireHttps": "",
        "perClient": '{"maxRequests": 50, "windowSeconds": 60}',
        "csrf_token": token,
    }
    saved = await gw_browser.post("/console/gateway/settings", data=settings)
    assert saved.status_code == 303, saved.text
    page = html.unescape((await gw_browser.get("/console/gateway/settings")).text)
    assert "198.51.100.0/24" in page
    assert '"maxRequests": 50' in page
    wrong = await gw_browser.post(
        "/console/gateway/settings", data={**settings, "ipRules": '{"deny": ["not-an-ip"]}'}
    )
    assert wrong.status_code == 400
    assert error_beside(wrong.text, "ipRules")
    # The tenant-wide deny list now applies: our test client's address is refused.
    await gw_world.client.post(
        "/api/v1/integration/api-gateway/configure?orgId=100",
        json={"path": "/open", "targetUrl": upstream.url()},
        headers=gw_world.headers["user_a"],
    )
    assert (await gw_world.client.get("/gw/100/open")).status_code == 403


async def test_gateway_csrf_and_tenant_isolation(
    gw_world: World, gw_browser: httpx.AsyncClient, upstream: RecordingSink
) -> None:
    theirs = await api(
        gw_world, "user_b", "POST", "/api/v1/integration/api-gateway/configure",
        {"name": "theirs-route", "path": "/b", "targetUrl": upstream.url()},
    )  # fmt: skip
    token = await console_login(gw_browser, *USER_A)
    data = {**ROUTE, "targetUrl": upstream.url()}
    assert (await gw_browser.post("/console/gateway/new", data=data)).status_code == 403
    assert "theirs-route" not in (await gw_browser.get("/console/gateway")).text
    rid = theirs["routeId"]
    for path in ("", "/edit"):
        assert (await gw_browser.get(f"/console/gateway/routes/{rid}{path}")).status_code == 404
    for action in ("edit", "delete"):
        answer = await gw_browser.post(
            f"/console/gateway/routes/{rid}/{action}", data={**data, "csrf_token": token}
        )
        assert answer.status_code == 404, action
    dry = await gw_browser.post(
        "/console/gateway/test",
        data={"routeId": rid, "method": "GET", "path": "/b"},
        headers={"x-csrf-token": token},
    )
    assert "not matched" in dry.text or '"matched": false' in html.unescape(dry.text)
    listing = await api(gw_world, "user_b", "GET", "/api/v1/integration/api-gateway/routes")
    assert [r["name"] for r in listing["routes"]] == ["theirs-route"]


SCHEMES = (
    {"scheme": "STANDARD_WEBHOOKS"},
    {"scheme": "HMAC_SHA256", "header": "X-Shop-Hmac", "encoding": "BASE64", "prefix": "sha256="},
    {"scheme": "HMAC_SHA256", "header": "X-Signature"},
    {"scheme": "GITHUB"},
    {"scheme": "STRIPE"},
    {"scheme": "BASIC", "username": "partner"},
    {"scheme": "API_KEY", "header": "X-Partner-Key"},
)


@pytest.mark.parametrize("verification", SCHEMES, ids=lambda v: "-".join(v.values()))
async def test_the_sender_example_is_accepted(
    world: World, services: Services, upstream: RecordingSink, verification: dict[str, str]
) -> None:
    """The copyable example, run in bash with the real secret, signs a webhook that the
    receiver accepts (its request is captured by a sink, then replayed to the receiver)."""
    import asyncio
    import shutil

    from junctionbox.console.pages.webhook_sources import sender_example

    if not (shutil.which("openssl") and shutil.which("curl")):
        pytest.skip("needs openssl and curl")
    body = {"name": "s", "eventType": "t", "verification": verification}
    created = await api(world, "user_a", "POST", "/api/v1/webhook-sources", body)
    view = await services.webhook_sources.get(await _tenant(services, world), created["id"])
    script = sender_example(upstream.url("/hook"), view).split("\n", 1)[1]
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script,
        env={"SECRET": created["secret"], "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    (sent,) = upstream.requests_to("/hook")
    skip = {"host", "content-length", "user-agent", "accept"}
    headers = {k: v for k, v in sent.headers if k.lower() not in skip}
    answer = await world.client.post(
        f"/api/v1/webhooks/{created['id']}", content=sent.body, headers=headers
    )
    assert answer.status_code == 202, answer.text


async def test_gateway_jwt_secret_is_masked_and_kept_on_edit(
    gw_world: World, gw_browser: httpx.AsyncClient, upstream: RecordingSink
) -> None:
    import jwt

    secret = "a-jwt-secret-of-32-characters-ok"
    token = await console_login(gw_browser, *USER_A)
    data = {
        "name": "Secure",
        "path": "/secure",
        "methods": "GET",
        "status": "ACTIVE",
        "targetUrl": upstream.url(),
        "authentication": f'{{"type": "JWT", "jwt": {{"secret": "{secret}"}}}}',
        "csrf_token": token,
    }
    created = await gw_browser.post("/console/gateway/new", data=data)
    assert created.status_code == 303, created.text
    route_id = created.headers["location"].split("/")[-1].split("?")[0]
    edit = await gw_browser.get(f"/console/gateway/routes/{route_id}/edit")
    assert secret not in edit.text
    assert secret not in (await gw_browser.get(f"/console/gateway/routes/{route_id}")).text
    values = _form_values(edit.text)
    assert "********" in values["authentication"]
    saved = await gw_browser.post(
        f"/console/gateway/routes/{route_id}/edit",
        data={**values, "name": "Secure v2", "csrf_token": token},
    )
    assert saved.status_code == 303, saved.text
    claims = {"sub": "c1", "exp": int(time.time()) + 300}
    bearer = {"authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}
    assert (await gw_world.client.get("/gw/100/secure", headers=bearer)).status_code == 200
    assert (await gw_world.client.get("/gw/100/secure")).status_code == 401


async def test_admin_acts_for_the_organization_chosen_in_the_switcher(
    world: World, browser: httpx.AsyncClient
) -> None:
    from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD

    body = {"name": "b-inbound", "type": "b-in", "targetUrl": "https://partner.example.com/b"}
    await api(world, "user_b", "POST", "/api/v1/inbound-integrations", body)
    source = {"name": "b-source", "eventType": "t", "verification": {"scheme": "GITHUB"}}
    await api(world, "user_b", "POST", "/api/v1/webhook-sources", source)
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert "b-inbound" not in (await browser.get("/console/inbound")).text  # org 100 first
    switched = await browser.post(
        "/console/switch-org",
        data={"orgId": "200", "next": "/console/inbound", "csrf_token": token},
    )
    assert switched.status_code == 303
    assert "b-inbound" in (await browser.get("/console/inbound")).text
    assert "b-source" in (await browser.get("/console/webhook-sources")).text
