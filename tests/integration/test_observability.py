"""Metrics, traces and analytics after real deliveries to a recording sink, on SQLite and
PostgreSQL: the /metrics text parsed with prometheus_client's parser, the span tree from
OpenTelemetry's in-memory exporter, the traceparent the sink received, and the analytics
numbers against counts computed from the delivery logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select
from tests.integration.delivery_helpers import add_integration
from tests.integration.obs_helpers import Obs, observed

from junctionbox.api.app import create_app
from junctionbox.store.tables import delivery_logs
from junctionbox.testing import Behaviour, RecordingSink

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"


def samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Any]], name: str, **labels: str) -> float:
    matching = [
        s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, found.get(name))
    return float(matching[0])


async def run_deliveries(obs: Obs, sink: RecordingSink) -> tuple[str, str]:
    """One delivery that succeeds; one that fails once (retried) and then for good."""
    good = await add_integration(
        obs.services, sink.url("/ok"), org_id=100, eventType="order.created"
    )
    bad = await add_integration(
        obs.services,
        sink.url("/down"),
        org_id=100,
        eventType="order.created",
        retryPolicy={"maxRetries": 1, "initialDelay": 1, "maxDelay": 1},
    )
    sink.on("/down", Behaviour(500), Behaviour(503))
    await obs.publish({"type": "order.created", "data": {"n": 1}}, traceparent=TRACEPARENT)
    await obs.deliver(horizon=3.0)
    return good.id, bad.id


async def test_metrics_traces_and_analytics_after_real_deliveries(
    db_url: str, tmp_path: Path
) -> None:
    async with RecordingSink() as sink, observed(db_url, tmp_path, [sink.allowlist_entry]) as obs:
        good, bad = await run_deliveries(obs, sink)
        await check_traceparent_reached_the_sink(obs, sink)
        check_span_tree(obs)
        await check_metrics(obs, good, bad)
        await check_analytics(obs, good, bad)


async def check_traceparent_reached_the_sink(obs: Obs, sink: RecordingSink) -> None:
    [received] = sink.requests_to("/ok")
    header = received.header("traceparent")
    assert header is not None
    version, trace_id, parent_id, flags = header.split("-")
    assert (version, trace_id, flags) == ("00", INCOMING_TRACE, "01")
    attempt = [s for s in obs.spans.get_finished_spans() if s.name == "delivery.attempt"]
    assert parent_id in {f"{s.context.span_id:016x}" for s in attempt}
    async with obs.services.db.read() as conn:
        ids = set((await conn.execute(select(delivery_logs.c.trace_id))).scalars())
    assert ids == {INCOMING_TRACE}  # the OTel trace id is the delivery log's


def check_span_tree(obs: Obs) -> None:
    spans = obs.spans.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {INCOMING_TRACE}
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [server] = by_name["POST /api/v1/integration/events/publish"]
    [ingest] = by_name["ingest"]
    assert f"{server.parent.span_id:016x}" == INCOMING_SPAN
    assert ingest.parent.span_id == server.context.span_id
    assert {s.parent.span_id for s in by_name["dispatch"]} == {ingest.context.span_id}
    attempts = by_name["delivery.attempt"]
    assert len(attempts) == 3  # one delivered, one retried, one failed for good
    assert {s.parent.span_id for s in attempts} == {ingest.context.span_id}
    outcomes = sorted(s.attributes["delivery.outcome"] for s in attempts)
    assert outcomes == ["DEAD_LETTER", "DELIVERED", "RETRY"]


async def check_metrics(obs: Obs, good: str, bad: str) -> None:
    key = obs.world.headers["key_a"]
    missing = await obs.client.post("/api/v1/alerts/alt_nope123/acknowledge", headers=key)
    assert missing.status_code == 404
    assert (await obs.client.get("/no/such/path/evt_123")).status_code == 404
    response = await obs.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "integration_requests_total", adapter_id=good, status="success") == 1
    assert value(found, "integration_requests_total", adapter_id=bad, status="failure") == 2
    assert value(found, "integration_retries_total", adapter_id=bad) == 1
    assert value(found, "integration_errors_total", adapter_id=bad, error_type="SERVER_ERROR") == 2
    assert value(found, "integration_circuit_breaker_state", adapter_id=good) == 0
    buckets = {s.labels["le"] for s in found["integration_request_duration_seconds_bucket"]}
    assert buckets == {"0.1", "0.5", "1.0", "2.0", "5.0", "10.0", "30.0", "+Inf"}
    assert value(found, "integration_request_duration_seconds_count", adapter_id=good) == 1
    assert value(found, "junctionbox_events_ingested_total") == 1
    assert value(found, "junctionbox_dlq_entries", status="PENDING_RETRY") == 1
    assert value(found, "junctionbox_worker_slots") == obs.services.settings.worker_concurrency
    assert "junctionbox_queue_jobs" in found or "junctionbox_queue_oldest_ready_age_seconds" in {
        f.name for f in text_string_to_metric_families(response.text)
    }
    publish = value(
        found,
        "junctionbox_http_requests_total",
        method="POST",
        route="/api/v1/integration/events/publish",
        status="201",
    )
    assert publish == 1
    # Bounded labels: route templates only, no event, delivery or tenant ids anywhere.
    labels = {v for series in found.values() for s in series for v in s.labels.values()}
    assert not [v for v in labels if v.startswith(("evt_", "dlv_", "msg_"))]
    assert "/api/v1/alerts/{alert_id}/acknowledge" in labels
    assert "unmatched" in labels
    assert not [v for v in labels if "alt_nope123" in v or "evt_123" in v]


async def check_analytics(obs: Obs, good: str, bad: str) -> None:
    async with obs.services.db.read() as conn:
        rows = (
            await conn.execute(
                select(
                    delivery_logs.c.integration_id, delivery_logs.c.status, func.count()
                ).group_by(delivery_logs.c.integration_id, delivery_logs.c.status)
            )
        ).all()
    logged = {(i, s): n for i, s, n in rows}
    key = obs.world.headers["key_a"]
    body = (
        await obs.client.get("/api/v1/analytics", params={"interval": "5m"}, headers=key)
    ).json()
    per = {i["integrationId"]: i for i in body["integrations"]}
    for integration in (good, bad):
        assert per[integration]["delivered"] == logged.get((integration, "SUCCESS"), 0)
        assert per[integration]["failed"] == logged.get((integration, "FAILED"), 0)
        assert per[integration]["retries"] == logged.get((integration, "RETRYING"), 0)
    assert body["totals"]["attempts"] == sum(logged.values()) == 3
    assert body["totals"]["successRate"] == 0.5
    assert sum(p["attempts"] for p in body["trends"]) == 3
    assert per[good]["latency"]["p95Ms"] is not None
    assert {c["category"] for c in body["errorCategories"]} == {"SERVER_ERROR"}
    dash = (await obs.client.get("/api/v1/dashboard", headers=key)).json()
    assert dash["kpis"]["attempts"] == 3
    assert dash["dlq"]["size"] == 1
    assert [i["integrationId"] for i in dash["topFailingIntegrations"]] == [bad]
    # The other tenant sees none of it.
    other = obs.world.headers["key_b"]
    theirs = (await obs.client.get("/api/v1/dashboard", headers=other)).json()
    assert theirs["kpis"]["attempts"] == 0
    assert theirs["dlq"]["size"] == 0


async def test_metrics_are_protected(db_url: str, tmp_path: Path) -> None:
    async with observed(db_url, tmp_path, []) as obs:
        remote = httpx.ASGITransport(app=create_app(obs.services), client=("10.1.2.3", 4000))
        async with httpx.AsyncClient(transport=remote, base_url="http://testserver") as http:
            refused = await http.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["code"] == "FORBIDDEN"
        obs.services.settings = obs.services.settings.model_copy(
            update={"metrics_token": SecretStr("scrape-token-123")}
        )
        remote = httpx.ASGITransport(app=create_app(obs.services), client=("10.1.2.3", 4000))
        async with httpx.AsyncClient(transport=remote, base_url="http://testserver") as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = {"authorization": "Bearer nope"}
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            right = {"authorization": "Bearer scrape-token-123"}
            ok = await http.get("/metrics", headers=right)
        assert ok.status_code == 200
        assert "integration_requests_total" in ok.text
