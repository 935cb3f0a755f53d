"""Token bucket rate limiting as an immutable value (seed 001's algorithm).

The bucket is (config, tokens, updated_at) and ``take`` returns a new bucket, so the same
rule runs on an in-process value, a database row or a Redis hash. Refill is computed
lazily from the elapsed time; nothing ticks in the background.

A denied ``take`` tells how long until enough tokens exist. Waiting for the bucket is not
a failed delivery: the worker reschedules the job without spending a retry attempt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from junctionbox.errors import ValidationError


@dataclass(frozen=True)
class BucketConfig:
    """``capacity`` is the largest burst; ``refill_rate`` is tokens per second."""

    capacity: float
    refill_rate: float

    def __post_init__(self) -> None:
        if not 0 < self.capacity < math.inf:
            raise ValidationError("bucket capacity must be a positive finite number")
        if not 0 < self.refill_rate < math.inf:
            raise ValidationError("bucket refill_rate must be a positive finite number")

    @classmethod
    def from_window(cls, max_requests: int, window_seconds: float) -> BucketConfig:
        """Seed 003's ``rateLimits: {maxRequests, windowSeconds}``.

        The bucket allows a burst of ``max_requests`` and then ``max_requests`` per window
        on average; any single window of that length sees at most ``2 * max_requests``
        (a full bucket plus one window of refill) - the price of no per-request log.
        """
        if max_requests < 1 or window_seconds <= 0:
            raise ValidationError("rateLimits needs maxRequests >= 1 and windowSeconds > 0")
        return cls(capacity=float(max_requests), refill_rate=max_requests / window_seconds)


# Seed 001 "Rate Limit Configuration" and seed 003's global / per-tenant API limits.
BUCKET_PRESETS: Mapping[str, BucketConfig] = MappingProxyType(
    {
        "salesSystem": BucketConfig(100, 10),
        "erpSystem": BucketConfig(50, 5),
        "eSignature": BucketConfig(20, 2),
        "smsGateway": BucketConfig(50, 10),
        "emailGateway": BucketConfig(100, 20),
        "apiPerIp": BucketConfig.from_window(1000, 60),
        "apiPerTenant": BucketConfig.from_window(100, 60),
    }
)


@dataclass(frozen=True)
class TokenBucket:
    """A bucket's state; ``updated_at`` is the epoch second its tokens were last computed."""

    config: BucketConfig
    tokens: float
    updated_at: float


def full_bucket(config: BucketConfig, now: float) -> TokenBucket:
    """A new bucket starts full, as in seed 001 (a first burst is allowed)."""
    return TokenBucket(config=config, tokens=config.capacity, updated_at=now)


def refill(bucket: TokenBucket, now: float) -> TokenBucket:
    """Tokens as of ``now``, never above capacity.

    If ``now`` is earlier than ``updated_at`` (clock skew between nodes sharing a bucket),
    no time has passed and ``updated_at`` stays put, so the interval is not counted twice.
    """
    elapsed = max(0.0, now - bucket.updated_at)
    tokens = min(bucket.config.capacity, bucket.tokens + elapsed * bucket.config.refill_rate)
    # Built directly: ``dataclasses.replace`` costs more than the arithmetic (per call).
    return TokenBucket(bucket.config, tokens, max(now, bucket.updated_at))


def take(bucket: TokenBucket, now: float, n: float = 1) -> tuple[TokenBucket, bool, float]:
    """Try to take ``n`` tokens: ``(new_bucket, allowed, wait_seconds)``.

    ``wait_seconds`` is 0 when allowed, otherwise the time until ``n`` tokens will exist
    (assuming nobody else takes any meanwhile).
    """
    if not 0 < n <= bucket.config.capacity:
        raise ValueError("n must be > 0 and <= capacity, or the take could never succeed")
    current = refill(bucket, now)
    deficit = n - current.tokens
    if deficit <= _slack(current):
        return (
            TokenBucket(current.config, max(0.0, current.tokens - n), current.updated_at),
            True,
            0.0,
        )
    return current, False, deficit / current.config.refill_rate


def _slack(bucket: TokenBucket) -> float:
    """Tokens below float resolution: epoch seconds near 1.7e9 are exact only to ~2e-7 s,
    so a caller who waits exactly ``wait_seconds`` may land a hair short of the token."""
    return 4 * math.ulp(max(1.0, abs(bucket.updated_at))) * bucket.config.refill_rate
