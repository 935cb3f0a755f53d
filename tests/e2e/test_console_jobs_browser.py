"""Scheduled jobs and alerts in a real browser: an operator creates a scheduled job whose
API data source is a local recording server and whose target is a recording sink, tests the
data source, executes the job now and follows its run log to the end; then opens the alerts
page and adds a webhook channel. Screenshots go to ``tests/artifacts/console/``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from tests.e2e.test_console_browser import USER, WAIT_SECONDS, log_in, set_up_tenant, shot

from junctionbox.testing import Behaviour, RecordingSink

RECORDS = [{"id": n, "amount": n * 5} for n in range(1, 15)]


async def test_scheduled_job_and_alerts_journey(
    server: str, sink: RecordingSink, browser: Any, artifacts: Path
) -> None:
    base = server
    await set_up_tenant(base)
    sink.on("/source", Behaviour(body=orjson.dumps(RECORDS)))
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await log_in(page, base, USER)

    await page.goto(f"{base}/console/jobs")
    await shot(page, artifacts, "30-jobs-empty")
    await page.goto(f"{base}/console/jobs/new")
    await page.fill("input[name=name]", "Nightly invoices")
    await page.fill("input[name='schedule.expression']", "30 2 * * *")
    await page.fill("input[name='schedule.timezone']", "Europe/London")
    await page.fill("input[name='dataSource.url']", sink.url("/source"))
    await page.select_option("select[name='transformation.mode']", "JSONATA")
    await page.fill(
        "textarea[name='transformation.script']",
        "{ 'invoices': $count(data), 'total': $sum(data.amount) }",
    )
    await page.fill("input[name=targetUrl]", "not a url")
    await page.click("#save")
    await page.locator(".field-error").first.wait_for()
    await shot(page, artifacts, "31-job-form-errors")
    await page.fill("input[name=targetUrl]", sink.url("/in"))
    # The data source test shows the first 10 of the 14 records, nothing is delivered.
    await page.click("#test-source")
    await page.locator("#source-ok").wait_for()
    assert "14 records" in await page.inner_text("#source-ok")
    assert '"id": 10' in await page.inner_text("#source-sample")
    assert '"id": 11' not in await page.inner_text("#source-sample")
    await shot(page, artifacts, "32-job-source-test")
    assert sink.requests_to("/in") == []
    await page.click("#save")
    await page.wait_for_url(f"{base}/console/jobs/sjb_*")
    await shot(page, artifacts, "33-job-detail")

    # Execute now: the run page follows the run (htmx) until it ends.
    before = len(sink.requests)
    await page.click("#execute")
    await page.wait_for_url(f"{base}/console/jobs/*/runs/*")
    await sink.wait_for(before + 2, timeout=WAIT_SECONDS)  # the source's GET, the delivery
    (delivered,) = sink.requests_to("/in")
    assert orjson.loads(delivered.body) == {"invoices": 14, "total": 525}
    await page.locator("#run-body h1 .b-SUCCESS").wait_for(timeout=WAIT_SECONDS * 1000)
    assert "DATA_FETCH" in await page.inner_text("#stages")
    assert "curl" in await page.inner_text("#curl")
    await page.click("text=Transformed payload")
    assert '"total": 525' in await page.inner_text("#transformed")
    await shot(page, artifacts, "34-job-run-log")
    await page.locator("a", has_text="Nightly invoices").first.click()
    await page.locator("text=MANUAL").first.wait_for()
    await shot(page, artifacts, "35-job-run-history")

    # The alerts page: the alert center, rules and channels.
    await page.goto(f"{base}/console/alerts")
    await page.fill("#channel-form input[name=name]", "ops hook")
    await page.fill("#channel-form input[name=url]", sink.url("/alerts"))
    await page.fill("#channel-form input[name=secret]", "a-long-signing-secret-1")
    await page.click("#channel-form button[type=submit]")
    await page.locator(".flash.ok").wait_for()
    assert "****" in await page.inner_text("#channels")
    await page.fill("#rule-form input[name=name]", "DLQ growing")
    await page.fill("#rule-form input[name=threshold]", "10")
    await page.check("#rule-form input[name=channelIds]")
    await page.click("#rule-form button[type=submit]")
    await page.locator("#rules", has_text="DLQ growing").wait_for()
    await shot(page, artifacts, "36-alerts")
    await page.goto(f"{base}/console/dashboard")
    await shot(page, artifacts, "37-dashboard-after-job")
    await context.close()
