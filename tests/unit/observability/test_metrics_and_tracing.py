"""The metrics facade (registry per instance, bounded labels) and the tracing facade
(configuration from OTEL_* variables, traceparent propagation)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from junctionbox.observability import tracing as tracing_module
from junctionbox.observability.metrics import OTHER, BoundedLabel, Metrics
from junctionbox.observability.tracing import (
    Tracing,
    fresh_trace_id,
    outbound_traceparent,
    stamp_traceparent,
    traces_enabled,
)
from junctionbox.services.outbound_request import PreparedRequest, with_header

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_bounded_label_folds_the_overflow_into_other() -> None:
    label = BoundedLabel(2)
    assert [label(v) for v in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]


def test_each_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.integration_request("int_a", success=True, seconds=0.2)
    text = two.exposition().decode()
    assert 'adapter_id="int_a"' not in text
    families = {f.name: f for f in text_string_to_metric_families(one.exposition().decode())}
    assert families["integration_requests"].samples[0].labels == {
        "adapter_id": "int_a",
        "status": "success",
    }


def test_http_requests_are_counted_by_method_route_and_status() -> None:
    metrics = Metrics(max_routes=1)
    for status in (200, 200, 404):
        metrics.http_request("POST", "/api/v1/things/{id}", status, 0.01)
    metrics.http_request("GET", "/api/v1/others", 200, 0.01)  # past the route limit
    metrics.http_request("GET", None, 404, 0.01)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["junctionbox_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert counts == {
        ("POST", "/api/v1/things/{id}", "200"): 2,
        ("POST", "/api/v1/things/{id}", "404"): 1,
        ("GET", "other", "200"): 1,
        ("GET", "unmatched", "404"): 1,
    }


def test_adapter_ids_beyond_the_limit_are_other() -> None:
    metrics = Metrics(max_adapters=1)
    metrics.integration_request("int_a", success=False, seconds=None, error_type="TIMEOUT")
    metrics.integration_request("int_b", success=False, seconds=None, error_type="TIMEOUT")
    text = metrics.exposition().decode()
    assert 'adapter_id="other"' in text
    assert "int_b" not in text


def test_tracing_is_off_unless_otel_variables_say_so() -> None:
    assert not traces_enabled({})
    assert not traces_enabled({"OTEL_TRACES_EXPORTER": "none"})
    assert traces_enabled({"OTEL_TRACES_EXPORTER": "console"})
    assert traces_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not traces_enabled({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert not Tracing.from_env({}).recording
    assert Tracing.from_env({"OTEL_TRACES_EXPORTER": "console"}).recording


def test_traceparent_is_carried_even_with_tracing_off() -> None:
    tracing = Tracing()  # off
    parent = Tracing.context_of_traceparent(PARENT)
    with tracing.span("delivery.attempt", parent=parent) as span:
        header, trace_id = outbound_traceparent(span)
    assert trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert header == PARENT
    with tracing.span("no parent") as span:
        header, trace_id = outbound_traceparent(span)
    assert header.startswith(f"00-{trace_id}-")
    assert header.endswith("-00")
    assert Tracing.context_of_traceparent("garbage") is None


def test_fresh_trace_ids_sort_by_time_and_stay_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len({fresh_trace_id() for _ in range(1000)}) == 1000
    moments = iter([1_700_000_000_000_000_000, 1_700_000_000_001_000_000])
    monkeypatch.setattr(tracing_module.time, "time_ns", lambda: next(moments))
    first, second = fresh_trace_id(), fresh_trace_id()
    assert first < second  # a millisecond later sorts after
    for trace_id in (first, second):
        assert len(trace_id) == 32
        assert int(trace_id, 16) != 0  # all zeros is invalid (W3C)
        assert Tracing.context_of_traceparent(f"00-{trace_id}-{'1' * 16}-00") is not None
    assert first[:12] == f"{1_700_000_000_000:012x}"  # the time first, the random part after


def test_events_get_the_current_span_as_traceparent_unless_they_have_one() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    mine: dict[str, object] = {}
    theirs: dict[str, object] = {"traceparent": PARENT}
    with tracing.span("ingest") as span:
        stamp_traceparent([mine, theirs])
    ids = f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}"
    assert str(mine["traceparent"]).startswith(ids)
    assert theirs["traceparent"] == PARENT
    untouched: dict[str, object] = {}
    stamp_traceparent([untouched])  # no current span: nothing to carry
    assert untouched == {}


def test_traceparent_header_goes_before_the_credential_headers() -> None:
    request = PreparedRequest(
        method="POST",
        url="https://example.com/hook",
        headers=[("content-type", "application/json"), ("authorization", "Bearer tok-123456789")],
        body=b"{}",
        signature=None,
        transformed=None,
        secret_values=("tok-123456789",),
        _credentials_from=1,
    )
    sent = with_header(request, "traceparent", PARENT)
    assert sent.headers[0] == ("traceparent", PARENT)
    assert sent.masked_headers() == [
        ("traceparent", PARENT),
        ("content-type", "application/json"),
        ("authorization", "Bearer ****"),
    ]


def test_a_failing_span_keeps_the_error_type_not_its_message() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    try:
        with tracing.span("work"):
            raise RuntimeError("postgresql://jb:hunter2-secret@db/jb unreachable")
    except RuntimeError:
        pass
    [span] = exporter.get_finished_spans()
    assert span.attributes["error.type"] == "RuntimeError"
    assert "hunter2" not in span.to_json()
