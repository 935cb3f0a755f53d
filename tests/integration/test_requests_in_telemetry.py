"""Traces and metrics of the requests-in side, on SQLite and PostgreSQL: a proxied call
(inbound proxy), a gateway route call, a received webhook followed to its delivery, and a
scheduled job run. Spans from OpenTelemetry's in-memory exporter, the ``traceparent`` that
reached a recording upstream, the trace id in the logs, ``/metrics`` parsed with
``prometheus_client``'s parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select
from tests.integration.delivery_helpers import add_integration
from tests.integration.inbound_helpers import integration
from tests.integration.obs_helpers import Obs, observed
from tests.integration.webhook_helpers import (
    SENDERS,
    create_source,
    inbound_lines,
    logged_events,
    receive_path,
    source_fields,
)
from tests.integration.test_observability import INCOMING_SPAN, INCOMING_TRACE, TRACEPARENT, samples, value

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
            rows = (await conn.execute(select(delivery_logs.c.trace_id, delivery_logs.c.direction))).all()
        assert [tuple(r) for r in rows] == [(INCOMING_TRACE, "INBOUND")]

        found = await metrics(obs)
        assert value(found, "integration_requests_total", adapter_id=integration_id, status="success") == 1
        assert value(found, "integration_retries_total", adapter_id=integration_id) == 1
        assert value(found, "integration_request_duration_seconds_count", adapter_id=integration_id) == 1
        assert value(found, "junctionbox_runs_total", kind="proxy", status="success") == 1


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
            f"{PROXY}/appointment-booking?orgId=100", content=b"{}", headers=obs.world.headers["key_a"]
        )
        assert response.status_code == 502
        [call] = by_name(obs)["proxy.call"]
        assert call.status.status_code.name == "ERROR"
        [seen] = sink.requests_to("/book")
        header = seen.header("traceparent")
        assert header is not None and header.split("-")[2] == hex_span(call)
        async with obs.services.db.read() as conn:
            [trace_id] = (await conn.execute(select(delivery_logs.c.trace_id))).scalars()
        assert trace_id == f"{call.context.trace_id:032x}"
        found = await metrics(obs)
        assert value(found, "integration_requests_total", adapter_id=integration_id, status="failure") == 1
        errors = value(found, "integration_errors_total", adapter_id=integration_id, error_type="SERVER_ERROR")
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
        sent = await obs.client.post(path, content=body, headers={**headers, "traceparent": TRACEPARENT})
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
        [server] = [
            s for s in spans["POST /api/v1/webhooks/{source_id}"] if s.parent is not None
        ]
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
        assert [line["trace_id"] for line in lines][0] == INCOMING_TRACE
        assert all(line["trace_id"] for line in lines)

        found = await metrics(obs)
        received_total = "junctionbox_webhooks_received_total"
        assert value(found, received_total, outcome="accepted", reason="") == 1
        assert value(found, received_total, outcome="duplicate", reason="") == 1
        assert value(found, received_total, outcome="refused", reason="UNAUTHORIZED") == 1
