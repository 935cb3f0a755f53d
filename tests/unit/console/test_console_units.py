"""Pure parts of the console: session and CSRF tokens, form mapping, chart markup and the
dashboard's aggregation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from junctionbox.console import charts
from junctionbox.console.forms import integration_body, integration_values
from junctionbox.console.session import SessionCodec, SessionData, password_print, session_id
from junctionbox.console.viewmodel import percentile, summarize
from junctionbox.store.queries.dashboard import AttemptPoint

KEY = "k" * 40


def test_session_round_trip_and_tampering() -> None:
    codec = SessionCodec(KEY)
    data = SessionData("jwt.token.here", password_print("$argon2id$hash"))
    value = codec.encode(data)
    assert codec.decode(value) == data
    body, _, sig = value.rpartition(".")
    assert codec.decode(f"{body}x.{sig}") is None
    assert codec.decode(f"{body}.{'0' * len(sig)}") is None
    assert SessionCodec("other" * 10).decode(value) is None
    assert codec.decode(None) is None
    assert codec.decode("garbage") is None


def test_password_print_changes_with_the_hash() -> None:
    assert password_print("a") != password_print("b")
    assert password_print("a") == password_print("a")


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


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile([], 0.5) == 0


def test_summarize_buckets_by_hour_and_ranks_failures() -> None:
    now = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)

    def point(minutes_ago: int, status: str, ms: int | None, name: str) -> AttemptPoint:
        return AttemptPoint(now - timedelta(minutes=minutes_ago), status, ms, "int_" + name, name)

    points = [
        point(0, "SUCCESS", 10, "a"),
        point(5, "FAILED", 200, "b"),
        point(6, "RETRYING", 100, "b"),
        point(65, "SUCCESS", 30, "a"),
        point(70, "ABANDONED", None, "c"),
        point(60 * 30, "SUCCESS", 1, "a"),  # outside the 24 hours
    ]
    summary = summarize(points, now)
    assert summary.hours[-1] == "12:00"
    assert summary.by_status["SUCCESS"][-1] == 1
    assert summary.by_status["FAILED"][-1] == 1
    assert summary.by_status["RETRYING"][-1] == 1
    assert summary.by_status["FAILED"][-2] == 1  # ABANDONED counts as failed
    assert summary.total == 5
    assert summary.success_rate == 2 / 5
    assert summary.p99[-1] == 200
    assert summary.top_failing == [("b", 2), ("c", 1)]
    assert summarize([], now).success_rate is None
