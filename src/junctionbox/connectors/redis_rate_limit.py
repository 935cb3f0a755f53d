"""Rate-limit buckets in Redis, shared by every node (cluster mode).

One Lua script reads, refills, takes and writes a bucket atomically, with Redis's own clock
(``TIME``), so nodes with skewed clocks still share one rule. Keys expire once a bucket
would be full again, so idle clients cost nothing.

When Redis does not answer, the backend fails open (allows the request, logs a warning at
most every 30 s, and reports itself unhealthy) or, with ``fail_open=False``, fails closed
(``ServiceUnavailableError``, 503). After a failure it does not try Redis again for
``retry_seconds``, so an outage does not add a connect timeout to every request.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from junctionbox.domain.token_bucket import BucketConfig
from junctionbox.errors import ServiceUnavailableError
from junctionbox.services.rate_limit_backends import BackendStatus, RateDecision, decision_of

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS: Final = 30.0

BUCKET_SCRIPT: Final = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
if now > ts then ts = now end
local allowed = 0
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(wait)}
"""


class RedisBackend:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "jb:",
        fail_open: bool = True,
        timeout_seconds: float = 0.25,
        retry_seconds: float = 1.0,
    ) -> None:
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry_on_timeout=False,
        )
        self._script = self._client.register_script(BUCKET_SCRIPT)
        self._prefix = f"{prefix}rl:"
        self._fail_open = fail_open
        self._retry_seconds = retry_seconds
        self._down_until = 0.0
        self._last_warning = 0.0
        self._last_error: str | None = None

    async def hit(self, key: str, config: BucketConfig) -> RateDecision:
        if time.monotonic() < self._down_until:
            return self._unavailable(config)
        try:
            allowed, tokens, wait = await self._script(
                keys=[self._prefix + key], args=[config.capacity, config.refill_rate]
            )
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + self._retry_seconds
            self._last_error = type(exc).__name__
            return self._unavailable(config)
        self._last_error = None
        return decision_of(config, float(tokens), bool(int(allowed)), float(wait))

    def _unavailable(self, config: BucketConfig) -> RateDecision:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            action = "allowing requests unlimited" if self._fail_open else "refusing requests"
            log.warning("rate-limit backend Redis is unavailable: %s", action)
        if not self._fail_open:
            raise ServiceUnavailableError(
                "rate limiting is unavailable; try again shortly", headers={"retry-after": "1"}
            )
        capacity = int(config.capacity)
        return RateDecision(True, capacity, capacity, 0.0, degraded=True)

    def status(self) -> BackendStatus:
        if self._last_error is None:
            return BackendStatus("redis", True)
        mode = "failing open" if self._fail_open else "failing closed"
        return BackendStatus("redis", False, f"Redis unavailable ({self._last_error}); {mode}")

    async def close(self) -> None:
        await self._client.aclose()
