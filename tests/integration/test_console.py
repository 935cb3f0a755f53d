"""The console over plain HTTP (no browser): sessions, CSRF, roles, tenant isolation and the
pages' forms, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.integration.console_helpers import console_login, csrf_of
from tests.integration.dlq_helpers import (
    add_log,
    dead_letter,
    delivery_job,
    entry,
    make_integration,
)
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, World

from junctionbox.api.app import create_app
from junctionbox.console.nav import NAV
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.templates import CATALOGUE
from junctionbox.services.container import Services

USER_A = ("user-a@example.com", "password-123")


@pytest.fixture
async def browser(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """A second client with its own cookie jar, like a browser."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def integration_in(world: World, who: str, name: str) -> str:
    body = {"name": name, "eventType": "order.*", "targetUrl": "https://partner.example.com/h"}
    response = await world.client.post(
        "/api/v1/outbound-integrations", json=body, headers=world.headers[who]
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_pages_need_a_session(world: World, browser: httpx.AsyncClient) -> None:
    response = await browser.get("/console/integrations")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/integrations"
    hx = await browser.get("/console/dlq", headers={"hx-request": "true"})
    assert hx.headers["hx-redirect"].startswith("/console/login")


async def test_login_sets_a_safe_cookie_and_refuses_bad_passwords(
    world: World, browser: httpx.AsyncClient
) -> None:
    page = await browser.get("/console/login")
    token = csrf_of(page.text)
    bad = await browser.post(
        "/console/login",
        data={"email": ADMIN_EMAIL, "password": "wrong-password", "csrf_token": token},
    )
    assert bad.status_code == 401
    assert "invalid email or password" in bad.text
    good = await browser.post(
        "/console/login",
        data={
            "email": ADMIN_EMAIL,
            "password": ADMIN_PASSWORD,
            "csrf_token": token,
            "next": "https://evil.example.com/",
        },
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/console/dashboard"  # no open redirect
    cookie = next(h for h in good.headers.get_list("set-cookie") if h.startswith("jb_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/console" in cookie


async def test_csrf_is_required_on_every_form(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    missing = await browser.post("/console/lookups", data={"type": "t", "key": "k", "value": "v"})
    assert missing.status_code == 403
    forged = await browser.post(
        "/console/lookups", data={"type": "t", "key": "k", "value": "v", "csrf_token": "x.y"}
    )
    assert forged.status_code == 403
    # A token of another session (the USER's) does not verify in this one.
    other = httpx.AsyncClient(transport=browser._transport, base_url="http://testserver")
    async with other:
        foreign = await console_login(other, *USER_A)
    stolen = await browser.post(
        "/console/lookups", data={"type": "t", "key": "k", "value": "v", "csrf_token": foreign}
    )
    assert stolen.status_code == 403
    ok = await browser.post(
        "/console/lookups", data={"type": "t", "key": "k", "value": "v", "csrf_token": token}
    )
    assert ok.status_code == 303
    # htmx sends the token as a header.
    header = await browser.post(
        "/console/lookups",
        data={"type": "t", "key": "k2", "value": "v"},
        headers={"x-csrf-token": token},
    )
    assert header.status_code == 303


async def test_user_sees_no_admin_page_and_is_refused(
    world: World, browser: httpx.AsyncClient
) -> None:
    await console_login(browser, *USER_A)
    dashboard = await browser.get("/console/dashboard")
    for item in NAV:
        assert (f'href="/console{item.path}"' in dashboard.text) is not item.admin
    for path in (
        "/console/admin/users",
        "/console/admin/orgs",
        "/console/admin/api-keys",
        "/console/admin/audit",
    ):
        response = await browser.get(path)
        assert response.status_code == 403, path
    token = csrf_of(dashboard.text)
    created = await browser.post(
        "/console/admin/users",
        data={
            "email": "x@example.com",
            "password": "password-1",
            "role": "ADMIN",
            "csrf_token": token,
        },
    )
    assert created.status_code == 403
    switched = await browser.post("/console/switch-org", data={"orgId": "200", "csrf_token": token})
    assert switched.status_code == 403


async def test_user_cannot_reach_another_tenants_data(
    world: World, browser: httpx.AsyncClient
) -> None:
    theirs = await integration_in(world, "user_b", "b-only")
    mine = await integration_in(world, "user_a", "a-only")
    token = await console_login(browser, *USER_A)
    listing = await browser.get("/console/integrations")
    assert "a-only" in listing.text
    assert "b-only" not in listing.text
    assert (await browser.get(f"/console/integrations/{theirs}")).status_code == 404
    assert (await browser.get(f"/console/integrations/{mine}")).status_code == 200
    # orgId in the URL does not let a USER act for another organization.
    assert "b-only" not in (await browser.get("/console/integrations?orgId=200")).text
    refused = await browser.post(
        f"/console/integrations/{theirs}/active", data={"active": "false", "csrf_token": token}
    )
    assert refused.status_code == 404


async def test_admin_switches_organization(world: World, browser: httpx.AsyncClient) -> None:
    await integration_in(world, "user_b", "b-only")
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert "b-only" not in (await browser.get("/console/integrations")).text  # org 100 first
    switched = await browser.post(
        "/console/switch-org",
        data={"orgId": "200", "next": "/console/integrations", "csrf_token": token},
    )
    assert switched.status_code == 303
    assert "b-only" in (await browser.get("/console/integrations")).text


async def test_logout_ends_the_session(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    saved = browser.cookies.get("jb_session")
    response = await browser.post("/console/logout", data={"csrf_token": token})
    assert response.status_code == 303
    browser.cookies.set("jb_session", saved or "", path="/console")
    assert (await browser.get("/console/dashboard")).status_code == 303  # token revoked


async def test_password_change_and_disable_end_sessions(
    world: World, browser: httpx.AsyncClient, services: Services
) -> None:
    await console_login(browser, *USER_A)
    page = await services.users.list(PageRequest(1, 10), search="user-a")
    user = page.items[0]
    admin = await services.auth.authenticate_token(
        world.headers["admin"]["authorization"].split()[1]
    )
    await services.users.update(admin, user.id, {"password": "another-password-1"})
    assert (await browser.get("/console/dashboard")).status_code == 303
    await console_login(browser, "user-a@example.com", "another-password-1")
    await services.users.update(admin, user.id, {"is_active": False})
    assert (await browser.get("/console/dashboard")).status_code == 303


async def test_every_page_renders_for_an_admin(world: World, browser: httpx.AsyncClient) -> None:
    await integration_in(world, "user_a", "shown")
    await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    for item in NAV:
        response = await browser.get(f"/console{item.path}")
        assert response.status_code == 200, (item.path, response.text[:500])
        assert "<h1>" in response.text


async def test_integration_form_validates_beside_the_fields(
    world: World, browser: httpx.AsyncClient
) -> None:
    token = await console_login(browser, *USER_A)
    bad = await browser.post(
        "/console/integrations/new",
        data={
            "name": "",
            "eventType": "order.created",
            "targetUrl": "not a url",
            "fieldMappings": "[not json",
            "csrf_token": token,
        },
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    fixed = await browser.post(
        "/console/integrations/new",
        data={
            "name": "",
            "eventType": "order.created",
            "targetUrl": "not a url",
            "csrf_token": token,
        },
    )
    assert fixed.status_code == 400
    assert fixed.text.count('class="field-error"') >= 2  # name and targetUrl
    created = await browser.post(
        "/console/integrations/new",
        data={
            "name": "orders",
            "eventType": "order.created",
            "httpMethod": "POST",
            "targetUrl": "https://partner.example.com/hook",
            "isActive": "on",
            "transformationMode": "JSONATA",
            "transformScript": '{"ref": id}',
            "retryPolicy.maxRetries": "2",
            "csrf_token": token,
        },
    )
    assert created.status_code == 200, created.text
    assert "whsec_" in created.text


async def test_transformation_editor_live_test(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    form = {
        "name": "draft",
        "eventType": "order.created",
        "targetUrl": "https://partner.example.com/hook",
        "transformationMode": "JSONATA",
        "transformScript": '{"ref": id, "who": name}',
        "sample": '{"id": 7, "name": "ada"}',
    }
    ok = await browser.post(
        "/console/integrations/test-draft",
        data=form,
        headers={"hx-request": "true", "x-csrf-token": token},
    )
    assert ok.status_code == 200
    assert "&#34;ref&#34;:7" in ok.text.replace(" ", "") or '"ref":7' in ok.text.replace(" ", "")
    broken = await browser.post(
        "/console/integrations/test-draft",
        data={**form, "transformScript": '{"ref": id'},
        headers={"hx-request": "true", "x-csrf-token": token},
    )
    assert broken.status_code == 200
    assert 'id="test-error"' in broken.text
    bad_sample = await browser.post(
        "/console/integrations/test-draft",
        data={**form, "sample": "{nope"},
        headers={"hx-request": "true", "x-csrf-token": token},
    )
    assert "not valid JSON" in bad_sample.text


async def test_versions_restore_and_toggle(world: World, browser: httpx.AsyncClient) -> None:
    integration_id = await integration_in(world, "user_a", "versioned")
    token = await console_login(browser, *USER_A)
    edit = await browser.get(f"/console/integrations/{integration_id}/edit")
    assert 'value="versioned"' in edit.text
    saved = await browser.post(
        f"/console/integrations/{integration_id}/edit",
        data={
            "name": "renamed",
            "eventType": "order.*",
            "targetUrl": "https://partner.example.com/h",
            "csrf_token": token,
        },
    )
    assert saved.status_code == 303
    off = await browser.post(
        f"/console/integrations/{integration_id}/active",
        data={"active": "false", "csrf_token": token},
    )
    assert off.status_code == 303
    restored = await browser.post(
        f"/console/integrations/{integration_id}/restore",
        data={"version": "1", "csrf_token": token},
    )
    assert restored.status_code == 303
    detail = await browser.get(f"/console/integrations/{integration_id}")
    assert "<h1>versioned" in detail.text  # the name of version 1 is back
    assert "RESTORED:1" in detail.text
    assert "INACTIVE" in detail.text  # restoring does not switch deliveries back on


async def test_lookups_crud_import_export(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    for key in ("a", "b"):
        response = await browser.post(
            "/console/lookups",
            data={"type": "country", "key": key, "value": key.upper(), "csrf_token": token},
        )
        assert response.status_code == 303
    duplicate = await browser.post(
        "/console/lookups", data={"type": "country", "key": "a", "value": "x", "csrf_token": token}
    )
    assert duplicate.status_code == 409
    exported = await browser.get("/console/lookups/export?format=csv&type=country")
    assert exported.status_code == 200
    assert "a,A" in exported.text
    imported = await browser.post(
        "/console/lookups/import",
        data={"type": "country", "mode": "replace", "csrf_token": token},
        files={"file": ("c.csv", b"key,value\nc,C\n", "text/csv")},
    )
    assert imported.status_code == 303
    listing = await browser.get("/console/lookups?type=country")
    assert ">c</code>" in listing.text
    assert ">a</code>" not in listing.text
    xlsx = await browser.get("/console/lookups/export?format=xlsx")
    assert xlsx.content[:2] == b"PK"


async def test_api_key_is_shown_once(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    created = await browser.post(
        "/console/admin/api-keys",
        data={"orgId": "100", "name": "console-made", "csrf_token": token},
    )
    assert created.status_code == 201
    key = created.text.split('<pre id="new-key">')[1].split("</pre>")[0]
    assert key.startswith("jbk_")
    listing = await browser.get("/console/admin/api-keys")
    assert key not in listing.text
    me = await world.client.get("/api/v1/auth/me", headers={"x-api-key": key})
    assert me.status_code == 200


async def test_event_type_registration(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    bad = await browser.post(
        "/console/event-types",
        data={"name": "order.created", "schema": "{oops", "csrf_token": token},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    good = await browser.post(
        "/console/event-types",
        data={"name": "order.created", "schema": '{"type": "object"}', "csrf_token": token},
    )
    assert good.status_code == 303
    page = await browser.get(good.headers["location"])
    assert "v1" in page.text


async def test_dlq_bulk_retry_and_delete_within_the_tenant(
    world: World, browser: httpx.AsyncClient, services: Services
) -> None:
    mine = await make_integration(services, 100, "mine")
    theirs = await make_integration(services, 200, "theirs")
    a1 = await dead_letter(services, delivery_job(100, mine, "e1"))
    a2 = await dead_letter(services, delivery_job(100, mine, "e2"))
    b1 = await dead_letter(services, delivery_job(200, theirs, "e3"))
    token = await console_login(browser, *USER_A)
    listing = await browser.get("/console/dlq")
    assert a1.id in listing.text
    assert b1.id not in listing.text
    assert (await browser.get(f"/console/dlq/{b1.id}")).status_code == 404
    assert (await browser.get(f"/console/dlq/{a1.id}")).status_code == 200
    bulk = await browser.post(
        "/console/dlq/bulk",
        data={"action": "retry", "ids": [a1.id, b1.id], "csrf_token": token},
    )
    assert bulk.status_code == 303
    flash = (await browser.get(bulk.headers["location"])).text
    assert "retry: 1 of 2 done" in flash
    assert (await entry(services, a1.id)).status == "RETRYING"  # type: ignore[union-attr]
    assert (await entry(services, b1.id)).status == "PENDING_RETRY"  # type: ignore[union-attr]
    deleted = await browser.post(
        "/console/dlq/bulk", data={"action": "delete", "ids": [a2.id], "csrf_token": token}
    )
    assert deleted.status_code == 303
    assert await entry(services, a2.id) is None
    refused = await browser.post(f"/console/dlq/{b1.id}/delete", data={"csrf_token": token})
    assert refused.status_code == 404
    assert await entry(services, b1.id) is not None


async def test_logs_list_detail_export_and_dashboard(
    world: World, browser: httpx.AsyncClient, services: Services
) -> None:
    integration_id = await make_integration(services, 100, "logged")
    job = delivery_job(100, integration_id, "e1")
    now = datetime.now(UTC)
    ok = await add_log(
        services,
        job,
        status="SUCCESS",
        created_at=now,
        response_status=200,
        response_time_ms=12,
        target_url="https://example.com/logged",
        steps=[{"step": "request", "status": "OK", "detail": {"curl": "curl -X POST x"}}],
    )
    await add_log(services, job, status="FAILED", created_at=now, response_time_ms=40)
    other = await add_log(
        services,
        delivery_job(200, await make_integration(services, 200), "e9"),
        status="SUCCESS",
        created_at=now,
    )
    await console_login(browser, *USER_A)
    listing = await browser.get("/console/logs?status=SUCCESS")
    assert ok in listing.text
    assert other not in listing.text
    assert "FAILED</span>" not in listing.text
    detail = await browser.get(f"/console/logs/{ok}")
    assert "curl -X POST x" in detail.text
    assert (await browser.get(f"/console/logs/{other}")).status_code == 404
    assert (await browser.get("/console/logs?from=yesterday")).status_code == 400
    export = await browser.get("/console/logs/export?format=csv")
    assert export.status_code == 200
    assert ok in export.text
    assert other not in export.text
    # The dashboard's figures come from rollups: see tests/integration/test_console_ops.py.
    dashboard = await browser.get("/console/dashboard")
    assert "<svg" in dashboard.text
    partial = await browser.get("/console/dashboard", headers={"hx-request": "true"})
    assert "<html" not in partial.text  # the 30-second refresh swaps the body only
    assert partial.headers["x-frame-options"] == "DENY"


async def test_scheduling_problems_show_beside_their_field(
    world: World, browser: httpx.AsyncClient
) -> None:
    token = await console_login(browser, *USER_A)
    response = await browser.post(
        "/console/integrations/new",
        data={
            "name": "later",
            "eventType": "order.created",
            "targetUrl": "https://partner.example.com/hook",
            "schedulingMode": "DELAYED",
            "csrf_token": token,
        },
    )
    assert response.status_code == 400
    assert "is required for DELAYED" in response.text
    created = await browser.post(
        "/console/integrations/new",
        data={
            "name": "later",
            "eventType": "order.created",
            "targetUrl": "https://partner.example.com/hook",
            "schedulingMode": "DELAYED",
            "schedulingConfig": '{"delayMs": 60000}',
            "csrf_token": token,
        },
    )
    assert created.status_code == 200, created.text


async def test_events_page_and_replay_dry_run(world: World, browser: httpx.AsyncClient) -> None:
    for n, who in ((1, "key_a"), (2, "key_a"), (3, "key_b")):
        response = await world.client.post(
            "/api/v1/integration/events/publish",
            json={"type": "order.created", "id": f"ev-{n}", "source": "shop", "data": {"n": n}},
            headers=world.headers[who],
        )
        assert response.status_code == 201, response.text
    await integration_in(world, "user_a", "replayed")
    token = await console_login(browser, *USER_A)
    page = await browser.get("/console/events?type=order.*")
    assert "ev-1" in page.text
    assert "ev-2" in page.text
    assert "ev-3" not in page.text  # the other tenant's event
    assert "ev-1" not in (await browser.get("/console/events?type=invoice.*")).text
    no_range = await browser.post(
        "/console/events/replay", data={"stream": "default", "csrf_token": token}
    )
    assert no_range.status_code == 400
    assert "time range" in no_range.text
    dry = await browser.post(
        "/console/events/replay",
        data={
            "stream": "default",
            "types": "order.*",
            "dryRun": "on",
            "from": "2000-01-01T00:00",
            "csrf_token": token,
        },
    )
    assert dry.status_code == 303
    shown = await browser.get(dry.headers["location"])
    assert "Dry run: 2 events, 2 deliveries would be made." in shown.text


async def test_template_prefill_and_key_rotation(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    blank = await browser.get("/console/integrations/new")
    assert 'name="template"' in blank.text
    assert (await browser.get("/console/integrations/new?template=nope")).status_code == 404
    template = next(iter(CATALOGUE.values()))
    filled = await browser.get(f"/console/integrations/new?template={template.id}")
    assert f'value="{template.body["eventType"]}"' in filled.text
    integration_id = await integration_in(world, "user_a", "signed")
    before = await world.client.get(
        f"/api/v1/outbound-integrations/{integration_id}/secret", headers=world.headers["user_a"]
    )
    rotated = await browser.post(
        f"/console/integrations/{integration_id}/rotate-secret", data={"csrf_token": token}
    )
    assert rotated.status_code == 303
    after = await world.client.get(
        f"/api/v1/outbound-integrations/{integration_id}/secret", headers=world.headers["user_a"]
    )
    assert after.json()["signingSecret"] != before.json()["signingSecret"]


async def test_sql_source_test_then_create(
    world: World, browser: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "product.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE notification_queue (id INTEGER PRIMARY KEY, event_type TEXT, "
            "payload TEXT, entity_rid TEXT, created_at TEXT)"
        )
        conn.execute(
            "INSERT INTO notification_queue VALUES "
            "(1, 'patient.admitted', '{\"id\": 1}', '100', '2026-01-01 00:00:00')"
        )
    token = await console_login(browser, *USER_A)
    form = {
        "name": "product-db",
        "connectionString": f"sqlite:///{path}",
        "config": "{}",
        "csrf_token": token,
    }
    bad = await browser.post("/console/sources", data={**form, "config": "{nope"})
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    tested = await browser.post("/console/sources", data={**form, "action": "test"})
    assert tested.status_code == 200, tested.text
    assert 'id="source-preview"' in tested.text
    assert "patient.admitted" in tested.text
    created = await browser.post(
        "/console/sources", data={**form, "action": "create", "isActive": "on"}
    )
    assert created.status_code == 303, created.text
    listing = await browser.get("/console/sources")
    assert "product-db" in listing.text
    source_id = listing.text.split('action="/console/sources/')[1].split('"')[0]
    polled = await browser.post(
        f"/console/sources/{source_id}", data={"action": "poll", "csrf_token": token}
    )
    assert polled.status_code == 303
    assert "1 events published" in (await browser.get(polled.headers["location"])).text
    configured = await browser.post(
        f"/console/sources/{source_id}",
        data={"action": "configure", "config": '{"batchSize": 7}', "csrf_token": token},
    )
    assert configured.status_code == 303
    assert '"batchSize": 7' in html.unescape((await browser.get("/console/sources")).text)
    bad = await browser.post(
        f"/console/sources/{source_id}",
        data={"action": "configure", "config": '{"batchSize": -1}', "csrf_token": token},
    )
    assert bad.status_code == 400
    again = await browser.post(
        f"/console/sources/{source_id}", data={"action": "from-beginning", "csrf_token": token}
    )
    assert again.status_code == 303


async def test_admin_edits_an_organization(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    bad = await browser.post(
        "/console/admin/orgs/100",
        data={"name": "Org A", "timezone": "Mars/Olympus", "csrf_token": token},
    )
    assert bad.status_code == 400
    saved = await browser.post(
        "/console/admin/orgs/101",
        data={"name": "Ward 1", "timezone": "Europe/London", "unit": "true", "csrf_token": token},
    )
    assert saved.status_code == 303
    tenant = await world.client.get("/api/v1/tenant?orgId=101", headers=world.headers["admin"])
    assert tenant.json()["name"] == "Ward 1"


async def test_cancel_pending_is_tenant_scoped(world: World, browser: httpx.AsyncClient) -> None:
    theirs = await integration_in(world, "user_b", "theirs")
    mine = await integration_in(world, "user_a", "mine")
    token = await console_login(browser, *USER_A)
    refused = await browser.post(
        "/console/scheduled/cancel-pending", data={"integrationId": theirs, "csrf_token": token}
    )
    assert refused.status_code == 404
    done = await browser.post(
        "/console/scheduled/cancel-pending", data={"integrationId": mine, "csrf_token": token}
    )
    assert done.status_code == 303
    assert "Cancelled 0 pending deliveries." in (await browser.get(done.headers["location"])).text


async def test_event_type_page_lists_its_fields(world: World, browser: httpx.AsyncClient) -> None:
    token = await console_login(browser, *USER_A)
    schema = '{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}'
    await browser.post(
        "/console/event-types",
        data={"name": "patient.admitted", "schema": schema, "csrf_token": token},
    )
    page = await browser.get("/console/event-types/patient.admitted")
    assert "<code>id</code>" in page.text


async def test_admin_changes_role_and_deletes_a_user(
    world: World, browser: httpx.AsyncClient, services: Services
) -> None:
    user = (await services.users.list(PageRequest(1, 10), search="user-a")).items[0]
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    moved = await browser.post(
        f"/console/admin/users/{user.id}",
        data={"action": "role", "role": "USER", "orgId": "200", "csrf_token": token},
    )
    assert moved.status_code == 303
    assert (await services.users.get(user.id)).org_id == 200
    bad = await browser.post(
        f"/console/admin/users/{user.id}",
        data={"action": "role", "role": "USER", "orgId": "", "csrf_token": token},
    )
    assert bad.status_code == 400
    deleted = await browser.post(
        f"/console/admin/users/{user.id}", data={"action": "delete", "csrf_token": token}
    )
    assert deleted.status_code == 303
    assert (await services.users.list(PageRequest(1, 10), search="user-a")).total == 0


async def test_unknown_pages_and_errors_are_console_pages(
    world: World, browser: httpx.AsyncClient
) -> None:
    await console_login(browser, *USER_A)
    missing = await browser.get("/console/nope/deeper")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "there is no console page" in missing.text
    assert 'href="/console/dashboard"' in missing.text  # the navigation is there
    refused = await browser.get("/console/admin/audit")
    assert refused.status_code == 403
    assert 'href="/console/integrations"' in refused.text
    static = await browser.get("/console/static/htmx.min.js")
    assert static.status_code == 200
    assert "htmx" in static.text[:2000]
