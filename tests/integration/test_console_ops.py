"""The console's scheduled jobs, alerts and dashboard pages over plain HTTP, on SQLite and
PostgreSQL: rendering, forms and their validation beside the fields, CSRF refusals, tenant
isolation (another organization's ids answer 404), and dashboard figures equal to the
dashboard and analytics API's for the same data."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from tests.integration.console_helpers import console_login
from tests.integration.dlq_helpers import add_log, delivery_job, make_integration
from tests.integration.scheduled_job_helpers import run_queued, sink_world
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, World

from junctionbox.api.app import create_app
from junctionbox.console.viewmodel import chart_start
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.paging import PageRequest
from junctionbox.domain.rollups import AttemptFacts, aggregate
from junctionbox.services.container import Services
from junctionbox.store.queries.alerts import raise_alert
from junctionbox.store.queries.rollups import add_rollups
from junctionbox.store.tables import alert_channels, alert_rules
from junctionbox.testing import Behaviour, RecordingSink

USER_A = ("user-a@example.com", "password-123")
RECORDS = [{"id": i, "amount": i * 10} for i in range(1, 13)]


@pytest.fixture
async def setup(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[World, RecordingSink]]:
    async with sink_world(db_url, tmp_path) as found:
        yield found


@pytest.fixture
async def browser(setup: tuple[World, RecordingSink]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(setup[0].services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def job_form(sink: RecordingSink, token: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "name": "nightly export",
        "schedule.type": "CRON",
        "schedule.expression": "0 2 * * *",
        "schedule.timezone": "Europe/London",
        "schedule.catchUp": "ONCE",
        "dataSource.type": "API",
        "dataSource.url": sink.url("/source"),
        "dataSource.method": "GET",
        "transformation.mode": "JSONATA",
        "transformation.script": "{ 'total': $sum(data.amount), 'count': $count(data), 'job': metadata.jobName }",
        "targetUrl": sink.url("/in"),
        "httpMethod": "POST",
        "outgoingAuthType": "NONE",
        "isActive": "on",
        **fields,
    }


def job_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    found = re.search(r"/console/jobs/(sjb_[^?/]+)", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def beside(page: str, field: str) -> str:
    """The error message shown right after the field ``field``."""
    found = re.search(
        rf'name="{re.escape(field)}"[^>]*>(?:[^<]*</textarea>|[^<]*</select>)?'
        r'<span class="field-error" role="alert">([^<]+)</span>',
        page,
    )
    assert found, f"no error beside {field}"
    return html.unescape(found.group(1))


async def test_scheduled_job_journey(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    world, sink = setup
    sink.on("/source", Behaviour(body=orjson.dumps(RECORDS)))
    token = await console_login(browser, *USER_A)
    assert (await browser.get("/console/jobs")).status_code == 200
    assert (await browser.get("/console/jobs/new")).status_code == 200
    # The data source test shows at most 10 records, or the error.
    tested = await browser.post(
        "/console/jobs/test-source", data=job_form(sink, token), headers={"hx-request": "true"}
    )
    assert "12 records fetched" in tested.text
    assert '"id": 10' in html.unescape(tested.text)
    assert '"id": 11' not in html.unescape(tested.text)
    refused = await browser.post(
        "/console/jobs/test-source",
        data=job_form(sink, token, **{"dataSource.url": "http://169.254.169.254/x"}),
        headers={"hx-request": "true"},
    )
    assert 'id="source-error"' in refused.text
    assert sink.requests_to("/in") == []  # testing delivers nothing
    job_id = job_id_of(await browser.post("/console/jobs/new", data=job_form(sink, token)))
    listing = await browser.get("/console/jobs")
    assert "nightly export" in listing.text
    assert "0 2 * * *" in listing.text
    assert "Europe/London" in listing.text
    executed = await browser.post(f"/console/jobs/{job_id}/execute", data={"csrf_token": token})
    assert executed.status_code == 303
    run_url = executed.headers["location"].split("?")[0]
    assert await run_queued(world.services) == 1
    delivered = sink.requests_to("/in")
    assert orjson.loads(delivered[0].body) == {"total": 780, "count": 12, "job": "nightly export"}
    run = await browser.get(run_url)
    assert run.status_code == 200
    for stage in ("DATA_FETCH", "TRANSFORMATION", "DELIVERY"):
        assert stage in run.text
    assert "SUCCESS" in run.text
    assert 'id="curl"' in run.text
    assert "curl" in run.text
    assert '"total": 780' in html.unescape(run.text)
    detail = await browser.get(f"/console/jobs/{job_id}")
    assert run_url.rsplit("/", 1)[1] in detail.text
    # A failing delivery names its stage.
    sink.on("/in", Behaviour(status=500))
    await browser.post(f"/console/jobs/{job_id}/execute", data={"csrf_token": token})
    await run_queued(world.services)
    tenant = await tenant_of(world, "user_a")
    failed_runs = await world.services.scheduled_jobs.runs(
        tenant, job_id, "FAILED", PageRequest(1, 10)
    )
    failed = failed_runs.items[0]
    page = await browser.get(f"/console/jobs/{job_id}/runs/{failed.id}")
    assert re.search(r'id="run-error">Failed at <strong>DELIVERY</strong>', page.text)
    # Pause, resume, delete (with confirmation).
    paused = await browser.post(
        f"/console/jobs/{job_id}/active", data={"csrf_token": token, "active": "false"}
    )
    assert paused.status_code == 303
    assert "PAUSED" in (await browser.get(f"/console/jobs/{job_id}")).text
    await browser.post(
        f"/console/jobs/{job_id}/active", data={"csrf_token": token, "active": "true"}
    )
    assert (await world.services.scheduled_jobs.get(tenant, job_id)).record.is_active
    unconfirmed = await browser.post(f"/console/jobs/{job_id}/delete", data={"csrf_token": token})
    assert unconfirmed.status_code == 400
    deleted = await browser.post(
        f"/console/jobs/{job_id}/delete", data={"csrf_token": token, "confirm": "yes"}
    )
    assert deleted.status_code == 303
    assert (await browser.get(f"/console/jobs/{job_id}")).status_code == 404


async def tenant_of(world: World, who: str, org_id: int | None = None) -> TenantContext:
    """The tenant a credential of the world acts for, as the console resolves it."""
    token = world.headers[who]["authorization"].split()[1]
    principal = await world.services.auth.authenticate_token(token)
    return await world.services.tenancy.resolve(principal, org_id)


async def test_job_form_shows_problems_beside_the_fields(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    _, sink = setup
    token = await console_login(browser, *USER_A)
    bad = job_form(
        sink,
        token,
        **{
            "schedule.expression": "every day",
            "schedule.timezone": "Mars/Olympus",
            "dataSource.headers": "{not json",
        },
    )
    response = await browser.post("/console/jobs/new", data=bad)
    assert response.status_code == 400
    assert beside(response.text, "dataSource.headers").startswith("not valid JSON")
    bad["dataSource.headers"] = ""
    response = await browser.post("/console/jobs/new", data=bad)
    assert response.status_code == 400
    assert "cron" in beside(response.text, "schedule.expression")
    assert "time zone" in beside(response.text, "schedule.timezone")
    assert 'value="every day"' in response.text  # what was typed is kept
    # A SQL data source needs the ADMIN role.
    sql = job_form(sink, token, **{"dataSource.type": "SQL", "dataSource.query": "SELECT 1"})
    refused = await browser.post("/console/jobs/new", data=sql)
    assert refused.status_code == 403


async def test_sql_job_connection_string_is_masked_and_kept(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient, tmp_path: Path
) -> None:
    world, sink = setup
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.execute("INSERT INTO t VALUES (7)")
    secret_url = f"sqlite:///{database}"
    form = job_form(
        sink,
        token,
        **{
            "dataSource.type": "SQL",
            "dataSource.query": "SELECT id FROM t",
            "dataSource.connectionString": secret_url,
            "transformation.mode": "",
        },
    )
    job_id = job_id_of(await browser.post("/console/jobs/new?orgId=100", data=form))
    edit = await browser.get(f"/console/jobs/{job_id}/edit?orgId=100")
    shown = re.search(r'name="dataSource.connectionString" value="([^"]*)"', edit.text)
    assert shown
    assert html.unescape(shown.group(1)) != secret_url
    # Saving with the masked value keeps the stored connection string; testing uses it too.
    form["dataSource.connectionString"] = html.unescape(shown.group(1))
    form["jobId"] = job_id
    tested = await browser.post(
        "/console/jobs/test-source?orgId=100", data=form, headers={"hx-request": "true"}
    )
    assert "1 record fetched" in tested.text, tested.text
    saved = await browser.post(f"/console/jobs/{job_id}/edit?orgId=100", data=form)
    assert saved.status_code == 303, saved.text
    admin = await tenant_of(world, "admin", 100)
    stored = await world.services.scheduled_jobs.get(admin, job_id)
    assert stored.secrets.connection_string == secret_url


async def test_jobs_are_tenant_scoped_and_forms_need_csrf(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    world, sink = setup
    other = await world.client.post(
        "/api/v1/scheduled-jobs",
        json={
            "name": "org b job",
            "targetUrl": sink.url("/in"),
            "schedule": {"type": "INTERVAL", "intervalMs": 60000},
            "dataSource": {"type": "API", "url": sink.url("/source")},
        },
        headers=world.headers["user_b"],
    )
    assert other.status_code == 201, other.text
    foreign = other.json()["id"]
    run = await world.client.post(
        f"/api/v1/scheduled-jobs/{foreign}/execute", headers=world.headers["user_b"]
    )
    token = await console_login(browser, *USER_A)
    assert "org b job" not in (await browser.get("/console/jobs")).text
    for path in (f"/console/jobs/{foreign}", f"/console/jobs/{foreign}/edit"):
        assert (await browser.get(path)).status_code == 404
    assert (
        await browser.get(f"/console/jobs/{foreign}/runs/{run.json()['id']}")
    ).status_code == 404
    for action in ("execute", "active", "delete"):
        response = await browser.post(
            f"/console/jobs/{foreign}/{action}", data={"csrf_token": token, "confirm": "yes"}
        )
        assert response.status_code == 404, action
    # orgId in the URL does not change a USER's organization.
    assert (await browser.get(f"/console/jobs/{foreign}?orgId=200")).status_code == 404
    no_csrf = await browser.post("/console/jobs/new", data=job_form(sink, "forged.token"))
    assert no_csrf.status_code == 403
    assert (
        await browser.post("/console/alerts/rules", data={"kind": "DLQ_SIZE"})
    ).status_code == 403


async def test_alert_rules_channels_and_center(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    world, sink = setup
    svc = world.services
    token = await console_login(browser, *USER_A)
    page = await browser.get("/console/alerts")
    assert page.status_code == 200
    assert 'id="alert-center"' in page.text
    assert "platform-scope" not in page.text  # the platform view is for ADMINs
    assert (await browser.get("/console/alerts?scope=platform")).status_code == 403
    channel = await browser.post(
        "/console/alerts/channels",
        data={
            "csrf_token": token,
            "name": "ops hook",
            "type": "WEBHOOK",
            "url": sink.url("/alerts"),
            "secret": "a-very-long-signing-secret",
        },
    )
    assert channel.status_code == 303
    page = await browser.get("/console/alerts")
    assert "ops hook" in page.text
    assert "****" in page.text
    assert "a-very-long-signing-secret" not in page.text
    short = await browser.post(
        "/console/alerts/channels",
        data={"csrf_token": token, "type": "WEBHOOK", "url": sink.url("/a"), "secret": "short"},
    )
    assert short.status_code == 400
    assert "at least 16" in beside(short.text, "secret")
    bad_rule = await browser.post(
        "/console/alerts/rules",
        data={"csrf_token": token, "name": "dlq", "kind": "DLQ_SIZE", "threshold": "-3"},
    )
    assert bad_rule.status_code == 400
    assert ">= 0" in beside(bad_rule.text, "threshold")
    channel_id = re.search(r"<code>(ach_[^<]+)</code>", page.text)
    assert channel_id
    rule = await browser.post(
        "/console/alerts/rules",
        data={
            "csrf_token": token,
            "name": "dlq growing",
            "kind": "DLQ_SIZE",
            "threshold": "5",
            "severity": "ERROR",
            "channelIds": channel_id.group(1),
            "enabled": "on",
        },
    )
    assert rule.status_code == 303
    tenant = await tenant_of(world, "user_a")
    (stored,) = await svc.alerting.rows(alert_rules, tenant)
    assert stored["threshold"] == 5
    assert stored["channel_ids"] == [channel_id.group(1)]
    edit = await browser.get(f"/console/alerts/rules/{stored['id']}")
    assert edit.status_code == 200
    changed = await browser.post(
        f"/console/alerts/rules/{stored['id']}",
        data={"csrf_token": token, "name": "dlq big", "kind": "DLQ_SIZE", "threshold": "50",
              "windowSeconds": "900", "cooldownSeconds": "60", "severity": "WARNING"},
    )  # fmt: skip
    assert changed.status_code == 303
    (stored,) = await svc.alerting.rows(alert_rules, tenant)
    assert (stored["name"], stored["threshold"], stored["enabled"]) == ("dlq big", 50, False)
    # Another tenant's rule, channel and alert answer 404.
    b_rule = await world.client.post(
        "/api/v1/alert-rules", json={"kind": "DLQ_SIZE"}, headers=world.headers["user_b"]
    )
    assert b_rule.status_code == 201, b_rule.text
    assert (await browser.get(f"/console/alerts/rules/{b_rule.json()['id']}")).status_code == 404
    gone = await browser.post(
        f"/console/alerts/rules/{b_rule.json()['id']}/delete", data={"csrf_token": token}
    )
    assert gone.status_code == 404
    # The alert center: filter and acknowledge, for the tenant's own alerts only.
    mine = await raise_alert_for(svc, 100, "DLQ_SIZE", "DLQ of org a is big")
    theirs = await raise_alert_for(svc, 200, "CIRCUIT_OPEN", "org b circuit")
    center = await browser.get("/console/alerts?acknowledged=no")
    assert "DLQ of org a is big" in center.text
    assert "org b circuit" not in center.text
    assert "DLQ of org a" not in (await browser.get("/console/alerts?kind=CIRCUIT_OPEN")).text
    refused = await browser.post(
        f"/console/alerts/{theirs}/acknowledge", data={"csrf_token": token}
    )
    assert refused.status_code == 404
    ack = await browser.post(f"/console/alerts/{mine}/acknowledge", data={"csrf_token": token})
    assert ack.status_code == 303
    assert "DLQ of org a" not in (await browser.get("/console/alerts?acknowledged=no")).text
    assert "DLQ of org a" in (await browser.get("/console/alerts?acknowledged=yes")).text
    deleted = await browser.post(
        f"/console/alerts/rules/{stored['id']}/delete", data={"csrf_token": token}
    )
    assert deleted.status_code == 303
    assert await svc.alerting.rows(alert_rules, tenant) == []
    # A channel is edited on its own page: the secret kept when left empty, then removed.
    channel_page = f"/console/alerts/channels/{channel_id.group(1)}"
    edit = await browser.get(channel_page)
    assert edit.status_code == 200
    assert "a-very-long-signing-secret" not in edit.text
    form = {"csrf_token": token, "name": "ops hook 2", "url": sink.url("/alerts2"), "enabled": "on"}
    assert (await browser.post(channel_page, data=form)).status_code == 303
    (hook,) = await svc.alerting.rows(alert_channels, tenant)
    assert (hook["name"], hook["config"]["url"]) == ("ops hook 2", sink.url("/alerts2"))
    assert svc.secretbox.open(hook["sealed_secret"], hook["id"]) == "a-very-long-signing-secret"
    invalid = await browser.post(channel_page, data={**form, "url": "ftp://nope"})
    assert invalid.status_code == 400
    assert "http(s) URL" in invalid.text
    removed = await browser.post(channel_page, data={**form, "removeSecret": "on"})
    assert removed.status_code == 303
    (hook,) = await svc.alerting.rows(alert_channels, tenant)
    assert hook["sealed_secret"] is None
    b_channel = await world.client.post(
        "/api/v1/alert-channels",
        json={"type": "EMAIL", "recipients": ["b@example.com"]},
        headers=world.headers["user_b"],
    )
    foreign_channel = f"/console/alerts/channels/{b_channel.json()['id']}"
    assert (await browser.get(foreign_channel)).status_code == 404
    assert (await browser.post(foreign_channel, data=form)).status_code == 404


async def raise_alert_for(svc: Services, org_id: int, kind: str, message: str) -> str:
    async with svc.db.write() as conn:
        return await raise_alert(
            conn, org_id=org_id, kind=kind, message=message, now=datetime.now(UTC)
        )


async def test_admin_sees_platform_rules(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    world, _ = setup
    token = await console_login(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
    page = await browser.get("/console/alerts")
    assert "platform-scope" in page.text
    # WORKER_STOPPED is a platform rule: refused for an organization, accepted for the platform.
    for_org = await browser.post(
        "/console/alerts/rules", data={"csrf_token": token, "kind": "WORKER_STOPPED"}
    )
    assert for_org.status_code == 400
    created = await browser.post(
        "/console/alerts/rules",
        data={"csrf_token": token, "kind": "WORKER_STOPPED", "scope": "platform",
              "name": "workers gone", "enabled": "on"},
    )  # fmt: skip
    assert created.status_code == 303
    assert "scope=platform" in created.headers["location"]
    platform = await browser.get("/console/alerts?scope=platform")
    assert "workers gone" in platform.text
    assert "(platform)" in platform.text
    assert "workers gone" not in (await browser.get("/console/alerts")).text
    api = await world.client.get("/api/v1/alert-rules", headers=world.headers["admin"])
    assert [r["name"] for r in api.json()["data"]] == ["workers gone"]


async def add_attempts(svc: Services, org_id: int, rows: list[tuple[str, int, int]]) -> None:
    """Delivery attempts as the delivery commit records them: the log rows and their rollups
    (``rows``: status, response ms, minutes ago)."""
    integration_id = await make_integration(svc, org_id, f"hook-{org_id}")
    job = delivery_job(org_id, integration_id, "e1")
    now = datetime.now(UTC)
    facts = []
    for status, ms, ago in rows:
        at = now - timedelta(minutes=ago)
        await add_log(svc, job, status=status, created_at=at, response_time_ms=ms)
        facts.append(AttemptFacts(org_id, integration_id, at, status, None, ms))
    async with svc.db.write() as conn:
        await add_rollups(conn, aggregate(facts))


async def test_dashboard_figures_equal_the_analytics_api(
    setup: tuple[World, RecordingSink], browser: httpx.AsyncClient
) -> None:
    world, _ = setup
    svc = world.services
    await add_attempts(
        svc,
        100,
        [("SUCCESS", 12, 0), ("SUCCESS", 30, 1), ("FAILED", 900, 2), ("RETRYING", 40, 70)],
    )
    await add_attempts(svc, 200, [("SUCCESS", 5, 0)] * 3)  # another tenant: not counted
    await world.client.post(
        "/api/v1/integration/events/publish",
        json={"type": "order.created", "id": "ev-1", "source": "shop", "data": {}},
        headers=world.headers["key_a"],
    )
    await console_login(browser, *USER_A)
    page = (await browser.get("/console/dashboard")).text
    api = (await world.client.get("/api/v1/dashboard", headers=world.headers["user_a"])).json()
    kpis = api["kpis"]
    assert kpis["attempts"] == 4
    assert f'id="kpi-deliveries">{kpis["attempts"]}<' in page
    assert f'id="kpi-delivered">{kpis["delivered"]} delivered<' in page
    assert f'id="kpi-success">{kpis["successRate"] * 100:.1f} %<' in page
    assert f'id="kpi-dlq"><a href="/console/dlq">{api["dlq"]["size"]}<' in page
    assert f'id="kpi-lag">{api["workerLag"]["oldestDueSeconds"]:.0f} s<' in page
    # The charts are the analytics API's hourly trends.
    start = chart_start(datetime.now(UTC))
    trends = (
        await world.client.get(
            "/api/v1/analytics",
            params={"from": start.isoformat(), "interval": "hour"},
            headers=world.headers["user_a"],
        )
    ).json()["trends"]
    for point in trends:
        label = datetime.fromisoformat(point["bucketStart"].replace("Z", "+00:00"))
        hour = label.strftime("%H:00")
        if point["delivered"]:
            assert f"{hour} SUCCESS: {point['delivered']}<" in page
        if point["failed"]:
            assert f"{hour} FAILED: {point['failed']}<" in page
        if point["latency"]["p99Ms"]:
            assert f"{hour} p99: {point['latency']['p99Ms']:g} ms<" in page
    assert "hook-100" in page
    assert "hook-200" not in page
    assert 'id="kpi-events">1<' in page
    assert 'id="health-database"' in page
    assert 'id="health-workers"' in page
    assert "oldest due job waits" not in page  # the platform queue's figures are for ADMINs
