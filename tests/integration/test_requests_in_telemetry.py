"""Traces and metrics of the requests-in side, on SQLite and PostgreSQL: a proxied call
(inbound proxy), a gateway route call, a received webhook followed to its delivery, and a
scheduled job run. Spans from OpenTelemetry's in-memory exporter, the ``traceparent`` that
reached a recording upstream, the trace id in the logs, ``/metrics`` parsed with
``prometheus_client``'s parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from tests.integration.delivery_helpers import add_integration
from tests.integration.gateway_helpers import configure
from tests.integration.inbound_helpers import integration
from tests.integration.obs_helpers import Obs, observed
from tests.integration.scheduled_job_helpers import BASE as JOBS
from tests.integration.scheduled_job_helpers import call, job_body, run_queued
from tests.integration.test_observability import (
    INCOMING_SPAN,
    INCOMING_TRACE,
    TRACEPARENT,
    samples,
    value,
)
from tests.integration.webhook_helpers import (
    SENDERS,
    create_source,
    inbound_lines,
    logged_events,
    receive_path,
    source_fields,
)

from junctionbox.observability.tracing import Tracing
from junctionbox.store.tables import delivery_logs
from junctionbox.testing import Behaviour, RecordingSink

PROXY = "/api/v1/integrations"


def by_name(obs: Obs) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in obs.spans.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def hex_span(span: Any) -> str:
    return f"{span.context.span_id:016x}"


async def metrics(obs: Obs) -> dict[str, list[Any]]:
    response = await obs.client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


async def _no_sleep(_: float) -> None:
    return None


async def test_proxied_call_span_traceparent_log_and_metrics(db_url: str, tmp_path: Path) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        obs.services.proxy.sleep = _no_sleep
        sink.on("/book", Behaviour(503), Behaviour(201, b'{"ok": true}'))
        body = integration(sink, retryPolicy={"maxRetries": 2, "retryNonIdempotent": True})
        created = await obs.client.post(
            "/api/v1/inbound-integrations?orgId=100", json=body, headers=obs.world.headers["user_a"]
        )
        assert created.status_code == 201, created.text
        integration_id = created.json()["id"]
        obs.spans.clear()
        response = await obs.client.post(
            f"{PROXY}/appointment-booking?orgId=100&token=s3cr3t-query",
            content=b'{"a": 1}',
            headers={**obs.world.headers["key_a"], "traceparent": TRACEPARENT},
        )
        assert response.status_code == 201, response.text

        spans = by_name(obs)
        [server] = spans["POST /api/v1/integrations/{type}"]
        [call] = spans["proxy.call"]
        assert f"{server.parent.span_id:016x}" == INCOMING_SPAN
        assert call.parent.span_id == server.context.span_id
        assert f"{call.context.trace_id:032x}" == INCOMING_TRACE
        attributes = dict(call.attributes)
        assert attributes["adapter.id"] == integration_id
        assert attributes["http.request.method"] == "POST"
        assert attributes["http.response.status_code"] == 201
        assert attributes["proxy.attempts"] == 2
        assert not [v for v in attributes.values() if "s3cr3t" in str(v) or "http" in str(v)]

        first, second = sink.requests_to("/book")
        for seen in (first, second):
            assert seen.header("traceparent") == f"00-{INCOMING_TRACE}-{hex_span(call)}-01"

        await obs.services.proxy.logs.flush()
        async with obs.services.db.read() as conn:
            rows = (
                await conn.execute(select(delivery_logs.c.trace_id, delivery_logs.c.direction))
            ).all()
        assert [tuple(r) for r in rows] == [(INCOMING_TRACE, "INBOUND")]

        found = await metrics(obs)
        assert (
            value(found, "integration_requests_total", adapter_id=integration_id, status="success")
            == 1
        )
        assert value(found, "integration_retries_total", adapter_id=integration_id) == 1
        assert (
            value(found, "integration_request_duration_seconds_count", adapter_id=integration_id)
            == 1
        )


async def test_proxied_failure_counts_an_error(db_url: str, tmp_path: Path) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        sink.on("/book", Behaviour(500))
        created = await obs.client.post(
            "/api/v1/inbound-integrations?orgId=100",
            json=integration(sink),
            headers=obs.world.headers["user_a"],
        )
        integration_id = created.json()["id"]
        response = await obs.client.post(
            f"{PROXY}/appointment-booking?orgId=100",
            content=b"{}",
            headers=obs.world.headers["key_a"],
        )
        assert response.status_code == 502
        [call] = by_name(obs)["proxy.call"]
        assert call.status.status_code.name == "ERROR"
        [seen] = sink.requests_to("/book")
        header = seen.header("traceparent")
        assert header is not None
        assert header.split("-")[2] == hex_span(call)
        async with obs.services.db.read() as conn:
            [trace_id] = (await conn.execute(select(delivery_logs.c.trace_id))).scalars()
        assert trace_id == f"{call.context.trace_id:032x}"
        found = await metrics(obs)
        assert (
            value(found, "integration_requests_total", adapter_id=integration_id, status="failure")
            == 1
        )
        errors = value(
            found, "integration_errors_total", adapter_id=integration_id, error_type="SERVER_ERROR"
        )
        assert errors == 1


async def test_webhook_to_event_to_delivery_is_one_trace(db_url: str, tmp_path: Path) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        await add_integration(obs.services, sink.url("/out"), org_id=100, eventType="order.*")
        sender = SENDERS["STANDARD_WEBHOOKS"]
        source = await create_source(
            obs.client, obs.world.headers["user_a"], **source_fields(sender), eventType="order.paid"
        )
        path = receive_path(source["id"])
        body = b'{"order": 7}'
        headers = {**sender.headers(body, msg_id="msg_t1"), "content-type": "application/json"}
        obs.spans.clear()
        sent = await obs.client.post(
            path, content=body, headers={**headers, "traceparent": TRACEPARENT}
        )
        again = await obs.client.post(path, content=body, headers=headers)
        bad = await obs.client.post(
            path, content=body, headers={**headers, "webhook-signature": "v1,AAAA"}
        )
        assert (sent.status_code, again.status_code, bad.status_code) == (202, 200, 401)
        await obs.deliver()

        [received] = sink.requests_to("/out")
        spans = by_name(obs)
        receives = {s.attributes["webhook.outcome"]: s for s in spans["webhook.receive"]}
        assert set(receives) == {"accepted", "duplicate", "refused"}
        accepted = receives["accepted"]
        [server] = [s for s in spans["POST /api/v1/webhooks/{source_id}"] if s.parent is not None]
        assert f"{server.parent.span_id:016x}" == INCOMING_SPAN
        assert accepted.parent.span_id == server.context.span_id
        assert receives["refused"].attributes["webhook.refused.reason"] == "UNAUTHORIZED"
        [attempt] = spans["delivery.attempt"]
        assert attempt.parent.span_id == accepted.context.span_id  # the stored traceparent
        header = received.header("traceparent")
        assert header == f"00-{INCOMING_TRACE}-{hex_span(attempt)}-01"

        [event] = await logged_events(obs.services, 100)
        assert event["extensions"]["traceparent"] == f"00-{INCOMING_TRACE}-{hex_span(accepted)}-01"
        lines = await inbound_lines(obs.services, source["id"])
        assert next(line["trace_id"] for line in lines) == INCOMING_TRACE
        assert all(line["trace_id"] for line in lines)

        found = await metrics(obs)
        received_total = "junctionbox_webhooks_received_total"
        assert value(found, received_total, outcome="accepted", reason="") == 1
        assert value(found, received_total, outcome="duplicate", reason="") == 1
        assert value(found, received_total, outcome="refused", reason="UNAUTHORIZED") == 1


async def test_scheduled_run_span_tree_traceparent_log_and_metrics(
    db_url: str, tmp_path: Path
) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        obs.services.scheduled_jobs.runner.sleep = _no_sleep
        sink.on("/down", Behaviour(500))
        ids = []
        for target in ("/export", "/down"):
            created = await call(obs.world, "POST", JOBS, json=job_body(sink.url(target)))
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
            queued = await call(obs.world, "POST", f"{JOBS}/{ids[-1]}/execute")
            assert queued.status_code == 202, queued.text
        obs.spans.clear()
        assert await run_queued(obs.services) == 2

        spans = by_name(obs)
        runs = {s.attributes["scheduled_job.id"]: s for s in spans["scheduled_job.run"]}
        good, bad = runs[ids[0]], runs[ids[1]]
        assert good.parent is None
        assert bad.parent is None
        assert (good.status.status_code.name, bad.status.status_code.name) == ("UNSET", "ERROR")
        for run in (good, bad):
            children = [
                s
                for s in obs.spans.get_finished_spans()
                if s.parent is not None and s.parent.span_id == run.context.span_id
            ]
            assert [s.name for s in children] == [
                "scheduled_job.data_fetch",
                "scheduled_job.transformation",
                "scheduled_job.delivery",
            ]
        [bad_delivery] = [
            s for s in spans["scheduled_job.delivery"] if s.parent.span_id == bad.context.span_id
        ]
        assert bad_delivery.status.status_code.name == "ERROR"

        [received] = sink.requests_to("/export")
        [good_delivery] = [
            s for s in spans["scheduled_job.delivery"] if s.parent.span_id == good.context.span_id
        ]
        good_trace = f"{good.context.trace_id:032x}"
        assert received.header("traceparent") == f"00-{good_trace}-{hex_span(good_delivery)}-01"
        assert len(sink.requests_to("/down")) == 2  # one retry, same traceparent
        assert len({r.header("traceparent") for r in sink.requests_to("/down")}) == 1

        [log] = (await call(obs.world, "GET", f"{JOBS}/{ids[0]}/logs")).json()["logs"]
        assert log["traceId"] == good_trace
        assert log["httpRequest"]["headers"]["traceparent"] == received.header("traceparent")

        found = await metrics(obs)
        assert value(found, "junctionbox_runs_total", kind="scheduled_job", status="success") == 1
        assert value(found, "junctionbox_runs_total", kind="scheduled_job", status="failure") == 1
        assert value(found, "junctionbox_run_duration_seconds_count", kind="scheduled_job") == 2


async def test_scheduled_run_without_tracing_still_sends_a_traceparent(
    db_url: str, tmp_path: Path
) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        obs.services.telemetry.tracing = Tracing()  # off
        created = await call(obs.world, "POST", JOBS, json=job_body(sink.url("/export")))
        job_id = created.json()["id"]
        await call(obs.world, "POST", f"{JOBS}/{job_id}/execute")
        assert await run_queued(obs.services) == 1
        [received] = sink.requests_to("/export")
        header = received.header("traceparent")
        assert header is not None
        version, trace_id, _span, flags = header.split("-")
        assert (version, flags) == ("00", "00")
        [log] = (await call(obs.world, "GET", f"{JOBS}/{job_id}/logs")).json()["logs"]
        assert log["traceId"] == trace_id


async def test_gateway_route_call_span_traceparent_and_metrics(db_url: str, tmp_path: Path) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        sink.on("/api/v2/orders/7", Behaviour(200, b'{"id": 7}'))
        sink.on("/api/v2/orders/8", Behaviour(502))
        configured = await configure(
            obs.client,
            obs.world.headers["user_a"],
            100,
            {
                "path": "/orders/{id}",
                "targetUrl": sink.url("/api"),
                "targetEndpoint": "/v2/orders/{id}",
            },
        )
        route_id = configured["routeId"]
        obs.spans.clear()
        ok = await obs.client.get(
            "/gw/100/orders/7?key=s3cr3t", headers={"traceparent": TRACEPARENT}
        )
        failed = await obs.client.get("/gw/100/orders/8")
        assert (ok.status_code, failed.status_code) == (200, 502)

        spans = by_name(obs)
        servers = spans["GET /gw/{org_id}/{path}"]
        calls = spans["gateway.call"]
        assert len(servers) == 2
        assert len(calls) == 2
        [traced] = [s for s in servers if s.parent is not None]
        assert f"{traced.parent.span_id:016x}" == INCOMING_SPAN
        [call_ok] = [s for s in calls if s.parent.span_id == traced.context.span_id]
        [call_bad] = [s for s in calls if s is not call_ok]
        assert call_ok.attributes["gateway.route.id"] == route_id
        assert call_ok.attributes["http.response.status_code"] == 200
        assert call_bad.attributes["http.response.status_code"] == 502
        assert call_bad.status.status_code.name == "ERROR"
        assert not [v for s in calls for v in s.attributes.values() if "s3cr3t" in str(v)]
        [seen] = sink.requests_to("/api/v2/orders/7")
        assert seen.header("traceparent") == f"00-{INCOMING_TRACE}-{hex_span(call_ok)}-01"

        found = await metrics(obs)
        assert (
            value(found, "integration_requests_total", adapter_id=route_id, status="success") == 1
        )
        assert (
            value(found, "integration_requests_total", adapter_id=route_id, status="failure") == 1
        )
        errors = value(
            found, "integration_errors_total", adapter_id=route_id, error_type="SERVER_ERROR"
        )
        assert errors == 1
        served = value(
            found,
            "junctionbox_http_requests_total",
            method="GET",
            route="/gw/{org_id}/{path}",
            status="200",
        )
        assert served == 1
        labels = {v for series in found.values() for s in series for v in s.labels.values()}
        assert not [v for v in labels if "orders" in v or "s3cr3t" in v]
