"""``/api/v1/scheduled-jobs``: the daily export walk-through, credentials, bad input, each
stage failing, tenant isolation, pause/resume, and interrupted runs. Every test runs on
SQLite and PostgreSQL; the sink is a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import update
from tests.integration.scheduled_job_helpers import (
    BASE,
    call,
    job_body,
    problems,
    run_queued,
    sink_world,
    sqlite_bills,
)

from junctionbox.engine.scheduled_jobs import ScheduledJobWorker
from junctionbox.services.scheduled_jobs import RunExecution
from junctionbox.store.tables import jobs
from junctionbox.store.types import utcnow
from junctionbox.testing import Behaviour

EXPORT_SQL = (
    "SELECT id, amount FROM bills WHERE org = {{config.tenantId}} "
    "AND day = '{{date.yesterday()}}' ORDER BY id"
)
RESHAPE = """
return {
  partner: 'acme',
  day: payload.metadata.scheduledFor.slice(0, 10),
  count: payload.data.length,
  total: payload.data.reduce((s, b) => s + Number(b.amount), 0),
  ids: payload.data.map(b => b.id),
};
"""


async def logs_of(world: Any, job_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await call(world, "GET", f"{BASE}/{job_id}/logs", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["logs"])


async def test_daily_export_walk_through(db_url: str, tmp_path: Path) -> None:
    bills = sqlite_bills(tmp_path / "bills.db")
    async with sink_world(db_url, tmp_path) as (world, sink):
        source = {"type": "SQL", "query": EXPORT_SQL, "connectionString": bills}
        # 1. Try the data source: at most 10 records, nothing delivered.
        tried = await call(world, "POST", f"{BASE}/test-datasource", json={"dataSource": source})
        assert tried.status_code == 200, tried.text
        assert tried.json()["recordsFetched"] == 2
        assert [r["id"] for r in tried.json()["sample"]] == [1, 2]
        assert sink.requests == []
        # 2. Save it: daily at 02:00 UTC, reshaped by a script, bearer auth.
        body = job_body(
            sink.url("/partner"),
            name="bills to acme",
            schedule={"type": "CRON", "expression": "0 2 * * *", "timezone": "UTC"},
            dataSource=source,
            transformation={"mode": "SCRIPT", "script": RESHAPE},
            outgoingAuthType="BEARER",
            outgoingAuthConfig={"token": "partner-token-123456"},
        )
        created = await call(world, "POST", BASE, json=body)
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["nextRunAt"] is not None
        assert job["schedule"]["effectiveTimezone"] == "UTC"
        assert job["outgoingAuthConfig"]["token"].startswith("****")
        assert "partner-token-123456" not in created.text
        # 3. Run it now and read its log.
        queued = await call(world, "POST", f"{BASE}/{job['id']}/execute")
        assert queued.status_code == 202
        assert queued.json()["status"] == "QUEUED"
        assert await run_queued(world.services) == 1
        [received] = sink.requests
        assert received.header("authorization") == "Bearer partner-token-123456"
        assert received.header("idempotency-key") == queued.json()["id"]
        sent = orjson.loads(received.body)
        assert sent["count"] == 2
        assert sent["ids"] == [1, 2]
        assert sent["total"] == 19.75
        [log] = await logs_of(world, job["id"])
        assert log["status"] == "SUCCESS"
        assert log["trigger"] == "MANUAL"
        assert (log["dataFetchStage"], log["transformationStage"], log["deliveryStage"]) == (
            "SUCCESS",
            "SUCCESS",
            "SUCCESS",
        )
        assert log["recordsFetched"] == 2
        assert len(log["dataFetched"]) == 2
        assert log["transformedPayload"] == sent
        assert log["responseStatus"] == 200
        assert log["errorContext"] is None
        assert log["httpRequest"]["headers"]["authorization"] == "Bearer ****"
        assert "partner-token-123456" not in log["curlCommand"]
        assert log["curlCommand"].startswith("curl -X POST")
        assert log["durationMs"] >= 0
        detail = await call(world, "GET", f"{BASE}/{job['id']}/logs/{log['id']}")
        assert detail.json()["id"] == log["id"]
        assert (await call(world, "GET", f"{BASE}/{job['id']}")).json()["lastStatus"] == "SUCCESS"


async def test_masked_credentials_are_kept_on_update(db_url: str, tmp_path: Path) -> None:
    bills = sqlite_bills(tmp_path / "bills.db")
    async with sink_world(db_url, tmp_path) as (world, sink):
        body = job_body(
            sink.url("/in"),
            dataSource={"type": "SQL", "query": "SELECT 1 AS one", "connectionString": bills},
            outgoingAuthType="API_KEY",
            outgoingAuthConfig={"name": "x-api-key", "value": "secret-value-0001"},
        )
        job = (await call(world, "POST", BASE, json=body)).json()
        shown = (await call(world, "GET", f"{BASE}/{job['id']}")).json()
        # Send back what was read, with a new name: the credentials stay.
        shown_body = {k: shown[k] for k in body} | {"name": "renamed"}
        replaced = await call(world, "PUT", f"{BASE}/{job['id']}", json=shown_body)
        assert replaced.status_code == 200, replaced.text
        patched = await call(world, "PATCH", f"{BASE}/{job['id']}", json={"description": "d"})
        assert patched.status_code == 200
        assert patched.json()["version"] == 3
        await call(world, "POST", f"{BASE}/{job['id']}/execute")
        await run_queued(world.services)
        assert sink.requests[0].header("x-api-key") == "secret-value-0001"
        assert orjson.loads(sink.requests[0].body) == [{"one": 1}]
        # A database password never comes back.
        secret_db = {
            "type": "SQL",
            "query": "SELECT 1",
            "connectionString": "postgresql://u:pw-secret-1@127.0.0.1:1/x",
        }
        other = await call(
            world, "POST", BASE, json=job_body(sink.url("/in"), name="o", dataSource=secret_db)
        )
        assert other.status_code == 201
        assert "pw-secret-1" not in other.text
        assert "***" in other.json()["dataSource"]["connectionString"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"schedule": {"type": "CRON", "expression": "0 25 * * *"}}, "expression"),
        ({"schedule": {"type": "CRON", "expression": "0 2 * * *", "timezone": "Nowhere/Land"}}, "timezone"),
        ({"dataSource": {"type": "SQL", "query": "SELECT 1; DELETE FROM entities"}}, "query"),
        ({"dataSource": {"type": "SQL", "query": "UPDATE entities SET name = 'x'"}}, "query"),
        ({"dataSource": {"type": "SQL", "query": "SELECT {{env.JB_SECRET_KEY}}"}}, "dataSource"),
        ({"transformation": {"mode": "SCRIPT", "script": "return {"}}, "script"),
        ({"transformation": {"mode": "JSONATA", "script": "data["}}, "script"),
        ({"dataSource": {"type": "SQL", "query": "SELECT 1", "connectionString": "oracle://x/y"}}, "dataSource.connectionString"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_400_naming_the_field(
    db_url: str, tmp_path: Path, change: dict[str, Any], where: str
) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        response = await call(world, "POST", BASE, json=job_body(sink.url("/in"), **change))
        found = problems(response)
        assert any(loc[-1] == where for loc in found), found
        body = response.json()
        assert body["code"] in ("VALIDATION_ERROR",)
        assert body["statusCode"] == 400


async def test_sql_sources_need_admin_and_api_sources_do_not(db_url: str, tmp_path: Path) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        sql = await call(world, "POST", BASE, json=job_body(sink.url("/in")), caller="user_a")
        assert sql.status_code == 403
        tried = await call(
            world,
            "POST",
            f"{BASE}/test-datasource",
            json={"dataSource": {"type": "SQL", "query": "SELECT * FROM users"}},
            caller="key_a",
        )
        assert tried.status_code == 403
        api = {"type": "API", "url": sink.url("/source")}
        created = await call(
            world, "POST", BASE, json=job_body(sink.url("/in"), dataSource=api), caller="user_a"
        )
        assert created.status_code == 201, created.text


async def test_each_stage_failure_is_logged_with_its_stage(db_url: str, tmp_path: Path) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        sink.on("/html", Behaviour(200, b"<html>not json</html>", {"content-type": "text/html"}))
        sink.on("/down", Behaviour(503))
        cases = {
            "unreachable db": (
                {"type": "SQL", "query": "SELECT 1", "connectionString": "postgresql://u:pw@127.0.0.1:1/x"},
                None,
                "/in",
                "DATA_FETCH",
            ),
            "non-json api": ({"type": "API", "url": sink.url("/html")}, None, "/in", "DATA_FETCH"),
            "script throws": (
                {"type": "SQL", "query": "SELECT 1 AS one"},
                {"mode": "SCRIPT", "script": "throw new Error('bad row ' + payload.data[0].one)"},
                "/in",
                "TRANSFORMATION",
            ),
            "target down": ({"type": "SQL", "query": "SELECT 1 AS one"}, None, "/down", "DELIVERY"),
        }  # fmt: skip
        ids = {}
        for name, (source, transformation, path, _) in cases.items():
            body = job_body(sink.url(path), name=name, dataSource=source)
            if transformation:
                body["transformation"] = transformation
            created = await call(world, "POST", BASE, json=body)
            assert created.status_code == 201, created.text
            ids[name] = created.json()["id"]
            await call(world, "POST", f"{BASE}/{ids[name]}/execute")
        assert await run_queued(world.services) == 4
        for name, (_, _, _, stage) in cases.items():
            [log] = await logs_of(world, ids[name], status="FAILED")
            assert log["errorContext"]["stage"] == stage, (name, log["errorContext"])
            assert "pw" not in orjson.dumps(log).decode().replace("pwd", "")
        down = (await logs_of(world, ids["target down"]))[0]
        assert down["deliveryAttempts"] == 2
        assert down["responseStatus"] == 503
        assert len(sink.requests_to("/down")) == 2
        assert "not JSON" in (await logs_of(world, ids["non-json api"]))[0]["errorContext"]["error"]
        thrown = (await logs_of(world, ids["script throws"]))[0]
        assert "bad row 1" in thrown["errorContext"]["error"]
        assert thrown["deliveryStage"] is None
        assert sink.requests_to("/in") == []


async def test_other_tenants_cannot_see_or_touch_a_job(db_url: str, tmp_path: Path) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        api = {"type": "API", "url": sink.url("/source")}
        job = (
            await call(world, "POST", BASE, json=job_body(sink.url("/in"), dataSource=api))
        ).json()
        for caller in ("user_b", "key_b"):
            assert (await call(world, "GET", BASE, caller=caller)).json()["total"] == 0
            for method, suffix in (
                ("GET", ""),
                ("PATCH", ""),
                ("DELETE", ""),
                ("POST", "/execute"),
                ("POST", "/pause"),
                ("GET", "/logs"),
            ):
                kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "PATCH" else {}
                response = await call(
                    world, method, f"{BASE}/{job['id']}{suffix}", caller=caller, **kwargs
                )
                assert response.status_code == 404, (method, suffix, response.text)
        assert (await call(world, "GET", BASE, caller="user_a")).json()["total"] == 1


async def test_pause_stops_ticks_and_resume_starts_from_the_next(
    db_url: str, tmp_path: Path
) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        api = {"type": "API", "url": sink.url("/source")}
        body = job_body(sink.url("/in"), dataSource=api)
        body["schedule"] = {"type": "INTERVAL", "intervalMs": 1000}
        job = (await call(world, "POST", BASE, json=body)).json()
        paused = (await call(world, "POST", f"{BASE}/{job['id']}/pause")).json()
        assert paused["isActive"] is False
        assert paused["nextRunAt"] is None
        svc = world.services.scheduled_jobs
        later = utcnow() + timedelta(seconds=5)
        svc.clock = lambda: later
        assert await svc.schedule_due() == 0
        resumed = (await call(world, "POST", f"{BASE}/{job['id']}/resume")).json()
        assert resumed["isActive"] is True
        assert resumed["nextRunAt"] > paused["updatedAt"]


async def test_a_run_interrupted_by_a_crash_is_marked_failed(db_url: str, tmp_path: Path) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        job = (await call(world, "POST", BASE, json=job_body(sink.url("/in")))).json()
        await call(world, "POST", f"{BASE}/{job['id']}/execute")
        services = world.services
        execution = RunExecution(services.scheduled_jobs)
        [claimed] = await services.queue.claim("scheduled-jobs", "node-a", 1, 30)
        started = await execution.start(claimed)  # ... and node-a dies here
        assert started is not None
        async with services.db.write() as conn:  # its lease runs out
            past = utcnow() - timedelta(seconds=1)
            await conn.execute(update(jobs).values(leased_until=past))
        worker = ScheduledJobWorker(
            services.scheduled_jobs, services.queue, node_id="b", concurrency=1, lease_seconds=30
        )
        for task in await worker.run_once():
            await task
        [log] = await logs_of(world, job["id"])
        assert log["status"] == "FAILED"
        assert log["errorContext"]["stage"] == "DATA_FETCH"
        assert "interrupted" in log["errorContext"]["error"]
        assert sink.requests == []  # not run again: it may have delivered already
        # The first node's late result is not recorded over it.
        result = await services.scheduled_jobs.runner.run(
            started.stored.config, execution.run_input(started)
        )
        with pytest.raises(Exception, match="sjr_"):
            await execution.finish(claimed, started, result)
        assert (await logs_of(world, job["id"]))[0]["status"] == "FAILED"


async def test_private_addresses_are_refused_at_save_unless_allowlisted(
    db_url: str, tmp_path: Path
) -> None:
    async with sink_world(db_url, tmp_path) as (world, sink):
        other_port = f"http://127.0.0.1:{sink.port + 1}/in"
        api = {"type": "API", "url": "http://169.254.169.254/latest/meta-data"}
        for body in (job_body(other_port), job_body(sink.url("/in"), dataSource=api)):
            response = await call(world, "POST", BASE, json=body)
            assert response.status_code == 400, response.text
        tried = await call(
            world, "POST", f"{BASE}/test-datasource", json={"dataSource": api}, caller="user_a"
        )
        assert tried.status_code == 403  # refused when sent
        assert (await call(world, "POST", BASE, json=job_body(sink.url("/in")))).status_code == 201


async def test_patching_the_query_keeps_the_database(db_url: str, tmp_path: Path) -> None:
    bills = sqlite_bills(tmp_path / "bills.db")
    async with sink_world(db_url, tmp_path) as (world, sink):
        source = {"type": "SQL", "query": "SELECT 1 AS one", "connectionString": bills}
        job = (
            await call(world, "POST", BASE, json=job_body(sink.url("/in"), dataSource=source))
        ).json()
        patch = {"dataSource": {"type": "SQL", "query": "SELECT count(*) AS n FROM bills"}}
        patched = await call(world, "PATCH", f"{BASE}/{job['id']}", json=patch)
        assert patched.status_code == 200, patched.text
        await call(world, "POST", f"{BASE}/{job['id']}/execute")
        await run_queued(world.services)
        assert orjson.loads(sink.requests[0].body) == [{"n": 4}]  # still the bills database
