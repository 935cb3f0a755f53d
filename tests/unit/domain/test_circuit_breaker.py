from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from junctionbox.domain.circuit_breaker import (
    BREAKER_PRESETS,
    Breaker,
    BreakerConfig,
    CircuitState,
    FailureStreak,
    allow,
    record_failure,
    record_success,
    reset,
    streak_failure,
    streak_reenable,
    streak_success,
)
from junctionbox.errors import ValidationError

T0 = 1_700_000_000.0
CONFIG = BreakerConfig(
    failure_threshold=3, success_threshold=2, reset_timeout=60.0, call_timeout=10.0
)


def _fail_times(breaker: Breaker, n: int, now: float = T0) -> Breaker:
    for _ in range(n):
        breaker = record_failure(breaker, now)
    return breaker


def _opened(now: float = T0) -> Breaker:
    return _fail_times(Breaker(CONFIG), CONFIG.failure_threshold, now)


def _half_open(now: float = T0 + 60.0) -> Breaker:
    breaker, allowed = allow(_opened(), now)
    assert allowed
    return breaker


def test_gauge_values_match_seed_001_metrics() -> None:
    assert [int(s) for s in (CircuitState.CLOSED, CircuitState.HALF_OPEN, CircuitState.OPEN)] == [
        0,
        1,
        2,
    ]


def test_closed_allows_calls() -> None:
    breaker = Breaker(CONFIG)
    assert allow(breaker, T0) == (breaker, True)


def test_opens_exactly_at_failure_threshold() -> None:
    breaker = _fail_times(Breaker(CONFIG), 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failures == 2
    breaker = record_failure(breaker, T0 + 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.open_until == T0 + 1 + 60.0
    assert breaker.changed_at == T0 + 1


def test_success_resets_consecutive_failures() -> None:
    breaker = record_success(_fail_times(Breaker(CONFIG), 2), T0)
    assert breaker.failures == 0
    assert record_failure(breaker, T0).state is CircuitState.CLOSED


def test_open_rejects_until_reset_timeout() -> None:
    breaker = _opened()
    assert allow(breaker, T0 + 59.999) == (breaker, False)


def test_after_reset_timeout_one_probe_goes_through() -> None:
    breaker, allowed = allow(_opened(), T0 + 60.0)
    assert allowed
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.probes_in_flight == 1
    assert breaker.changed_at == T0 + 60.0
    # the single probe slot is taken: concurrent callers are refused
    assert allow(breaker, T0 + 61.0)[1] is False


def test_half_open_max_probes_limits_concurrency() -> None:
    config = BreakerConfig(failure_threshold=1, half_open_max_probes=3, reset_timeout=5.0)
    breaker = record_failure(Breaker(config), T0)
    grants = []
    for _ in range(5):
        breaker, ok = allow(breaker, T0 + 5.0)
        grants.append(ok)
    assert grants == [True, True, True, False, False]


def test_half_open_closes_after_success_threshold() -> None:
    breaker = record_success(_half_open(), T0 + 61)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.successes == 1
    assert breaker.probes_in_flight == 0
    breaker, allowed = allow(breaker, T0 + 62)
    assert allowed
    breaker = record_success(breaker, T0 + 63)
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.failures, breaker.successes, breaker.probes_in_flight) == (0, 0, 0)
    assert breaker.changed_at == T0 + 63


def test_failed_probe_reopens_for_another_reset_timeout() -> None:
    breaker = record_failure(_half_open(), T0 + 70)
    assert breaker.state is CircuitState.OPEN
    assert breaker.open_until == T0 + 70 + 60.0
    assert allow(breaker, T0 + 129)[1] is False
    assert allow(breaker, T0 + 130)[1] is True


def test_failed_probe_after_a_successful_one_still_reopens() -> None:
    breaker = record_success(_half_open(), T0 + 61)
    breaker, _ = allow(breaker, T0 + 62)
    assert record_failure(breaker, T0 + 63).state is CircuitState.OPEN


def test_lost_probe_frees_its_slot_after_call_timeout() -> None:
    breaker = _half_open(T0 + 60)
    assert allow(breaker, T0 + 69.9)[1] is False
    breaker, allowed = allow(breaker, T0 + 70.0)
    assert allowed
    assert breaker.probes_in_flight == 1


def test_late_answers_while_open_change_nothing() -> None:
    breaker = _opened()
    assert record_failure(breaker, T0 + 30) == breaker
    assert record_success(breaker, T0 + 30) == breaker


def test_manual_reset_closes() -> None:
    breaker = reset(_opened(), T0 + 5)
    assert breaker == Breaker(CONFIG, changed_at=T0 + 5)


def test_presets_follow_seed_001_in_seconds() -> None:
    assert BREAKER_PRESETS["erpSystem"] == BreakerConfig(3, 2, 120.0, 45.0)
    assert BREAKER_PRESETS["communicationGateway"] == BreakerConfig(10, 3, 30.0, 15.0)
    assert BREAKER_PRESETS["eSignature"].reset_timeout == 300.0
    assert BREAKER_PRESETS["default"].failure_threshold == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"success_threshold": 0},
        {"half_open_max_probes": 0},
        {"reset_timeout": 0.0},
        {"call_timeout": -1.0},
    ],
)
def test_invalid_config_is_a_validation_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


_EVENTS = st.lists(
    st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(0.0, 100.0)), max_size=60
)


@given(events=_EVENTS)
def test_invariants_hold_for_any_sequence(events: list[tuple[str, float]]) -> None:
    config = BreakerConfig(
        failure_threshold=3, success_threshold=2, reset_timeout=30.0, half_open_max_probes=2
    )
    breaker, now = Breaker(config), T0
    for event, step in events:
        now += step
        if event == "allow":
            before = breaker
            breaker, allowed = allow(breaker, now)
            if before.state is CircuitState.OPEN and now < before.open_until:
                assert not allowed
        elif event == "ok":
            breaker = record_success(breaker, now)
        else:
            breaker = record_failure(breaker, now)
        assert breaker.failures < config.failure_threshold
        assert breaker.successes < config.success_threshold
        assert 0 <= breaker.probes_in_flight <= config.half_open_max_probes
        if breaker.state is CircuitState.CLOSED:
            assert allow(breaker, now)[1]


# ---------------------------------------------------------------- auto-disable streak


def test_streak_disables_on_fifth_consecutive_failure_once() -> None:
    streak, flags = FailureStreak(), []
    for _ in range(6):
        streak, newly = streak_failure(streak)
        flags.append(newly)
    assert flags == [False, False, False, False, True, False]
    assert streak.disabled


def test_streak_success_breaks_the_run() -> None:
    streak = FailureStreak(threshold=3)
    for _ in range(2):
        streak, _ = streak_failure(streak)
    streak = streak_success(streak)
    streak, newly = streak_failure(streak)
    assert streak.count == 1
    assert not newly
    assert not streak.disabled


def test_reenable_resets_the_counter() -> None:
    streak = FailureStreak(threshold=1)
    streak, newly = streak_failure(streak)
    assert newly
    assert streak.disabled
    streak = streak_reenable(streak)
    assert streak == FailureStreak(threshold=1)
    assert streak_failure(streak)[1] is True


def test_streak_threshold_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        FailureStreak(threshold=0)
