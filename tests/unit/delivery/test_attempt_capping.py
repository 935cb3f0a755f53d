"""What an attempt's log row keeps: bodies and headers capped at 64 KB, no NUL characters
(PostgreSQL refuses them in text and JSONB), header names as plain strings."""

from __future__ import annotations

from datetime import UTC, datetime

from multidict import CIMultiDict
from tests.support import attempt_row

from junctionbox.store.queries.delivery_attempts import (
    MAX_LOGGED_BYTES,
    TRUNCATION_MARK,
    attempt_values,
    cap_headers,
    cap_text,
)


def test_short_text_is_kept_and_bytes_are_decoded_leniently() -> None:
    assert cap_text("hello") == "hello"
    assert cap_text(b"caf\xc3\xa9") == "café"
    assert cap_text(b"\xff\xfe") == "\ufffd\ufffd"
    assert cap_text(None) is None


def test_nul_characters_are_replaced() -> None:
    assert cap_text("a\x00b") == "a\ufffdb"
    assert cap_text(b"a\x00b") == "a\ufffdb"


def test_long_bodies_are_cut_at_64_kb_on_a_character_boundary() -> None:
    body = ("é" * 40_000).encode()  # 80,000 bytes
    capped = cap_text(body)
    assert capped is not None
    assert capped.endswith(TRUNCATION_MARK)
    kept = capped.removesuffix(TRUNCATION_MARK)
    assert set(kept) == {"é"}
    assert len(kept.encode()) <= MAX_LOGGED_BYTES


def test_headers_merge_repeats_and_stop_at_the_cap() -> None:
    assert cap_headers([("Set-Cookie", "a"), ("Set-Cookie", "b"), ("X", "1")]) == {
        "Set-Cookie": "a, b",
        "X": "1",
    }
    many = [(f"x-h{n}", "v" * 1000) for n in range(100)]
    capped = cap_headers(many)
    assert capped is not None
    assert capped["x-jb-omitted-headers"] == str(100 - (len(capped) - 1))
    assert sum(len(k) + len(v) for k, v in capped.items()) <= MAX_LOGGED_BYTES + 100


def test_header_names_become_plain_strings() -> None:
    received = CIMultiDict([("Content-Type", "text/plain")])
    [name] = cap_headers(received.items()) or {}
    assert type(name) is str


def test_row_values_are_capped() -> None:
    row = attempt_row(
        "dlv_1",
        integration_name="n" * 300,
        job_id="job_1",
        event_type="t",
        status="FAILED",
        target_url="https://example.com/",
        response_status=500,
        error_message="boom\x00",
        error_category="SERVER_ERROR",
        original_payload=b"x" * 100_000,
        request_headers=[("a", "b")],
        response_headers=[("c", "d")],
        response_body=b"y" * 100_000,
        trace_id="t" * 32,
        action_name="a",
        action_index=0,
        steps=[],
        created_at=datetime.now(UTC),
    )
    values = attempt_values(row)
    assert len(values["integration_name"]) == 200
    assert values["error_message"] == "boom\ufffd"
    assert len(values["original_payload"].encode()) <= MAX_LOGGED_BYTES + len(TRUNCATION_MARK) * 3
    assert values["response_body"].endswith(TRUNCATION_MARK)
    assert values["request_headers"] == {"a": "b"}
    assert values["request_body"] == "{}"
