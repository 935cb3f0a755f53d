"""The service registry's pure rules: weighted order, probe thresholds, TTL and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from junctionbox.domain.service_registry import (
    Endpoint,
    HealthCheckPolicy,
    ProbeState,
    check_failing,
    effective_status,
    heartbeat_expired,
    probe_urls,
    usable_endpoints,
    weighted_order,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
A, B = Endpoint("http://a", 1), Endpoint("http://b", 1)


def test_weighted_order_is_smooth_and_proportional() -> None:
    assert weighted_order([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]
    assert weighted_order([2, 2]) == [0, 1]  # reduced by the common divisor
    assert weighted_order([1]) == [0]
    order = weighted_order([3, 1])
    assert order.count(0) == 3
    assert order.count(1) == 1


def test_probe_state_needs_thresholds_in_a_row() -> None:
    policy = HealthCheckPolicy(unhealthy_threshold=2, healthy_threshold=3)
    state = ProbeState()
    state = state.after(False, 500, "HTTP 500", NOW, policy)
    assert state.healthy
    assert state.failures == 1
    state = state.after(True, 200, None, NOW, policy).after(False, 500, "x", NOW, policy)
    assert state.healthy  # the success broke the run
    state = state.after(False, None, "timeout", NOW, policy)
    assert not state.healthy
    assert state.last_error == "timeout"
    for _ in range(2):
        state = state.after(True, 200, None, NOW, policy)
    assert not state.healthy
    state = state.after(True, 200, None, NOW, policy)
    assert state.healthy
    assert state.failures == 0
    assert ProbeState.from_json(state.as_json()) == state


def test_probe_urls_per_endpoint_or_once() -> None:
    assert probe_urls([A, B], "/health") == {
        "http://a/health": "http://a",
        "http://b/health": "http://b",
    }
    assert probe_urls([A, B], "http://c/status") == {"http://c/status": None}
    assert probe_urls([A], None) == {}


def test_usable_endpoints_skip_down_ones_but_never_leave_none() -> None:
    down = {"probes": {"http://a/health": {"healthy": False}}}
    assert usable_endpoints([A, B], "/health", down) == [B]
    all_down = {
        "probes": {"http://a/health": {"healthy": False}, "http://b/health": {"healthy": False}}
    }
    assert usable_endpoints([A, B], "/health", all_down) == [A, B]
    assert check_failing([A, B], "/health", all_down)
    assert not check_failing([A, B], "/health", down)
    assert not check_failing([A, B], "/health", {})  # never checked yet


def test_heartbeat_ttl_and_effective_status() -> None:
    assert not heartbeat_expired(None, None, NOW - timedelta(days=9), NOW)
    assert not heartbeat_expired(30, None, NOW - timedelta(seconds=10), NOW)
    assert heartbeat_expired(30, None, NOW - timedelta(seconds=31), NOW)
    assert not heartbeat_expired(30, NOW - timedelta(seconds=5), NOW - timedelta(days=1), NOW)
    assert effective_status("ACTIVE", heartbeat_late=True, check_failing=False) == "UNHEALTHY"
    assert effective_status("ACTIVE", heartbeat_late=False, check_failing=True) == "UNHEALTHY"
    assert effective_status("ACTIVE", heartbeat_late=False, check_failing=False) == "ACTIVE"
    assert effective_status("INACTIVE", heartbeat_late=True, check_failing=True) == "INACTIVE"
