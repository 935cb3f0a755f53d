"""Pure parts of the console: session and CSRF tokens, form mapping, chart markup and the
dashboard's aggregation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from junctionbox.console import charts
from junctionbox.console.forms import integration_body, integration_values
from junctionbox.console.job_forms import job_body, job_values
from junctionbox.console.session import SessionCodec, SessionData, session_id
from junctionbox.console.viewmodel import chart_start, checks_of, summarize
from junctionbox.services.monitor import Check

KEY = "k" * 40


def test_session_round_trip_and_tampering() -> None:
    codec = SessionCodec(KEY)
    data = SessionData("jwt.token.here", codec.password_stamp("$argon2id$hash"))
    value = codec.encode(data)
    assert codec.decode(value) == data
    body, _, sig = value.rpartition(".")
    assert codec.decode(f"{body}x.{sig}") is None
    assert codec.decode(f"{body}.{'0' * len(sig)}") is None
    assert SessionCodec("other" * 10).decode(value) is None
    assert codec.decode(None) is None
    assert codec.decode("garbage") is None


def test_password_stamp_changes_with_the_hash() -> None:
    codec = SessionCodec(KEY)
    assert codec.password_stamp("a") != codec.password_stamp("b")
    assert codec.password_stamp("a") == codec.password_stamp("a")
    # keyed: nothing in the cookie can be computed from the hash alone
    assert SessionCodec("other" * 10).password_stamp("a") != codec.password_stamp("a")


def test_csrf_token_is_bound_to_nonce_and_session() -> None:
    codec = SessionCodec(KEY)
    nonce = codec.new_nonce()
    mine = session_id(SessionData("token-1", "p"))
    token = codec.csrf_token(nonce, mine)
    assert codec.csrf_valid(token, nonce, mine)
    assert not codec.csrf_valid(token, codec.new_nonce(), mine)  # another browser's cookie
    assert not codec.csrf_valid(token, nonce, session_id(SessionData("token-2", "p")))
    assert not codec.csrf_valid(None, nonce, mine)
    assert not codec.csrf_valid(token, None, mine)
    assert not codec.csrf_valid(f"{nonce}.{'0' * 64}", nonce, mine)


def test_integration_body_maps_fields_and_reports_bad_json() -> None:
    body, problems = integration_body(
        {
            "name": "n",
            "eventType": "a.*",
            "targetUrl": "https://x.example",
            "timeoutMs": "5000",
            "retryPolicy.maxRetries": "2",
            "fieldMappings": "[{",
            "outgoingAuthType": "BEARER",
            "outgoingAuthConfig": '{"token": "t"}',
        }
    )
    assert body["timeoutMs"] == 5000
    assert body["retryPolicy"] == {"maxRetries": 2}
    assert body["outgoingAuthConfig"] == {"token": "t"}
    assert body["httpMethod"] == "POST"
    assert set(problems) == {"fieldMappings"}


def test_integration_values_round_trip() -> None:
    document = {
        "name": "n",
        "eventType": "a.*",
        "targetUrl": "https://x.example",
        "httpMethod": "PUT",
        "retryPolicy": {"maxRetries": 3, "initialDelay": 1000, "maxDelay": 9000},
        "schedulingMode": "DELAYED",
        "schedulingConfig": {"delayMs": 1000},
    }
    values = integration_values(document)
    body, problems = integration_body(values)
    assert problems == {}
    assert body["httpMethod"] == "PUT"
    assert body["retryPolicy"] == {"maxRetries": 3, "initialDelay": 1000, "maxDelay": 9000}
    assert body["schedulingConfig"] == {"delayMs": 1000}


def test_charts_escape_text_and_draw_each_value() -> None:
    svg = charts.stacked_bars(
        ["01:00", "02:00"],
        [charts.Series("SUCCESS", [2, 0]), charts.Series("FAILED", [1, 3])],
        title="<script>",
    )
    assert "<script>" not in svg
    assert svg.count("<rect") == 3  # zero-height bars are not drawn
    bars = charts.hbars([("<b>int</b>", 4.0)], title="t")
    assert "<b>" not in bars
    assert "4" in bars
    assert "nothing to show" in charts.hbars([], title="t")


def test_lines_leave_gaps_where_there_is_no_value() -> None:
    svg = charts.lines(
        ["a", "b", "c", "d"], [charts.Series("p50", [5, 0, 7, 8])], title="t", unit=" ms"
    )
    assert svg.count("<polyline") == 2  # [5] and [7, 8]
    assert svg.count("<circle") == 3


def test_summarize_places_the_hourly_trends_in_24_slots() -> None:
    now = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    start = chart_start(now)
    assert start == datetime(2026, 1, 1, 12, tzinfo=UTC) - timedelta(hours=23)

    def point(
        hours_ago: int, delivered: int, failed: int, retries: int, p99: float | None
    ) -> dict[str, Any]:
        return {
            "bucketStart": now.replace(minute=0) - timedelta(hours=hours_ago),
            "delivered": delivered,
            "failed": failed,
            "retries": retries,
            "latency": {"p50Ms": p99, "p95Ms": p99, "p99Ms": p99},
        }

    trends = [point(0, 3, 1, 2, 250.0), point(1, 5, 0, 0, None), point(30, 9, 9, 9, 9.0)]
    summary = summarize(trends, start)
    assert len(summary.hours) == 24
    assert summary.hours[-1] == "12:00"
    assert summary.by_status["SUCCESS"][-2:] == [5, 3]
    assert summary.by_status["FAILED"][-1] == 1
    assert summary.by_status["RETRYING"][-1] == 2
    assert summary.p99[-2:] == [0.0, 250.0]  # an hour without latency is a gap
    assert sum(summary.by_status["SUCCESS"]) == 8  # 30 hours ago is outside the charts


def test_health_boxes_hide_platform_figures_from_users() -> None:
    health = {
        "database": Check("pass", latency_ms=1.5),
        "queue": Check("warn", message="oldest due job waits 90s"),
        "workers": Check("pass", details={"worker": 2, "scheduler": 1}),
    }
    admin = {b.name: b for b in checks_of(health, admin=True)}
    assert admin["Database"].detail == "answers in 1.5 ms"
    assert admin["Queue"].detail == "oldest due job waits 90s"
    assert not admin["Queue"].healthy
    assert admin["Workers"].detail == "2 worker, 1 scheduler"
    user = {b.name: b for b in checks_of(health, admin=False)}
    assert user["Queue"].detail == "slow"
    assert user["Workers"].detail == "working"
    assert user["Database"].detail == "answers in 1.5 ms"


def test_job_form_round_trip() -> None:
    values = {
        "name": "export",
        "targetUrl": "https://partner.example.com/in",
        "schedule.type": "INTERVAL",
        "schedule.intervalMs": "60000",
        "schedule.expression": "ignored for INTERVAL",
        "schedule.catchUp": "SKIP",
        "dataSource.type": "API",
        "dataSource.url": "https://api.example.com/orders",
        "dataSource.method": "POST",
        "dataSource.headers": '{"accept": "application/json"}',
        "dataSource.body": '{"since": "{{date.yesterday}}"}',
        "dataSource.query": "SELECT 1",
        "transformation.mode": "JSONATA",
        "transformation.script": "data",
        "outgoingAuthType": "NONE",
        "outgoingAuthConfig": '{"token": "x"}',
        "retryPolicy.maxRetries": "3",
    }
    body, problems = job_body(values)
    assert problems == {}
    assert body["schedule"] == {
        "type": "INTERVAL",
        "timezone": None,
        "catchUp": "SKIP",
        "intervalMs": 60000,
    }
    assert body["dataSource"] == {
        "type": "API",
        "url": "https://api.example.com/orders",
        "method": "POST",
        "headers": {"accept": "application/json"},
        "body": {"since": "{{date.yesterday}}"},
    }
    assert body["outgoingAuthConfig"] is None  # NONE sends no credentials
    assert body["retryPolicy"] == {"maxRetries": 3}
    assert body["transformation"] == {"mode": "JSONATA", "script": "data"}
    back = job_values({**body, "dataSource": body["dataSource"]})
    assert back["schedule.intervalMs"] == "60000"
    assert back["dataSource.url"] == "https://api.example.com/orders"
    assert '"accept"' in back["dataSource.headers"]
    sql, _ = job_body({"dataSource.type": "SQL", "dataSource.query": "SELECT 1"})
    assert sql["dataSource"] == {"type": "SQL", "query": "SELECT 1"}  # no connection: ours
    assert sql["transformation"] is None
    _, bad = job_body({"dataSource.headers": "{nope", "outgoingAuthConfig": "["})
    assert set(bad) == {"dataSource.headers", "outgoingAuthConfig"}
