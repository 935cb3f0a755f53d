"""Helpers shared by tests: service checks, settings, and a two-tenant world."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from junctionbox.domain.identity import Role
from junctionbox.services.container import Services
from junctionbox.settings import Settings, load_settings
from junctionbox.store.queries.delivery_attempts import AttemptRow

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = os.environ.get(
    "JB_TEST_PG_DSN", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
)
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root-password-1"


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally, fail in CI, when a real service a test needs is not running."""
    if service_available(host, port):
        return
    message = f"{name} is not running at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI requires it)")
    pytest.skip(message)


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}"


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "database_url": db_url,
        "data_dir": str(tmp_path),
        "secret_key": TEST_SECRET,
        "max_body_bytes": 64 * 1024,
        # Cheap password hashes: the suite logs in thousands of times (production cost: 25%
        # of the suite's time); the cost itself is argon2-cffi's concern.
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 64,
        # The general suite sends many requests from one address and tenant; the API rate
        # limits' defaults are tested in tests/integration/test_api_rate_limits.py.
        "rate_limit_ip_per_minute": 1_000_000,
        "rate_limit_tenant_per_minute": 1_000_000,
        "login_attempts_per_ip_per_minute": 1_000_000,
        "login_attempts_per_account_per_minute": 1_000_000,
        **overrides,
    }
    return load_settings(values, environ={})


class World:
    """Two tenants with a unit each, and a credential of every kind for each."""

    def __init__(self, client: httpx.AsyncClient, services: Services) -> None:
        self.client = client
        self.services = services
        self.headers: dict[str, dict[str, str]] = {}

    async def login(self, email: str, password: str) -> dict[str, str]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return {"authorization": f"Bearer {response.json()['token']}"}

    async def build(self) -> World:
        svc = self.services
        await svc.users.create(
            None, email=ADMIN_EMAIL, password=ADMIN_PASSWORD, role=Role.ADMIN, org_id=None
        )
        self.headers["admin"] = admin = await self.login(ADMIN_EMAIL, ADMIN_PASSWORD)
        for org_id, unit_id, name in ((100, 101, "a"), (200, 201, "b")):
            await self._post("/api/v1/admin/orgs", {"orgId": org_id, "name": f"Org {name}"}, admin)
            await self._post(
                f"/api/v1/admin/orgs/{org_id}/units",
                {"rid": unit_id, "name": f"Unit {name}"},
                admin,
            )
            email = f"user-{name}@example.com"
            await self._post(
                "/api/v1/admin/users",
                {"email": email, "password": "password-123", "role": "USER", "orgId": org_id},
                admin,
            )
            self.headers[f"user_{name}"] = await self.login(email, "password-123")
            key = await self._post("/api/v1/admin/api-keys", {"orgId": org_id, "name": name}, admin)
            self.headers[f"key_{name}"] = {"x-api-key": key["key"]}
        return self

    async def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        response = await self.client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()


_ATTEMPT_ROW = AttemptRow(
    id="dlv_1",
    org_id=1,
    integration_id="int_1",
    integration_name="sink",
    delivery_id="msg_1",
    job_id=None,
    event_id="evt_1",
    event_type="order.created",
    status="SUCCESS",
    target_url="https://example.com/hook",
    http_method="POST",
    response_status=200,
    response_time_ms=3,
    attempt_count=1,
    error_message=None,
    error_category=None,
    original_payload=b"{}",
    request_headers=None,
    request_body=b"{}",
    response_headers=None,
    response_body=None,
    correlation_id=None,
    trace_id=None,
    signature=None,
    trigger_type="EVENT",
    action_name=None,
    action_index=None,
    should_retry=False,
    steps=None,
    created_at=datetime(2030, 1, 1, tzinfo=UTC),
    delivered_at=None,
)


def attempt_row(row_id: str, **fields: Any) -> AttemptRow:
    """A delivery-log row: a plain successful attempt, with ``fields`` instead."""
    return replace(_ATTEMPT_ROW, id=row_id, **fields)
