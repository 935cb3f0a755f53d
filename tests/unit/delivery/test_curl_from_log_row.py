"""An attempt leaves its request's curl command out of the stored trace only when the log
row's columns give it back exactly; the log's reader then rebuilds the same command."""

from __future__ import annotations

from typing import Any

import pytest

from junctionbox.engine.delivery_attempt import row_gives_curl
from junctionbox.services.delivery_logs import with_curl
from junctionbox.services.outbound_request import PreparedRequest
from junctionbox.store.queries.delivery_attempts import (
    MAX_LOGGED_BYTES,
    MAX_LOGGED_URL_BYTES,
    cap_headers,
    cap_text,
)
from junctionbox.store.queries.delivery_logs import LogRecord


def prepared(**changes: Any) -> PreparedRequest:
    values: dict[str, Any] = {
        "method": "POST",
        "url": "https://h.example/p?x=1&key=s%2Bcret",
        "headers": [
            ("content-type", "application/json"),
            ("webhook-id", "msg_1"),
            ("webhook-signature", "v1,abc="),
            ("authorization", "Bearer tok-123456"),
        ],
        "body": b'{"a": "it\'s $HOME", "b": "\\u00e9 \xc3\xa9"}',
        "signature": "v1,abc=",
        "transformed": None,
        "secret_values": ("s+cret", "tok-123456"),
    }
    values.update(changes)
    return PreparedRequest(**values)


def logged(request: PreparedRequest, stored_curl: str | None = None) -> LogRecord:
    """The log record of ``request`` as the worker stores it (the columns' caps) and reads
    it back, with the trace's request step holding ``stored_curl`` if given."""
    detail: dict[str, Any] = {"method": request.method, "url": request.masked_url()}
    if stored_curl is not None:
        detail["curl"] = stored_curl
    fields = dict.fromkeys(LogRecord.__dataclass_fields__)
    fields.update(
        id="dlv_1",
        org_id=1,
        direction="OUTBOUND",
        status="SUCCESS",
        attempt_count=1,
        http_method=request.method,
        target_url=cap_text(request.masked_url(), MAX_LOGGED_URL_BYTES),
        request_headers=cap_headers(request.masked_headers()),
        request_body=cap_text(request.body),
        steps=[{"step": "match", "detail": {}}, {"step": "request", "detail": detail}],
    )
    return LogRecord(**fields)


def curl_read_back(record: LogRecord) -> str:
    steps = with_curl(record)
    return str(steps[1]["detail"]["curl"])


@pytest.mark.parametrize(
    "request_",
    [
        prepared(),
        prepared(body=b""),
        prepared(method="PUT", headers=[("x-quote", "it's")]),
        prepared(body=b"x" * MAX_LOGGED_BYTES),
    ],
    ids=["json", "empty body", "quoted header", "body at the cap"],
)
def test_the_reader_rebuilds_exactly_the_command_left_out(request_: PreparedRequest) -> None:
    assert row_gives_curl(request_)
    assert curl_read_back(logged(request_)) == cap_text(request_.curl(masked=True))


@pytest.mark.parametrize(
    "request_",
    [
        prepared(body=b"\x00binary"),
        prepared(body=b"\xff\xfe not utf-8"),
        prepared(body=b"x" * (MAX_LOGGED_BYTES + 1)),
        prepared(headers=[("x-twice", "a"), ("x-twice", "b")]),
        prepared(url="https://h.example/" + "p" * MAX_LOGGED_URL_BYTES),
    ],
    ids=["NUL", "not UTF-8", "body over the cap", "repeated header", "URL over the cap"],
)
def test_a_command_the_row_cannot_give_back_is_kept_in_the_trace(
    request_: PreparedRequest,
) -> None:
    assert not row_gives_curl(request_)
    kept = cap_text(request_.curl(masked=True))
    assert curl_read_back(logged(request_, stored_curl=kept)) == kept


def test_a_stored_command_is_never_replaced() -> None:
    assert curl_read_back(logged(prepared(), stored_curl="curl from an older version")) == (
        "curl from an older version"
    )
