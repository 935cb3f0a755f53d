"""The gateway's pure values: path patterns, header rules, IP rules, CORS, versioning,
round robin with passive health, and the latency rollups."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from junctionbox.domain.gateway import (
    Balancer,
    CorsPolicy,
    HeaderOps,
    IpRules,
    TargetHealth,
    Versioning,
    compile_pattern,
    header_ops,
    parse_networks,
    safe_request_path,
)
from junctionbox.domain.route_stats import BOUNDS_MS, Rollup, percentile, summary
from junctionbox.errors import ValidationError


@pytest.mark.parametrize(
    ("pattern", "path", "params"),
    [
        ("/orders/{id}", "/orders/7", {"id": "7"}),
        ("/orders/{id}", "/orders/7/", {"id": "7"}),
        ("/orders/{id}", "/orders", None),
        ("/orders/{id}", "/orders/7/lines", None),
        ("/a/{x}/b/{y}", "/a/1/b/2", {"x": "1", "y": "2"}),
        ("/files/*", "/files", {"rest": None}),
        ("/files/*", "/files/a/b.txt", {"rest": "a/b.txt"}),
        ("/files/*", "/filesx", None),
        ("/", "/", {}),
        ("/", "/x", None),
        ("/v1.0/items", "/v1x0/items", None),  # literals are escaped
    ],
)
def test_patterns_match(pattern: str, path: str, params: dict[str, str | None] | None) -> None:
    assert compile_pattern(pattern).match(path) == params


@pytest.mark.parametrize(
    "bad",
    ["orders", "/a/../b", "/a/./b", "/a//b", "/{1x}", "/{a}/{a}", "/a/*/b", "/a b", "/{rest}"],
)
def test_bad_patterns_are_refused_with_their_location(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_pattern(bad)
    assert caught.value.problems[0].loc == ("body", "path")


def test_more_literal_segments_are_more_specific() -> None:
    assert compile_pattern("/a/b").literals > compile_pattern("/a/{x}").literals


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("/a/b", True),
        ("/a/../b", False),
        ("/a/%2e%2e/b", False),
        ("/a%2Fb", False),
        ("/a\\b", False),
    ],
)
def test_request_path_safety(path: str, safe: bool) -> None:
    assert safe_request_path(path) is safe


def test_header_rules() -> None:
    ops = header_ops({"X-New": "1"}, ["X-Old"], ("body", "h"))
    assert ops.apply([("X-Old", "a"), ("x-new", "b"), ("Keep", "c")]) == [
        ("Keep", "c"),
        ("X-New", "1"),
    ]
    with pytest.raises(ValidationError) as caught:
        header_ops({"X-A": "1\r\nX-B: 2"}, [], ("body", "h"))
    assert caught.value.problems[0].loc == ("body", "h", "set", "X-A")
    for name in ("Bad Name", "Transfer-Encoding", "Host"):
        with pytest.raises(ValidationError):
            header_ops({name: "v"}, [], ("body", "h"))
    assert HeaderOps().apply([("A", "1")]) == [("A", "1")]


def test_ip_rules() -> None:
    rules = IpRules(
        allow=parse_networks(["10.0.0.0/8", "2001:db8::/32"], ("allow",)),
        deny=parse_networks(["10.1.0.0/16"], ("deny",)),
    )
    assert rules.permits("10.2.3.4")
    assert not rules.permits("10.1.2.3")  # deny wins
    assert not rules.permits("192.0.2.1")  # not in the allow list
    assert rules.permits("2001:db8::1")
    assert rules.permits("::ffff:10.2.3.4")  # IPv4-mapped counts as IPv4
    assert IpRules().permits("192.0.2.1")
    with pytest.raises(ValidationError) as caught:
        parse_networks(["10.0.0.0/33"], ("body", "deny"))
    assert caught.value.problems[0].loc == ("body", "deny", 0)


def test_cors() -> None:
    policy = CorsPolicy(origins=("https://a.example",), credentials=True)
    headers = policy.preflight("https://a.example", "POST", ["GET", "POST"])
    assert headers["access-control-allow-origin"] == "https://a.example"
    assert headers["access-control-allow-methods"] == "GET, POST"
    assert policy.preflight("https://b.example", "POST", ["POST"]) == {}
    assert policy.preflight("https://a.example", "DELETE", ["POST"]) == {}
    assert policy.response_headers("https://b.example") == {}
    anyone = CorsPolicy(origins=("*",))
    assert anyone.response_headers("https://z")["access-control-allow-origin"] == "*"


def test_versioning_headers() -> None:
    assert Versioning().headers() == {}
    headers = Versioning(
        strategy="path",
        version="v1",
        deprecated_at=datetime(2026, 1, 1, tzinfo=UTC),
        sunset=datetime(2027, 1, 1, tzinfo=UTC),
        link="https://docs",
    ).headers()
    assert headers == {
        "deprecation": "@1767225600",
        "sunset": "Fri, 01 Jan 2027 00:00:00 GMT",
        "link": '<https://docs>; rel="deprecation"',
    }
    assert Versioning(deprecated=True).headers() == {"deprecation": "true"}


def test_round_robin_skips_targets_marked_down() -> None:
    balancer = Balancer([TargetHealth("a"), TargetHealth("b"), TargetHealth("c")], threshold=2)
    assert [balancer.pick(0).url for _ in range(4)] == ["a", "b", "c", "a"]
    b = balancer.targets[1]
    b.record(False, 0, 2, 30, "reset")
    assert b.is_up(0)  # one failure is not enough
    b.record(False, 0, 2, 30, "reset")
    assert not b.is_up(0)
    assert [balancer.pick(1).url for _ in range(4)] == ["c", "a", "c", "a"]
    assert b.is_up(30)  # the cool-down is over: tried again
    for target in balancer.targets:
        target.record(False, 40, 1, 30, "down")
    assert balancer.pick(41).url == "a"  # all down: the one down longest is tried


def test_rollups_and_percentiles() -> None:
    rollup = Rollup()
    for ms in range(1, 101):  # 1..100 ms
        rollup.record(200 if ms <= 90 else 503, float(ms), f"c{ms % 3}")
    rollup.record(404, 5.0, "c0")
    result = summary(rollup)
    assert result["requests"] == 101
    assert result["errors"] == 10
    assert result["clientErrors"] == 1
    assert result["errorRate"] == round(10 / 101, 4)
    p50, p95, p99 = result["p50Ms"], result["p95Ms"], result["p99Ms"]
    assert isinstance(p50, float)
    assert isinstance(p95, float)
    assert isinstance(p99, float)
    assert 30 <= p50 <= 75  # within the bucket holding the 50th value (50 ms)
    assert 75 <= p95 <= 100
    assert p50 <= p95 <= p99 <= 100
    assert result["topClients"][0] == {"client": "c0", "requests": 34}
    merged = rollup.merge(rollup)
    assert merged.requests == 202
    assert percentile(merged.histogram, 0.5) == p50
    assert percentile([0] * (len(BOUNDS_MS) + 1), 0.5) is None
