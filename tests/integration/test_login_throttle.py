"""Login throttling per client address and per account, on both backends' shared state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import redis.asyncio as redis
from tests.integration.console_helpers import csrf_of
from tests.support import ADMIN_EMAIL, ADMIN_PASSWORD, World, make_settings, require_service

from junctionbox.api.app import create_app
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.settings import load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
LOGIN = "/api/v1/auth/login"


@asynccontextmanager
async def client_from(services: Services, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services), client=(ip, 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@asynccontextmanager
async def throttled(db_url: str, tmp_path: Path, **limits: object) -> AsyncIterator[Services]:
    """A node with the given limits, over a database where the world's users exist (created
    through another node, so that their logins are not counted here)."""
    setup = build_services(make_settings(db_url, tmp_path))
    try:
        async with client_from(setup, "192.0.2.10") as client:
            await World(client, setup).build()
    finally:
        await setup.close()
    services = build_services(make_settings(db_url, tmp_path, **limits))
    try:
        yield services
    finally:
        await services.close()


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


def test_defaults() -> None:
    settings = load_settings({"secret_key": "x" * 40}, environ={})
    assert settings.login_attempts_per_ip_per_minute == 20
    assert settings.login_attempts_per_account_per_minute == 10


async def test_an_account_is_throttled_whatever_the_password(db_url: str, tmp_path: Path) -> None:
    limit = {"login_attempts_per_account_per_minute": 3}
    async with (
        throttled(db_url, tmp_path, **limit) as svc,
        client_from(svc, "192.0.2.20") as client,
    ):
        wrong = [await attempt(client, ADMIN_EMAIL, "guess-123") for _ in range(3)]
        assert [r.status_code for r in wrong] == [401, 401, 401]
        refused = await attempt(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert refused.status_code == 429
        assert refused.json()["code"] == "RATE_LIMITED"
        assert "for this account" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 1
        # the e-mail's case does not make it another account
        assert (await attempt(client, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)).status_code == 429
        # another account from the same address is not affected
        other = await attempt(client, "user-a@example.com", "password-123")
        assert other.status_code == 200


async def test_an_address_is_throttled_across_accounts(db_url: str, tmp_path: Path) -> None:
    async with throttled(db_url, tmp_path, login_attempts_per_ip_per_minute=2) as svc:
        async with client_from(svc, "192.0.2.30") as client:
            for n in range(2):
                assert (await attempt(client, f"ghost{n}@example.com", "x")).status_code == 401
            refused = await attempt(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            assert refused.status_code == 429
            assert "from this address" in refused.json()["error"]
        async with client_from(svc, "192.0.2.31") as elsewhere:
            assert (await attempt(elsewhere, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


async def test_the_console_login_form_is_throttled_too(db_url: str, tmp_path: Path) -> None:
    limit = {"login_attempts_per_account_per_minute": 1}
    async with (
        throttled(db_url, tmp_path, **limit) as svc,
        client_from(svc, "192.0.2.40") as client,
    ):
        page = await client.get("/console/login")
        form = {"email": ADMIN_EMAIL, "password": "wrong-one", "csrf_token": csrf_of(page.text)}
        assert (await client.post("/console/login", data=form)).status_code == 401
        form["password"] = ADMIN_PASSWORD
        refused = await client.post("/console/login", data=form)
        assert refused.status_code == 429
        assert "too many login attempts" in refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert "jb_session" not in refused.headers.get("set-cookie", "")


async def test_redis_counts_attempts_of_every_node_without_naming_the_account(
    db_url: str, tmp_path: Path
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"jbtest:{uuid.uuid4().hex[:12]}:"
    shared = {
        "rate_limit_backend": "redis",
        "redis_url": REDIS_URL,
        "redis_key_prefix": prefix,
        "login_attempts_per_account_per_minute": 2,
    }
    async with throttled(db_url, tmp_path, **shared) as first:
        second = build_services(make_settings(db_url, tmp_path, **shared))
        try:
            async with (
                client_from(first, "192.0.2.50") as a,
                client_from(second, "192.0.2.51") as b,
            ):
                assert (await attempt(a, "user-b@example.com", "nope-1")).status_code == 401
                assert (await attempt(b, "user-b@example.com", "nope-2")).status_code == 401
                assert (await attempt(a, "user-b@example.com", "password-123")).status_code == 429
            store = redis.from_url(REDIS_URL)
            try:
                keys = [k.decode() async for k in store.scan_iter(f"{prefix}*")]
                await store.delete(*keys)
            finally:
                await store.aclose()
            assert any("login:account:" in k for k in keys)
            assert not any("@" in k or "user-b" in k for k in keys)
        finally:
            await second.close()
