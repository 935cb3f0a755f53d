from __future__ import annotations

import io
import json
import logging

from junctionbox.observability import context
from junctionbox.observability.logging import configure_logging


def test_json_lines_carry_context_and_never_secrets() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    log = logging.getLogger("junctionbox.test")
    with context.bound(request_id="req_1", correlation_id="cor_1", org_id=648):
        log.info(
            "calling with Bearer abcdefghijklmnop",
            extra={
                "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "x"},
                "password": "p4ss",
            },
        )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["request_id"] == "req_1"
    assert line["correlation_id"] == "cor_1"
    assert line["org_id"] == 648
    assert "abcdefghijklmnop" not in stream.getvalue()
    assert "dXNlcjpwYXNz" not in stream.getvalue()
    assert "p4ss" not in stream.getvalue()
    assert line["headers"]["Accept"] == "x"


def test_bind_sets_only_what_it_is_given() -> None:
    with context.bound(request_id="req_1", correlation_id="cor_1", org_id=7):
        context.bind(principal_id="usr_1")
        assert context.current() == context.LogContext("req_1", "cor_1", 7, "usr_1")
        context.bind(org_id=None)
        assert context.current() == context.LogContext("req_1", "cor_1", None, "usr_1")
    assert context.current() == context.LogContext()
