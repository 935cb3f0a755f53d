"""The error envelope, request ids, body limits and health, as every endpoint shares them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from tests.support import World, make_settings

from junctionbox.api.app import build_routes_now, create_app
from junctionbox.runtime import build_services
from junctionbox.services.container import Services

ENVELOPE_KEYS = {"error", "code", "statusCode", "timestamp", "requestId"}


async def test_malformed_json_is_400_with_its_position(world: World) -> None:
    response = await world.client.post(
        "/api/v1/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body.keys() >= ENVELOPE_KEYS
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"][0]["loc"][0] == "body"


async def test_validation_errors_name_the_field(world: World) -> None:
    response = await world.client.post(
        "/api/v1/admin/orgs",
        json={"name": "", "timezone": "Mars/Olympus", "bogus": 1},
        headers=world.headers["admin"],
    )
    assert response.status_code == 400
    locations = {tuple(d["loc"]) for d in response.json()["details"]}
    assert {("body", "name"), ("body", "timezone"), ("body", "bogus")} <= locations


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/does-not-exist")
    assert missing.status_code == 404
    assert missing.json().keys() >= ENVELOPE_KEYS
    wrong_method = await client.delete("/api/v1/auth/login")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/api/v1/health", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert echoed.headers["x-correlation-id"] == "abc-123"
    generated = await client.get("/api/v1/health", headers={"x-request-id": "bad id\twith tab"})
    assert generated.headers["x-request-id"].startswith("req_")
    error = await client.get("/api/v1/auth/me", headers={"x-request-id": "trace-me"})
    assert error.json()["requestId"] == "trace-me"
    correlated = await client.get("/api/v1/health", headers={"x-correlation-id": "flow-7"})
    assert correlated.headers["x-correlation-id"] == "flow-7"


async def test_body_over_the_limit_is_413_before_it_is_read(client: httpx.AsyncClient) -> None:
    big = b"x" * (64 * 1024 + 1)
    declared = await client.post(
        "/api/v1/auth/login", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(100):
            yield b"x" * 4096

    streamed = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_health_reports_the_database(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/health", "/health", "/api/v1/health/ready"):
        response = await client.get(path)
        assert response.status_code == 200, path
    body = (await client.get("/api/v1/health")).json()
    assert body["status"] == "healthy"
    assert body["checks"]["database"]["status"] == "pass"  # seed 001: pass, warn or fail


async def test_health_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path)
    services = build_services(settings)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        health = await http.get("/api/v1/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy"
        assert (await http.get("/api/v1/health/ready")).status_code == 503
        assert (await http.get("/api/v1/health/live")).status_code == 200
        login = await http.post(
            "/api/v1/auth/login", json={"email": "a@b.c", "password": "password"}
        )
        assert login.status_code == 503
        assert login.json()["code"] == "SERVICE_UNAVAILABLE"
    await services.db.dispose()


async def test_unexpected_errors_are_opaque_500s(world: World, monkeypatch) -> None:
    async def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals: /etc/passwd")

    monkeypatch.setattr(world.services.tenancy, "describe", explode)
    response = await world.client.get("/api/v1/tenant?orgId=100", headers=world.headers["admin"])
    assert response.status_code == 500
    assert response.json()["error"] == "internal error"
    assert "passwd" not in response.text


async def test_openapi_documents_typed_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    login = spec["paths"]["/api/v1/auth/login"]["post"]
    assert "requestBody" in login
    assert login["responses"]["200"]["content"]["application/json"]["schema"]
    assert (await client.get("/docs")).status_code == 200
    untyped = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if not any(
            "content" in response or code == "204"
            for code, response in operation["responses"].items()
            if code.startswith("2")
        )
    ]
    assert untyped == []


async def test_routes_built_at_start_up_build_nothing_on_first_requests(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI builds a router's routes on the first request that reaches it (tens of ms
    of blocked loop each); the server builds them all at start-up instead."""
    app = create_app(services)
    assert build_routes_now(app) > 20
    built_later: list[str] = []
    from_api_route = fastapi.routing._EffectiveRouteContext.from_api_route

    def recording(*args: Any, **kwargs: Any) -> Any:
        built_later.append(kwargs["original_route"].path)
        return from_api_route(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing._EffectiveRouteContext, "from_api_route", recording)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        for path in ["/api/v1/health", "/api/v1/outbound-integrations", "/api/v1/logs"]:
            assert (await http.get(path)).status_code in {200, 401}
    assert built_later == []
