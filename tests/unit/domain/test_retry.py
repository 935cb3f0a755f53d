from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from junctionbox.domain.retry import (
    MAX_RETRY_AFTER_SECONDS,
    RETRY_PRESETS,
    Classification,
    Decision,
    ErrorCategory,
    NetworkErrorKind,
    NextAction,
    RetryPolicy,
    classify,
    parse_retry_after,
    plan_next,
    retries_left,
)
from junctionbox.errors import ValidationError

NOW = 1_700_000_000.0


# ---------------------------------------------------------------- policy and delays


def test_defaults_are_seed_003_strategy() -> None:
    policy = RetryPolicy()
    assert (policy.base_delay, policy.max_delay, policy.multiplier) == (1.0, 5.0, 2.0)
    assert (policy.max_retries, policy.jitter_factor) == (3, 0.2)


def test_delay_doubles_without_jitter_then_caps() -> None:
    policy = RetryPolicy()
    assert [policy.next_delay(a, 0.0) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_adds_up_to_jitter_factor() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(0, 1.0) == pytest.approx(1.2)
    assert policy.next_delay(0, 0.5) == pytest.approx(1.1)
    assert policy.next_delay(10, 1.0) == pytest.approx(6.0)
    assert policy.longest_delay == pytest.approx(6.0)


def test_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(max_delay=30.0, multiplier=10.0)
    assert policy.next_delay(100_000, 0.0) == 30.0


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    r=st.floats(min_value=0.0, max_value=1.0),
    preset=st.sampled_from(sorted(RETRY_PRESETS)),
)
def test_delay_always_within_bounds(attempt: int, r: float, preset: str) -> None:
    policy = RETRY_PRESETS[preset]
    delay = policy.next_delay(attempt, r)
    assert policy.base_delay <= delay <= policy.max_delay * (1 + policy.jitter_factor)


@given(attempt=st.integers(min_value=0, max_value=60), r=st.floats(0.0, 1.0))
def test_delay_never_shrinks_as_attempts_grow(attempt: int, r: float) -> None:
    policy = RETRY_PRESETS["erpSystem"]
    assert policy.next_delay(attempt + 1, r) >= policy.next_delay(attempt, r)


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_random_value_outside_unit_interval_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="random_value"):
        RetryPolicy().next_delay(0, bad)


