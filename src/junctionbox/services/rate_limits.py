"""Per-integration rate limits (seed 003 ``rateLimits: {enabled, maxRequests, windowSeconds}``).

One token bucket per integration (:mod:`junctionbox.domain.token_bucket`), kept in this
process. A delivery that finds no token is not failed: the worker puts the job back until
the time :meth:`RateLimiter.acquire` names, without spending an attempt.

Waiting jobs are spaced out: each denied job is given its own turn, one refill interval
after the previous one's, so that a burst of N jobs comes back one by one as tokens appear
instead of all at once (where all but one would be put back again).

Cluster mode: the buckets live in each worker process, so N worker processes together may
send up to N times the configured rate. Cluster-wide limits need a shared bucket (Redis, as
DESIGN.md plans); the bucket is a pure value, so that store can run the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from junctionbox.domain.outbound import RateLimit
from junctionbox.domain.token_bucket import BucketConfig, TokenBucket, full_bucket, take

# A forgotten turn (its job was taken by another node, or cancelled) must not push every
# later job further out: turns are only kept this far ahead of the bucket.
_MAX_TURNS_AHEAD = 1000


@dataclass(frozen=True)
class Permit:
    """``allowed``, or the epoch second at which the job should be tried again."""

    allowed: bool
    retry_at: float = 0.0


@dataclass
class _Entry:
    limit: RateLimit
    bucket: TokenBucket
    next_turn: float  # the epoch second handed to the last denied job


class RateLimiter:
    """Token buckets by key (an integration id). Not thread-safe: one event loop."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._entries: dict[str, _Entry] = {}
        self._max_keys = max_keys

    def acquire(self, key: str, limit: RateLimit, now: float) -> Permit:
        """Take a token for one request now, or say when to come back."""
        if not limit.enabled or limit.max_requests < 1 or limit.window_seconds <= 0:
            return Permit(True)
        entry = self._entry(key, limit, now)
        bucket, allowed, wait = take(entry.bucket, now)
        entry.bucket = bucket
        if allowed:
            return Permit(True)
        interval = 1.0 / bucket.config.refill_rate
        earliest = now + wait
        horizon = earliest + _MAX_TURNS_AHEAD * interval
        turn = max(earliest, min(entry.next_turn + interval, horizon))
        entry.next_turn = turn
        return Permit(False, turn)

    def refund(self, key: str, now: float) -> None:
        """Give back a token taken for a request that was not sent after all (the circuit
        breaker refused it)."""
        entry = self._entries.get(key)
        if entry is None:
            return
        bucket = entry.bucket
        tokens = min(bucket.config.capacity, bucket.tokens + 1)
        entry.bucket = TokenBucket(bucket.config, tokens, max(bucket.updated_at, now))

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def _entry(self, key: str, limit: RateLimit, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is not None and entry.limit == limit:
            return entry
        if entry is None and len(self._entries) >= self._max_keys:
            self._entries.clear()  # crude but bounded; buckets refill to full anyway
        config = BucketConfig.from_window(limit.max_requests, limit.window_seconds)
        # A changed limit starts a fresh bucket: the old tokens were counted under other rules.
        entry = _Entry(limit, full_bucket(config, now), now)
        self._entries[key] = entry
        return entry
