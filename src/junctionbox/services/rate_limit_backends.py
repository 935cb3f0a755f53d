"""Where rate-limit buckets live: the backend interface and the in-memory backend.

Every limit in the API (per client IP, per tenant, per gateway route and per gateway client)
is a token bucket (:mod:`junctionbox.domain.token_bucket`) under a string key. A backend
takes one token from the bucket of a key and says whether it was there, how many are left
and when the bucket will be full again.

* :class:`MemoryBackend` keeps the buckets in this process: right for one node; with N nodes
  each node counts on its own, so a client may get up to N times the limit.
* :class:`~junctionbox.connectors.redis_rate_limit.RedisBackend` keeps them in Redis, shared
  by every node, updated by one atomic Lua script.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from junctionbox.domain.token_bucket import BucketConfig, TokenBucket, full_bucket, take


@dataclass(frozen=True)
class RateDecision:
    """One ``hit``: allowed or not, and what the ``X-RateLimit-*`` headers say.

    ``reset_seconds`` is the time until the bucket is full again; ``retry_after`` the time
    until one token exists (0 when allowed). ``degraded`` marks a decision made without the
    backend (Redis down, failing open).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after: float = 0.0
    degraded: bool = False

    def headers(self) -> dict[str, str]:
        out = {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.remaining)),
            "x-ratelimit-reset": str(math.ceil(self.reset_seconds)),
        }
        if not self.allowed:
            out["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        return out


@dataclass(frozen=True)
class BackendStatus:
    """For health checks: the backend's name, whether it answers, and a note if not."""

    backend: str
    healthy: bool
    note: str | None = None


class RateLimitBackend(Protocol):
    async def hit(self, key: str, config: BucketConfig) -> RateDecision:
        """Take one token from ``key``'s bucket (created full on first use)."""
        ...

    def status(self) -> BackendStatus: ...

    async def close(self) -> None: ...


def decision_of(config: BucketConfig, tokens: float, allowed: bool, wait: float) -> RateDecision:
    """The decision for a bucket left with ``tokens`` after a take."""
    missing = max(0.0, config.capacity - tokens)
    return RateDecision(
        allowed=allowed,
        limit=int(config.capacity),
        remaining=int(tokens + 1e-9),
        reset_seconds=missing / config.refill_rate,
        retry_after=wait,
    )


class MemoryBackend:
    """Buckets in a dict, least recently used dropped beyond ``max_keys`` (a dropped bucket
    comes back full, which errs on the side of allowing). One event loop; no locking needed
    because ``hit`` does not await."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, key: str, config: BucketConfig) -> RateDecision:
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None or bucket.config != config:
            bucket = full_bucket(config, now)
        bucket, allowed, wait = take(bucket, now)
        self._buckets[key] = bucket
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return decision_of(config, bucket.tokens, allowed, wait)

    def status(self) -> BackendStatus:
        return BackendStatus("memory", True)

    async def close(self) -> None:
        self._buckets.clear()