def test_negative_attempt_is_rejected() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().next_delay(-1, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"base_delay": 0.0},
        {"base_delay": 10.0, "max_delay": 5.0},
        {"max_delay": float("inf")},
        {"multiplier": 0.5},
        {"jitter_factor": 1.5},
        {"jitter_factor": -0.1},
    ],
)
def test_invalid_policy_is_a_validation_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_presets_follow_seed_001_in_seconds() -> None:
    erp = RETRY_PRESETS["erpSystem"]
    assert (erp.max_retries, erp.base_delay, erp.max_delay, erp.jitter_factor) == (5, 2, 60, 0.2)
    comms = RETRY_PRESETS["communicationGateway"]
    assert (comms.max_retries, comms.base_delay, comms.max_delay) == (5, 0.5, 10.0)
    assert comms.jitter_factor == 0.15
    assert RETRY_PRESETS["default"] == RetryPolicy()


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("status", "decision", "category"),
    [
        (200, Decision.SUCCESS, None),
        (204, Decision.SUCCESS, None),
        (299, Decision.SUCCESS, None),
        (301, Decision.FAIL, ErrorCategory.REDIRECT),
        (302, Decision.FAIL, ErrorCategory.REDIRECT),
        (307, Decision.FAIL, ErrorCategory.REDIRECT),
        (400, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (401, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (404, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (408, Decision.RETRY, ErrorCategory.TIMEOUT),
        (409, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (410, Decision.DISABLE, ErrorCategory.GONE),
        (422, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (429, Decision.RETRY, ErrorCategory.RATE_LIMITED),
        (499, Decision.FAIL, ErrorCategory.CLIENT_ERROR),
        (500, Decision.RETRY, ErrorCategory.SERVER_ERROR),
        (502, Decision.RETRY, ErrorCategory.SERVER_ERROR),
        (503, Decision.RETRY, ErrorCategory.SERVER_ERROR),
        (599, Decision.RETRY, ErrorCategory.SERVER_ERROR),
        (100, Decision.FAIL, ErrorCategory.INVALID_RESPONSE),
        (199, Decision.FAIL, ErrorCategory.INVALID_RESPONSE),
        (600, Decision.FAIL, ErrorCategory.INVALID_RESPONSE),
        (0, Decision.FAIL, ErrorCategory.INVALID_RESPONSE),
    ],
)
def test_status_classification(
    status: int, decision: Decision, category: ErrorCategory | None
) -> None:
    assert classify(status, now=NOW) == Classification(decision, category)


@pytest.mark.parametrize("kind", list(NetworkErrorKind))
def test_network_errors_are_retried(kind: NetworkErrorKind) -> None:
    result = classify(kind, now=NOW)
    assert result.decision is Decision.RETRY
    expected = (
        ErrorCategory.TIMEOUT if kind is NetworkErrorKind.TIMEOUT else ErrorCategory.NETWORK_ERROR
    )
    assert result.category is expected


def test_network_error_kinds_carry_errno_names() -> None:
    assert NetworkErrorKind("ECONNREFUSED") is NetworkErrorKind.CONNECTION_REFUSED
    assert NetworkErrorKind("ENOTFOUND") is NetworkErrorKind.DNS


def test_retry_after_is_kept_for_retryable_statuses() -> None:
    assert classify(429, now=NOW, retry_after="7").retry_after == 7.0
    assert classify(503, now=NOW, retry_after="120").retry_after == 120.0


def test_retry_after_is_ignored_when_not_retrying() -> None:
    assert classify(301, now=NOW, retry_after="7").retry_after is None
    assert classify(400, now=NOW, retry_after="7").retry_after is None
    assert classify(200, now=NOW, retry_after="7").retry_after is None


def test_retry_after_garbage_falls_back_to_backoff() -> None:
    assert classify(503, now=NOW, retry_after="soon").retry_after is None


# ---------------------------------------------------------------- Retry-After parsing


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("120", 120.0), ("  30 ", 30.0), ("1.5", 1.5)],
)
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


def test_retry_after_http_date_is_relative_to_now() -> None:
    assert parse_retry_after(_http_date(NOW + 90), NOW) == pytest.approx(90.0)


def test_retry_after_obsolete_date_formats() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", now) == pytest.approx(60.0)
    assert parse_retry_after("Wed Oct 21 07:28:00 2015", now) == pytest.approx(60.0)


def test_retry_after_past_date_means_now() -> None:
    assert parse_retry_after(_http_date(NOW - 3600), NOW) == 0.0


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("31536000", NOW) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after(_http_date(NOW + 10 * 86400), NOW) == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("600", NOW, max_seconds=60.0) == 60.0


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-5", "1e3", "12abc", "Wed, 31 Feb 2015 07:28:00 GMT", "NaN", "inf", "٣"],
)
def test_retry_after_garbage_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_stays_in_range(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER_SECONDS


# ---------------------------------------------------------------- retry or dead-letter


def test_retries_left_counts_the_first_send() -> None:
    policy = RetryPolicy(max_retries=3)
    assert [retries_left(policy, n) for n in (1, 2, 3, 4, 5)] == [True, True, True, False, False]
    assert retries_left(RetryPolicy(max_retries=0), 1) is False


def test_retries_left_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        retries_left(RetryPolicy(), 0)


def _plan(
    attempts: int, outcome: Classification, r: float = 0.0
) -> tuple[NextAction, float | None]:
    step = plan_next(RetryPolicy(), attempts, outcome, now=NOW, random_value=r)
    return step.action, step.retry_at


def test_plan_success_is_delivered() -> None:
    assert _plan(1, classify(200, now=NOW)) == (NextAction.DELIVERED, None)


def test_plan_retry_uses_backoff_for_the_attempt() -> None:
    assert _plan(1, classify(500, now=NOW)) == (NextAction.RETRY, NOW + 1.0)
    assert _plan(2, classify(500, now=NOW)) == (NextAction.RETRY, NOW + 2.0)
    action, retry_at = _plan(3, classify(500, now=NOW), r=1.0)
    assert action is NextAction.RETRY
    assert retry_at == pytest.approx(NOW + 4.8)


def test_plan_exhausted_retries_dead_letter() -> None:
    assert _plan(4, classify(500, now=NOW)) == (NextAction.DEAD_LETTER, None)


def test_plan_permanent_failure_dead_letters_at_once() -> None:
    assert _plan(1, classify(404, now=NOW)) == (NextAction.DEAD_LETTER, None)
    assert _plan(1, classify(302, now=NOW)) == (NextAction.DEAD_LETTER, None)


def test_plan_gone_disables() -> None:
    assert _plan(1, classify(410, now=NOW)) == (NextAction.DISABLE, None)


def test_plan_honours_retry_after_over_backoff() -> None:
    outcome = classify(429, now=NOW, retry_after="30")
    assert _plan(1, outcome) == (NextAction.RETRY, NOW + 30.0)
    short = classify(503, now=NOW, retry_after="0")
    assert _plan(3, short, r=1.0) == (NextAction.RETRY, NOW)


def test_plan_retry_after_does_not_grant_extra_attempts() -> None:
    outcome = classify(429, now=NOW, retry_after="30")
    assert _plan(4, outcome) == (NextAction.DEAD_LETTER, None)


@given(
    attempts=st.integers(min_value=1, max_value=20),
    status=st.integers(min_value=100, max_value=599),
    seed=st.integers(0, 2**32 - 1),
)
def test_plan_retry_time_is_bounded(attempts: int, status: int, seed: int) -> None:
    policy = RETRY_PRESETS["salesSystem"]
    r = random.Random(seed).random()
    step = plan_next(policy, attempts, classify(status, now=NOW), now=NOW, random_value=r)
    if step.action is NextAction.RETRY:
        assert step.retry_at is not None
        assert NOW + policy.base_delay <= step.retry_at <= NOW + policy.longest_delay
        assert attempts <= policy.max_retries
    else:
        assert step.retry_at is None
