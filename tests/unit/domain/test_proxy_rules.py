"""The proxy's pure rules: framing, hop-by-hop headers, X-Forwarded-*, confined sub-paths,
retry decisions."""

from __future__ import annotations

import pytest

from junctionbox.domain.proxy import (
    TrustedProxies,
    check_framing,
    confined_path,
    forwardable_request_headers,
    forwardable_response_headers,
    forwarded_headers,
    should_retry,
)
from junctionbox.errors import ValidationError


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
        [("Content-Length", "5"), ("Content-Length", "6")],
        [("Content-Length", "5, 6")],
        [("Content-Length", "-1")],
        [("Content-Length", "0x10")],
        [("Transfer-Encoding", "gzip, chunked")],
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
        [("Transfer-Encoding", "xchunked")],
    ],
)
def test_ambiguous_framing_is_refused(headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError):
        check_framing(headers)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Content-Length", "5")],
        [("content-length", "5"), ("Content-Length", "5")],
        [("Transfer-Encoding", "Chunked")],
    ],
)
def test_plain_framing_passes(headers: list[tuple[str, str]]) -> None:
    check_framing(headers)


def test_request_headers_lose_hop_by_hop_and_credentials() -> None:
    incoming = [
        ("Host", "gw"),
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("Authorization", "Bearer platform"),
        ("X-API-Key", "platform"),
        ("Cookie", "session=1"),
        ("X-Partner-Key", "k"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("Content-Length", "3"),
        ("Accept", "application/json"),
        ("X-Trace", "t"),
    ]
    kept = forwardable_request_headers(incoming, drop={"x-partner-key"})
    assert kept == [("Accept", "application/json"), ("X-Trace", "t")]


def test_response_headers_lose_hop_by_hop() -> None:
    upstream = [
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close, X-Internal"),
        ("X-Internal", "1"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"),
    ]
    assert forwardable_response_headers(upstream) == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Encoding", "gzip"),
    ]
    assert forwardable_response_headers(upstream, {"content-encoding"})[-1] == ("Set-Cookie", "b=2")


def test_forwarded_headers_trust_only_configured_proxies() -> None:
    incoming = [
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example.com"),
    ]
    trusted = TrustedProxies.parse(["10.0.0.0/8", "not-an-address"])
    assert trusted.trusts("10.1.2.3")
    assert not trusted.trusts("192.0.2.1")
    assert not trusted.trusts(None)
    assert TrustedProxies.parse(["*"]).trusts("192.0.2.1")
    assert not TrustedProxies.parse([]).trusts("10.1.2.3")
    assert not TrustedProxies.parse(["proxy.internal"]).trusts("10.1.2.3")
    kept = forwarded_headers(incoming, peer="10.1.2.3", scheme="http", host="gw", trusted=True)
    assert kept == [
        ("X-Forwarded-For", "203.0.113.7, 10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "api.example.com"),
    ]
    replaced = forwarded_headers(
        incoming, peer="192.0.2.1", scheme="http", host="gw", trusted=False
    )
    assert replaced == [
        ("X-Forwarded-For", "192.0.2.1"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "gw"),
    ]
    anonymous = forwarded_headers(incoming, peer=None, scheme="https", host=None, trusted=False)
    assert anonymous == [("X-Forwarded-For", "unknown"), ("X-Forwarded-Proto", "https")]


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        ("", "/api"),
        ("a/b", "/api/a/b"),
        ("a//b/", "/api/a/b"),
        ("caf%C3%A9/x%20y", "/api/caf%C3%A9/x%20y"),
        ("a;b=c", "/api/a;b=c"),
        ("%3F%23", "/api/%3F%23"),  # ? and # stay data, never a query or fragment
    ],
)
def test_sub_paths_are_appended_inside_the_base(sub: str, expected: str) -> None:
    assert confined_path("/api", sub) == expected


@pytest.mark.parametrize(
    "sub",
    [
        "..",
        "a/../..",
        "%2e%2e",
        "%2E%2e/x",
        ".",
        "a%2fb",
        "a%2Fb",
        "..%5cx",
        "a%5c",
        "%00",
        "a/%2e",
        "%ff",
    ],
)
def test_traversal_is_refused(sub: str) -> None:
    with pytest.raises(ValidationError):
        confined_path("/api/v1", sub)


def test_root_base_path() -> None:
    assert confined_path("/", "x") == "/x"
    assert confined_path("", "") == "/"


@pytest.mark.parametrize(
    ("method", "status", "non_idempotent", "expected"),
    [
        ("GET", None, False, True),
        ("GET", 502, False, True),
        ("GET", 404, False, False),
        ("PUT", 500, False, True),
        ("DELETE", None, False, True),
        ("POST", 500, False, False),
        ("POST", None, False, False),
        ("PATCH", 503, True, True),
        ("POST", 200, True, False),
    ],
)
def test_retry_decision(
    method: str, status: int | None, non_idempotent: bool, expected: bool
) -> None:
    assert should_retry(method, status=status, retry_non_idempotent=non_idempotent) is expected


@pytest.mark.parametrize(
    "drop", [{"x-partner-key"}, frozenset({"x-partner-key"}), ["x-partner-key"]]
)
def test_request_headers_without_connection_header_filter_the_same(drop: object) -> None:
    # The path without a Connection header builds no skip set: the same result as with an
    # empty Connection header (the general path).
    incoming = [
        ("Host", "gw"),
        ("X-API-Key", "platform"),
        ("x-partner-key", "k"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "3"),
        ("Accept", "application/json"),
        ("X-Trace", "t"),
        ("X-Trace", "u"),
    ]
    expected = [("Accept", "application/json"), ("X-Trace", "t"), ("X-Trace", "u")]
    assert forwardable_request_headers(incoming, drop=drop) == expected  # type: ignore[arg-type]
    general = forwardable_request_headers([*incoming, ("Connection", "")], drop=drop)  # type: ignore[arg-type]
    assert general == expected


@pytest.mark.parametrize(
    "headers",
    [[("content-length", "5")], [("Content-Length", " 5 ")], [("content-length", "\uff10")]],
)
def test_one_plain_length_takes_the_short_path_with_the_same_answer(
    headers: list[tuple[str, str]],
) -> None:
    try:
        check_framing(headers)
    except ValidationError:
        refused = True
    else:
        refused = False
    # What the general rule says: one value, digits only.
    assert refused is not headers[0][1].strip().isdigit()
