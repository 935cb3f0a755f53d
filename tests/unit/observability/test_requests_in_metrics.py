"""The recording methods the requests-in side adds, and how a gateway call is classified."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from junctionbox.observability.metrics import Metrics
from junctionbox.services.gateway_telemetry import UpstreamCall


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    text = metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError((name, labels))


def test_retries_webhooks_and_runs_are_counted() -> None:
    m = Metrics()
    m.retried("int_1", 2)
    m.retried("int_1", 1)
    m.webhook_received("accepted")
    m.webhook_received("refused", "UNAUTHORIZED")
    m.webhook_received("refused", "UNAUTHORIZED")
    for success in (True, True, False):
        m.run("scheduled_job", success=success, seconds=0.2)
    assert _value(m, "integration_retries_total", adapter_id="int_1") == 3
    assert _value(m, "junctionbox_webhooks_received_total", outcome="accepted", reason="") == 1
    refused = _value(
        m, "junctionbox_webhooks_received_total", outcome="refused", reason="UNAUTHORIZED"
    )
    assert refused == 2
    assert _value(m, "junctionbox_runs_total", kind="scheduled_job", status="success") == 2
    assert _value(m, "junctionbox_runs_total", kind="scheduled_job", status="failure") == 1
    assert _value(m, "junctionbox_run_duration_seconds_count", kind="scheduled_job") == 3


def test_retries_share_the_bounded_adapter_label() -> None:
    m = Metrics(max_adapters=1)
    m.retried("int_1", 1)
    m.retried("int_2", 1)
    assert _value(m, "integration_retries_total", adapter_id="other") == 1


def test_a_gateway_call_is_classified_by_its_answer() -> None:
    def category(status: int | None, error: str | None = None) -> str | None:
        call = UpstreamCall("rte_1", 0.0)
        call.status, call.error_type = status, error
        return call.category()

    assert category(200) is None
    assert category(404) == "CLIENT_ERROR"
    assert category(503) == "SERVER_ERROR"
    assert category(None, "TIMEOUT") == "TIMEOUT"
    assert category(None) == "NETWORK_ERROR"


def test_the_callers_traceparent_is_replaced() -> None:
    call = UpstreamCall("rte_1", 0.0)
    call.traceparent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    sent = call.headers([("TraceParent", "00-old"), ("x-a", "1")])
    assert sent == [("x-a", "1"), ("traceparent", call.traceparent)]
