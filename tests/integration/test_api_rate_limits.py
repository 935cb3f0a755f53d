"""Rate limits everywhere (seed 003): the defaults, both backends, and Redis going down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support import TEST_SECRET, World, require_service

from junctionbox.api.app import create_app
from junctionbox.connectors.redis_rate_limit import RedisBackend
from junctionbox.domain.token_bucket import BucketConfig
from junctionbox.errors import ServiceUnavailableError
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.services.rate_limit_backends import MemoryBackend, RateLimitBackend
from junctionbox.settings import Settings, load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def default_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with the rate limits left at their defaults (unlike tests.support's)."""
    values = {
        "database_url": db_url,
        "data_dir": str(tmp_path),
        "secret_key": TEST_SECRET,
        **overrides,
    }
    return load_settings(values, environ={})


@asynccontextmanager
async def app_client(services: Services, ip: str = "192.0.2.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services), client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def redis_prefix() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return f"jbtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimitBackend]:
    chosen: RateLimitBackend
    if request.param == "memory":
        chosen = MemoryBackend()
    else:
        chosen = RedisBackend(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    yield chosen
    await chosen.close()


# --- the backends ---


async def test_token_bucket_on_each_backend(limiter: RateLimitBackend) -> None:
    backend = limiter
    config = BucketConfig.from_window(3, 60)
    decisions = [await backend.hit("client-1", config) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert 0 < refused.retry_after <= 20.5  # one token every 20 s
    assert refused.headers()["retry-after"] == str(int(-(-refused.retry_after // 1)))
    assert refused.headers()["x-ratelimit-limit"] == "3"
    assert (await backend.hit("client-2", config)).allowed  # keys are independent
    assert backend.status().healthy


async def test_redis_buckets_are_shared_between_nodes(redis_prefix: str) -> None:
    one, two = (RedisBackend(REDIS_URL, prefix=redis_prefix) for _ in range(2))
    try:
        config = BucketConfig.from_window(4, 60)
        allowed = [(await node.hit("tenant:1", config)).allowed for node in (one, two) * 3]
        assert allowed == [True, True, True, True, False, False]
    finally:
        await one.close()
        await two.close()


async def test_redis_down_fails_open_with_a_health_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = RedisBackend(DEAD_REDIS, fail_open=True)
    try:
        config = BucketConfig.from_window(1, 60)
        decisions = [await backend.hit("k", config) for _ in range(3)]
        assert all(d.allowed and d.degraded for d in decisions)
        status = backend.status()
        assert not status.healthy
        assert status.note is not None
        assert "failing open" in status.note
        assert "rate-limit backend Redis is unavailable" in caplog.text
    finally:
        await backend.close()


async def test_redis_down_fails_closed_when_configured() -> None:
    backend = RedisBackend(DEAD_REDIS, fail_open=False)
    try:
        with pytest.raises(ServiceUnavailableError):
            await backend.hit("k", BucketConfig.from_window(1, 60))
        assert "failing closed" in (backend.status().note or "")
    finally:
        await backend.close()


# --- the API ---


async def test_defaults_per_ip_and_per_tenant(db_url: str, tmp_path: Path) -> None:
    settings = default_settings(db_url, tmp_path)
    assert settings.rate_limit_ip_per_minute == 1000
    assert settings.rate_limit_tenant_per_minute == 100
    services = build_services(settings)
    # A stopped clock: no token comes back during the test, so the counts are exact.
    services.api_limiter.backend = MemoryBackend(clock=lambda: 1_800_000_000.0)
    try:
        async with app_client(services) as client:
            world = await World(client, services).build()
            key = world.headers["key_a"]
            statuses = [
                (await client.get("/api/v1/lookups?orgId=100", headers=key)).status_code
                for _ in range(101)
            ]
            assert statuses[:100] == [200] * 100
            assert statuses[100] == 429
            limited = await client.get("/api/v1/lookups?orgId=100", headers=key)
            assert limited.json()["code"] == "RATE_LIMITED"
            assert limited.headers["x-ratelimit-limit"] == "100"
            assert int(limited.headers["retry-after"]) >= 1
            # another tenant has its own bucket; the health probes are never limited
            other = await client.get("/api/v1/lookups?orgId=200", headers=world.headers["key_b"])
            assert other.status_code == 200
            assert other.headers["x-ratelimit-limit"] == "100"
            # the per-IP bucket (1000/min) has counted every request so far, then refuses
            probe = await client.get("/api/v1/nowhere")
            assert probe.headers["x-ratelimit-limit"] == "1000"
            for _ in range(int(probe.headers["x-ratelimit-remaining"])):
                assert (await client.get("/api/v1/nowhere")).status_code == 404
            blocked = await client.get("/api/v1/nowhere")
            assert blocked.status_code == 429
            assert blocked.headers["x-ratelimit-limit"] == "1000"
            assert (await client.get("/api/v1/health/live")).status_code == 200
        async with app_client(services, ip="192.0.2.2") as elsewhere:
            assert (await elsewhere.get("/api/v1/nowhere")).status_code == 404
    finally:
        await services.close()


async def test_tenant_limit_is_shared_through_redis(
    db_url: str, tmp_path: Path, redis_prefix: str
) -> None:
    overrides = {
        "rate_limit_backend": "redis",
        "redis_key_prefix": redis_prefix,
        # one token a minute: nothing refills while the test runs
        "rate_limit_tenant_per_minute": 1,
    }
    setup = build_services(default_settings(db_url, tmp_path))
    try:
        async with app_client(setup) as client:
            key = (await World(client, setup).build()).headers["key_a"]
    finally:
        await setup.close()
    first = build_services(default_settings(db_url, tmp_path, **overrides))
    second = build_services(default_settings(db_url, tmp_path, **overrides))
    try:
        async with app_client(first) as one, app_client(second) as two:
            statuses = [
                (await node.get("/api/v1/lookups?orgId=100", headers=key)).status_code
                for node in (one, two) * 3
            ]
            # the second node sees the token the first one took
            assert statuses == [200, 429, 429, 429, 429, 429]
    finally:
        await first.close()
        await second.close()


async def test_redis_down_fails_open_or_closed_through_the_api(db_url: str, tmp_path: Path) -> None:
    dead = {"rate_limit_backend": "redis", "redis_url": DEAD_REDIS}
    open_ = build_services(default_settings(db_url, tmp_path, **dead))
    closed = build_services(default_settings(db_url, tmp_path, rate_limit_fail_open=False, **dead))
    try:
        async with app_client(open_) as client:
            assert (await client.get("/api/v1/nowhere")).status_code == 404
            health = await client.get("/api/v1/health")
            assert health.status_code == 200  # the node still serves
            check = health.json()["checks"]["rateLimits"]
            assert check["status"] == "warn"
            assert "failing open" in check["message"]
        async with app_client(closed) as client:
            refused = await client.get("/api/v1/nowhere")
            assert refused.status_code == 503
            assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
            assert refused.headers["retry-after"] == "1"
    finally:
        await open_.close()
        await closed.close()


async def test_rate_limiting_can_be_switched_off(db_url: str, tmp_path: Path) -> None:
    services = build_services(
        default_settings(db_url, tmp_path, rate_limit_enabled=False, rate_limit_ip_per_minute=1)
    )
    try:
        async with app_client(services) as client:
            for _ in range(3):
                response = await client.get("/api/v1/nowhere")
                assert response.status_code == 404
                assert "x-ratelimit-limit" not in response.headers
    finally:
        await services.close()
