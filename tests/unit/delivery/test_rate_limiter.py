"""Per-integration token buckets: bursts, spaced turns for waiting jobs, refunds."""

from __future__ import annotations

from junctionbox.domain.outbound import RateLimit
from junctionbox.services.rate_limits import RateLimiter

T0 = 1_700_000_000.0
TWO_PER_SECOND = RateLimit(enabled=True, max_requests=2, window_seconds=1.0)


def test_disabled_limits_always_allow() -> None:
    limiter = RateLimiter()
    assert all(limiter.acquire("int_a", RateLimit(), T0).allowed for _ in range(1000))


def test_a_burst_of_max_requests_then_spaced_turns() -> None:
    limiter = RateLimiter()
    first, second = (limiter.acquire("int_a", TWO_PER_SECOND, T0) for _ in range(2))
    assert first.allowed
    assert second.allowed
    waiting = [limiter.acquire("int_a", TWO_PER_SECOND, T0) for _ in range(3)]
    assert not any(p.allowed for p in waiting)
    # Each waiting job gets its own turn, one refill interval (0.5 s) after the previous.
    assert [round(p.retry_at - T0, 6) for p in waiting] == [0.5, 1.0, 1.5]


def test_a_job_back_at_its_turn_gets_a_token() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        limiter.acquire("int_a", TWO_PER_SECOND, T0)
    turn = limiter.acquire("int_a", TWO_PER_SECOND, T0).retry_at
    assert limiter.acquire("int_a", TWO_PER_SECOND, turn).allowed


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        limiter.acquire("int_a", TWO_PER_SECOND, T0)
    assert not limiter.acquire("int_a", TWO_PER_SECOND, T0).allowed
    assert limiter.acquire("int_b", TWO_PER_SECOND, T0).allowed


def test_a_refund_gives_the_token_back() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        limiter.acquire("int_a", TWO_PER_SECOND, T0)
    limiter.refund("int_a", T0)
    assert limiter.acquire("int_a", TWO_PER_SECOND, T0).allowed
    assert not limiter.acquire("int_a", TWO_PER_SECOND, T0).allowed


def test_a_changed_limit_starts_a_fresh_bucket() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        limiter.acquire("int_a", TWO_PER_SECOND, T0)
    wider = RateLimit(enabled=True, max_requests=5, window_seconds=1.0)
    assert all(limiter.acquire("int_a", wider, T0).allowed for _ in range(5))


def test_turns_never_run_away_from_the_bucket() -> None:
    limiter = RateLimiter()
    for _ in range(5000):  # jobs that never come back must not push later ones out forever
        limiter.acquire("int_a", TWO_PER_SECOND, T0)
    late = limiter.acquire("int_a", TWO_PER_SECOND, T0)
    assert late.retry_at - T0 <= 1000 * 0.5 + 1
