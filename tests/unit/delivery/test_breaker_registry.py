"""The process's circuit breakers: decisions, what is written to the table and when, and
adopting other nodes' changes."""

from __future__ import annotations

from datetime import UTC, datetime

from junctionbox.domain.circuit_breaker import BreakerConfig, CircuitState
from junctionbox.services.breakers import IDLE_SECONDS, Breakers, origin_of

T0 = 1_700_000_000.0
KEY = (100, "https://hooks.example.com:443")
CONFIG = BreakerConfig(failure_threshold=2, success_threshold=1, reset_timeout=10)


def test_origins_are_scheme_host_and_explicit_port() -> None:
    assert origin_of("https://Hooks.Example.com/a?b=c") == "https://hooks.example.com:443"
    assert origin_of("http://example.com:8080/x") == "http://example.com:8080"
    assert origin_of("http://[::1]:9000/x") == "http://[::1]:9000"


def test_failures_open_the_circuit_and_a_probe_closes_it() -> None:
    breakers = Breakers(CONFIG)
    assert breakers.check(KEY, T0).allowed
    breakers.record(KEY, failed=True, now=T0)
    assert breakers.record(KEY, failed=True, now=T0) is CircuitState.OPEN
    refused = breakers.check(KEY, T0 + 1)
    assert (refused.allowed, refused.retry_at) == (False, T0 + 10)
    probe = breakers.check(KEY, T0 + 10)
    assert (probe.allowed, probe.probe, probe.state) == (True, True, CircuitState.HALF_OPEN)
    second = breakers.check(KEY, T0 + 10.1)  # one probe at a time
    assert not second.allowed
    assert second.retry_at <= T0 + 10.1 + breakers.probe_retry_seconds
    assert breakers.record(KEY, failed=False, now=T0 + 10.2) is CircuitState.CLOSED


def test_a_cancelled_probe_frees_its_slot() -> None:
    breakers = Breakers(CONFIG)
    for _ in range(2):
        breakers.record(KEY, failed=True, now=T0)
    assert breakers.check(KEY, T0 + 10).probe
    breakers.cancel_probe(KEY)
    assert breakers.check(KEY, T0 + 10).allowed


def test_only_changes_of_the_stored_form_are_written() -> None:
    breakers = Breakers(CONFIG)
    breakers.record(KEY, failed=False, now=T0)  # CLOSED, no failures: nothing to store
    assert breakers.dirty_rows(T0) == []
    breakers.record(KEY, failed=True, now=T0)
    [row] = breakers.dirty_rows(T0)
    assert (row.state, row.failures, row.opened_at) == ("CLOSED", 1, None)
    breakers.saved([row])
    assert breakers.dirty_rows(T0) == []
    breakers.record(KEY, failed=True, now=T0 + 1)
    [opened] = breakers.dirty_rows(T0 + 1)
    assert opened.state == "OPEN"
    assert opened.opened_at == datetime.fromtimestamp(T0 + 1, UTC)


def test_a_change_made_while_saving_stays_dirty() -> None:
    breakers = Breakers(CONFIG)
    breakers.record(KEY, failed=True, now=T0)
    rows = breakers.dirty_rows(T0)
    breakers.record(KEY, failed=True, now=T0)  # tripped before the first write committed
    breakers.saved(rows)
    assert [r.state for r in breakers.dirty_rows(T0)] == ["OPEN"]


def test_idle_breakers_are_forgotten_unless_unsaved_or_probing() -> None:
    """A process serves many destinations over its life: a breaker unused for ten minutes
    leaves memory (the table keeps its state), but never one with something unsaved or a
    probe out."""
    clock = [0.0]
    breakers = Breakers(CONFIG, monotonic=lambda: clock[0])
    idle, unsaved, probing = ((100, f"https://{name}:443") for name in ("a", "b", "c"))
    breakers.record(idle, failed=True, now=T0)
    breakers.record(unsaved, failed=True, now=T0)
    for _ in range(2):
        breakers.record(probing, failed=True, now=T0)
    breakers.saved([row for row in breakers.dirty_rows(T0) if row.destination != unsaved[1]])
    assert breakers.check(probing, T0 + 10).probe
    breakers.saved([row for row in breakers.dirty_rows(T0) if row.destination != unsaved[1]])

    clock[0] = IDLE_SECONDS - 1
    breakers.forget_idle()
    assert set(breakers._entries) == {idle, unsaved, probing}
    clock[0] = IDLE_SECONDS + 61
    breakers.forget_idle()
    assert set(breakers._entries) == {unsaved, probing}
