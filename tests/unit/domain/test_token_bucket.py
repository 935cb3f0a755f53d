from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from junctionbox.domain.token_bucket import (
    BUCKET_PRESETS,
    BucketConfig,
    TokenBucket,
    full_bucket,
    refill,
    take,
)
from junctionbox.errors import ValidationError

T0 = 1_700_000_000.0
CONFIG = BucketConfig(capacity=3, refill_rate=2)  # 3-burst, one token every 0.5 s


def test_new_bucket_is_full() -> None:
    assert full_bucket(CONFIG, T0) == TokenBucket(CONFIG, 3.0, T0)


def test_burst_up_to_capacity_then_denied_with_wait() -> None:
    bucket = full_bucket(CONFIG, T0)
    results = []
    for _ in range(4):
        bucket, allowed, wait = take(bucket, T0)
        results.append((allowed, wait))
    assert results == [(True, 0.0), (True, 0.0), (True, 0.0), (False, 0.5)]
    assert bucket.tokens == 0.0


def test_denied_take_consumes_nothing() -> None:
    bucket = TokenBucket(CONFIG, tokens=0.5, updated_at=T0)
    after, allowed, wait = take(bucket, T0)
    assert not allowed
    assert after.tokens == 0.5
    assert wait == pytest.approx(0.25)


def test_tokens_refill_over_time() -> None:
    bucket = TokenBucket(CONFIG, tokens=0.0, updated_at=T0)
    assert refill(bucket, T0 + 0.25).tokens == pytest.approx(0.5)
    assert take(bucket, T0 + 0.4)[1] is False
    after, allowed, _ = take(bucket, T0 + 0.5)
    assert allowed
    assert after.tokens == pytest.approx(0.0)
    assert after.updated_at == T0 + 0.5


def test_refill_never_exceeds_capacity() -> None:
    bucket = TokenBucket(CONFIG, tokens=1.0, updated_at=T0)
    assert refill(bucket, T0 + 3600).tokens == 3.0


def test_take_several_tokens() -> None:
    bucket = full_bucket(CONFIG, T0)
    bucket, allowed, _ = take(bucket, T0, n=2)
    assert allowed
    assert bucket.tokens == 1.0
    _, allowed, wait = take(bucket, T0, n=2)
    assert not allowed
    assert wait == pytest.approx(0.5)


def test_clock_going_backwards_adds_nothing_and_keeps_updated_at() -> None:
    bucket = TokenBucket(CONFIG, tokens=1.0, updated_at=T0)
    earlier = refill(bucket, T0 - 10)
    assert earlier == bucket
    # the skewed call must not let the interval be counted twice later
    assert refill(earlier, T0 + 0.5).tokens == pytest.approx(2.0)


@pytest.mark.parametrize("n", [0, -1, 3.5])
def test_impossible_take_is_rejected(n: float) -> None:
    with pytest.raises(ValueError, match="capacity"):
        take(full_bucket(CONFIG, T0), T0, n)


def test_from_window_uses_max_requests_as_burst() -> None:
    config = BucketConfig.from_window(max_requests=100, window_seconds=60)
    assert config.capacity == 100.0
    assert config.refill_rate == pytest.approx(100 / 60)


@pytest.mark.parametrize(("max_requests", "window"), [(0, 60.0), (10, 0.0), (10, -1.0)])
def test_from_window_rejects_nonsense(max_requests: int, window: float) -> None:
    with pytest.raises(ValidationError):
        BucketConfig.from_window(max_requests, window)


@pytest.mark.parametrize(
    ("capacity", "rate"), [(0, 1), (1, 0), (-1, 1), (float("inf"), 1), (1, float("nan"))]
)
def test_invalid_config_is_a_validation_error(capacity: float, rate: float) -> None:
    with pytest.raises(ValidationError):
        BucketConfig(capacity, rate)


def test_presets_follow_the_seeds() -> None:
    assert BUCKET_PRESETS["erpSystem"] == BucketConfig(50, 5)
    assert BUCKET_PRESETS["emailGateway"] == BucketConfig(100, 20)
    assert BUCKET_PRESETS["apiPerTenant"].capacity == 100
    assert BUCKET_PRESETS["apiPerIp"].refill_rate == pytest.approx(1000 / 60)


_CONFIGS = st.builds(
    BucketConfig,
    capacity=st.floats(min_value=1.0, max_value=1e4),
    refill_rate=st.floats(min_value=1e-3, max_value=1e4),
)
_STEPS = st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 1.0)), max_size=40)


@given(config=_CONFIGS, steps=_STEPS)
def test_tokens_stay_within_zero_and_capacity(
    config: BucketConfig, steps: list[tuple[float, float]]
) -> None:
    bucket, now = full_bucket(config, T0), T0
    for elapsed, fraction in steps:
        now += elapsed
        n = max(fraction * config.capacity, 1e-6)
        bucket, allowed, wait = take(bucket, now, n)
        assert 0.0 <= bucket.tokens <= config.capacity
        assert (wait == 0.0) is allowed
        assert wait >= 0.0


@given(
    config=_CONFIGS,
    tokens=st.floats(0.0, 1.0),
    fraction=st.floats(0.0, 1.0),
    now=st.floats(0.0, 4e9),
)
def test_waiting_the_returned_time_is_enough(
    config: BucketConfig, tokens: float, fraction: float, now: float
) -> None:
    bucket = TokenBucket(config, tokens=tokens * config.capacity, updated_at=now)
    n = max(fraction * config.capacity, 1e-6)
    bucket, allowed, wait = take(bucket, now, n)
    if not allowed:
        assert take(bucket, now + wait, n)[1]


_SMALL = st.builds(
    BucketConfig, capacity=st.integers(1, 20), refill_rate=st.floats(min_value=0.1, max_value=50.0)
)


@given(config=_SMALL, n=st.integers(1, 300))
def test_never_more_than_burst_plus_refill(config: BucketConfig, n: int) -> None:
    bucket, granted = full_bucket(config, T0), 0
    for i in range(n):
        bucket, allowed, _ = take(bucket, T0 + i * 0.01)
        granted += allowed
    window = (n - 1) * 0.01
    assert granted <= config.capacity + config.refill_rate * window + 1e-6
