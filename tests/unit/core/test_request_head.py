"""The outbound request head: framing replaced, defaults added only where the caller set
none, CR/LF refused."""

from __future__ import annotations

import pytest

from junctionbox.connectors.http1 import request_head

DEFAULTS = (("accept", "Accept", "*/*"), ("user-agent", "User-Agent", "junctionbox"))


def test_defaults_follow_the_callers_headers_unless_the_caller_set_them() -> None:
    head = request_head("POST", "/a", "h:1", [("X-One", "1"), ("USER-AGENT", "me")], 2, DEFAULTS)
    assert head.decode("utf-8").split("\r\n") == [
        "POST /a HTTP/1.1",
        "Host: h:1",
        "X-One: 1",
        "USER-AGENT: me",
        "Accept: */*",
        "Content-Length: 2",
        "",
        "",
    ]


def test_framing_headers_are_replaced_and_the_callers_host_kept() -> None:
    headers = [("Host", "other"), ("Content-Length", "99"), ("Connection", "close")]
    head = request_head("GET", "/", "h:1", headers, 0).decode("utf-8")
    assert head == "GET / HTTP/1.1\r\nHost: other\r\n\r\n"


def test_a_line_break_in_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="newline"):
        request_head("GET", "/", "h", [("X", "a\r\nInjected: 1")], 0, DEFAULTS)
