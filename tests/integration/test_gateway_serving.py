"""Serving gateway routes end to end, /gw/{orgId}/..., against real upstreams on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from tests.integration.gateway_helpers import BASE, configure, gateway_world
from tests.support import World

from junctionbox.testing import Behaviour, RecordingSink

SECRET = "gateway-test-hmac-secret-0123456789"


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as sink:
        yield sink


@pytest.fixture
async def gw_world(db_url: str, tmp_path: Path, upstream: RecordingSink) -> AsyncIterator[World]:
    async with gateway_world(db_url, tmp_path, upstream) as world:
        yield world


async def add(world: World, body: dict[str, Any], org: int = 100) -> dict[str, Any]:
    who = "user_a" if org == 100 else "user_b"
    return await configure(world.client, world.headers[who], org, body)


def token(**claims: Any) -> str:
    payload = {"sub": "client-1", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


async def test_proxies_with_params_query_and_forwarding_headers(
    gw_world: World, upstream: RecordingSink
) -> None:
    upstream.on(
        "/api/v2/orders/7",
        Behaviour(200, b'{"id": 7}', {"Content-Type": "application/json", "X-Up": "1"}),
    )
    await add(
        gw_world,
        {
            "path": "/orders/{id}",
            "targetUrl": upstream.url("/api"),
            "targetEndpoint": "/v2/orders/{id}",
        },
    )
    response = await gw_world.client.get(
        "/gw/100/orders/7?expand=lines",
        headers={"Connection": "X-Drop", "X-Drop": "1", "X-Keep": "k", "TE": "trailers"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": 7}
    assert response.headers["x-up"] == "1"
    sent = upstream.requests[-1]
    assert sent.path == "/api/v2/orders/7"
    assert sent.query == "expand=lines"
    assert sent.header("x-keep") == "k"
    assert sent.header("x-drop") is None  # named by Connection: hop-by-hop
    assert sent.header("te") is None
    assert sent.header("x-forwarded-for") == "198.51.100.7"
    assert sent.header("x-forwarded-prefix") == "/gw/100"


async def test_wildcard_routes_and_errors_for_bad_requests(
    gw_world: World, upstream: RecordingSink
) -> None:
    await add(gw_world, {"path": "/files/*", "targetUrl": upstream.url("/store")})
    ok = await gw_world.client.get("/gw/100/files/a/b.txt")
    assert ok.status_code == 200
    assert upstream.requests[-1].path == "/store/files/a/b.txt"
    wrong_method = await gw_world.client.post("/gw/100/files/a")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"
    assert wrong_method.json()["code"] == "METHOD_NOT_ALLOWED"
    traversal = await gw_world.client.get("/gw/100/files/%2e%2e/secret")
    assert traversal.status_code == 400
    missing = await gw_world.client.get("/gw/100/nothing")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    # tenant isolation: org 200 has no such route, and a route of org 200 is not org 100's
    assert (await gw_world.client.get("/gw/200/files/a")).status_code == 404
    await add(gw_world, {"path": "/only-b", "targetUrl": upstream.url()}, org=200)
    assert (await gw_world.client.get("/gw/100/only-b")).status_code == 404
    assert (await gw_world.client.get("/gw/200/only-b")).status_code == 200
    assert (await gw_world.client.get("/gw/abc/x")).status_code == 404


async def test_api_key_authentication(gw_world: World, upstream: RecordingSink) -> None:
    await add(
        gw_world,
        {"path": "/secure", "targetUrl": upstream.url(), "authentication": {"type": "API_KEY"}},
    )
    client = gw_world.client
    assert (await client.get("/gw/100/secure")).status_code == 401
    assert (
        await client.get("/gw/100/secure", headers=gw_world.headers["key_b"])
    ).status_code == 401
    bogus = {"x-api-key": "jb_nope"}
    assert (await client.get("/gw/100/secure", headers=bogus)).status_code == 401
    ok = await client.get("/gw/100/secure", headers=gw_world.headers["key_a"])
    assert ok.status_code == 200
    assert upstream.requests[-1].header("x-api-key") is None  # our key never goes upstream
    # a unit's route takes its organization's keys, not another organization's
    await configure(
        gw_world.client,
        gw_world.headers["user_a"],
        101,
        {"path": "/unit", "targetUrl": upstream.url(), "authentication": {"type": "API_KEY"}},
    )
    assert (await client.get("/gw/101/unit", headers=gw_world.headers["key_a"])).status_code == 200
    assert (await client.get("/gw/101/unit", headers=gw_world.headers["key_b"])).status_code == 401


async def test_jwt_authentication_and_authorization(
    gw_world: World, upstream: RecordingSink
) -> None:
    await add(
        gw_world,
        {
            "path": "/reports",
            "targetUrl": upstream.url(),
            "authentication": {
                "type": "JWT",
                "jwt": {"secret": SECRET, "issuer": "idp", "audience": "gw"},
            },
            "authorization": {"roles": ["analyst", "admin"], "scopes": ["reports:read"]},
        },
    )
    client = gw_world.client

    async def call(bearer: str | None) -> int:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        return (await client.get("/gw/100/reports", headers=headers)).status_code

    good = {"iss": "idp", "aud": "gw", "roles": ["analyst"], "scope": "reports:read other"}
    assert await call(None) == 401
    assert await call(token(**good)) == 200
    assert await call(jwt.encode({**good, "exp": 1}, SECRET, algorithm="HS256")) == 401
    assert await call(jwt.encode({**good, "exp": 2**31}, "x" * 32, algorithm="HS256")) == 401
    assert await call(token(**{**good, "aud": "other"})) == 401
    assert await call(token(**{**good, "roles": ["viewer"]})) == 403
    assert await call(token(**{**good, "scope": "other"})) == 403
    assert len(upstream.requests) == 1


async def test_get_responses_are_cached_for_their_ttl(
    gw_world: World, upstream: RecordingSink
) -> None:
    upstream.on("/price", Behaviour(200, b'{"p": 1}'), Behaviour(200, b'{"p": 2}'))
    route = await add(
        gw_world,
        {"path": "/price", "targetUrl": upstream.url(), "caching": {"enabled": True}},
    )
    first = await gw_world.client.get("/gw/100/price")
    second = await gw_world.client.get("/gw/100/price")
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.json() == {"p": 1}
    assert len(upstream.requests) == 1
    other_query = await gw_world.client.get("/gw/100/price?currency=eur")
    assert other_query.headers["x-cache"] == "MISS"
    # changing the route drops its cache
    await add(gw_world, {**_editable(route), "caching": {"enabled": True, "ttlSeconds": 5}})
    assert (await gw_world.client.get("/gw/100/price")).headers["x-cache"] == "MISS"


def _editable(route: dict[str, Any]) -> dict[str, Any]:
    drop = {"orgId", "name", "gatewayPath", "createdAt", "updatedAt", "status"}
    return {k: v for k, v in route.items() if k not in drop}


async def test_versioning_by_path_and_header_with_deprecation(
    gw_world: World, upstream: RecordingSink
) -> None:
    await add(
        gw_world,
        {
            "path": "/users",
            "targetUrl": upstream.url("/v1"),
            "versioning": {
                "strategy": "path",
                "version": "v1",
                "deprecated": True,
                "deprecatedAt": "2026-01-01T00:00:00Z",
                "sunset": "2027-01-01T00:00:00Z",
                "link": "https://docs.example.com/migrate",
            },
        },
    )
    old = await gw_world.client.get("/gw/100/v1/users")
    assert old.status_code == 200
    assert upstream.requests[-1].path == "/v1/users"
    assert old.headers["deprecation"] == "@1767225600"
    assert old.headers["sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
    assert 'rel="deprecation"' in old.headers["link"]
    assert (await gw_world.client.get("/gw/100/users")).status_code == 404

    for version in ("2024-01", "2025-01"):
        await add(
            gw_world,
            {
                "path": "/items",
                "targetUrl": upstream.url(f"/{version}"),
                "versioning": {"strategy": "header", "version": version, "header": "Api-Version"},
            },
        )
    await gw_world.client.get("/gw/100/items", headers={"Api-Version": "2024-01"})
    assert upstream.requests[-1].path == "/2024-01/items"
    latest = await gw_world.client.get("/gw/100/items")
    assert latest.status_code == 200
    assert upstream.requests[-1].path == "/2025-01/items"
    assert "deprecation" not in latest.headers


async def test_request_and_response_transformation(
    gw_world: World, upstream: RecordingSink
) -> None:
    upstream.on(
        "/create",
        Behaviour(201, b'{"result": {"id": 9}, "internal": true}', {"X-Secret": "s"}),
    )
    await add(
        gw_world,
        {
            "path": "/create",
            "methods": ["POST"],
            "targetUrl": upstream.url(),
            "transformation": {
                "request": {
                    "headers": {"set": {"X-Partner-Key": "abc"}, "remove": ["X-Debug"]},
                    "body": {
                        "mode": "SIMPLE",
                        "fieldMappings": [{"sourceField": "name", "targetField": "customer.name"}],
                    },
                },
                "response": {
                    "headers": {"remove": ["X-Secret"], "set": {"X-Gateway": "jb"}},
                    "body": {"mode": "JSONATA", "script": '{"id": result.id}'},
                },
            },
        },
    )
    response = await gw_world.client.post(
        "/gw/100/create", json={"name": "Ada", "extra": 1}, headers={"X-Debug": "1"}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"id": 9}
    assert response.headers["x-gateway"] == "jb"
    assert "x-secret" not in response.headers
    sent = upstream.requests[-1]
    assert orjson.loads(sent.body) == {"customer": {"name": "Ada"}}
    assert sent.header("x-partner-key") == "abc"
    assert sent.header("x-debug") is None
    malformed = await gw_world.client.post(
        "/gw/100/create", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400


async def test_ip_rules_https_and_cors(gw_world: World, upstream: RecordingSink) -> None:
    client, headers = gw_world.client, gw_world.headers["user_a"]
    route = await add(
        gw_world, {"path": "/open", "methods": ["GET", "POST"], "targetUrl": upstream.url()}
    )
    assert (await client.get("/gw/100/open")).status_code == 200

    async def security(body: dict[str, Any]) -> None:
        response = await client.put(f"{BASE}/security?orgId=100", json=body, headers=headers)
        assert response.status_code == 200, response.text

    await security({"ipRules": {"deny": ["198.51.100.0/24"]}})
    denied = await client.get("/gw/100/open")
    assert denied.status_code == 403
    assert denied.json()["code"] == "FORBIDDEN"
    await security({"ipRules": {"allow": ["10.0.0.0/8"]}})
    assert (await client.get("/gw/100/open")).status_code == 403
    await security({"ipRules": {"allow": ["198.51.100.7/32"]}})
    assert (await client.get("/gw/100/open")).status_code == 200
    await security({"requireHttps": True})
    assert (await client.get("/gw/100/open")).status_code == 403

    await security({"cors": {"allowedOrigins": ["https://app.example"], "allowCredentials": True}})
    preflight = await client.options(
        "/gw/100/open",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = await client.options(
        "/gw/100/open",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    simple = await client.get("/gw/100/open", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    # a route's own security replaces the tenant's
    await client.put(
        f"{BASE}/security?orgId=100",
        json={"routeId": route["routeId"], "ipRules": {"deny": ["0.0.0.0/0"]}},
        headers=headers,
    )
    assert (await client.get("/gw/100/open")).status_code == 403


async def test_upstream_failures_are_502_and_504(gw_world: World, upstream: RecordingSink) -> None:
    upstream.on("/slow", Behaviour(delay=3.0))
    upstream.on("/reset", Behaviour.reset())
    await add(gw_world, {"path": "/slow", "targetUrl": upstream.url(), "timeoutSeconds": 0.3})
    await add(gw_world, {"path": "/reset", "targetUrl": upstream.url()})
    await add(gw_world, {"path": "/elsewhere", "targetUrl": "http://127.0.0.1:9"})
    slow = await gw_world.client.get("/gw/100/slow")
    assert slow.status_code == 504
    assert slow.json()["code"] == "GATEWAY_TIMEOUT"
    reset = await gw_world.client.get("/gw/100/reset")
    assert reset.status_code == 502
    assert reset.json()["code"] == "BAD_GATEWAY"
    refused = await gw_world.client.get("/gw/100/elsewhere")  # not allowlisted: SSRF guard
    assert refused.status_code == 502
    assert "SSRF" in refused.json()["error"]


async def test_round_robin_skips_an_upstream_marked_down(
    gw_world: World, upstream: RecordingSink
) -> None:
    upstream.on("/a/x", Behaviour(200, b"a"))
    upstream.on("/b/x", Behaviour.reset())
    await add(gw_world, {"path": "/x", "targets": [upstream.url("/a"), upstream.url("/b")]})
    bodies = [(await gw_world.client.get("/gw/100/x")).status_code for _ in range(6)]
    assert bodies == [200, 502, 200, 502, 200, 502]  # b fails 3 times in a row: down
    after = [(await gw_world.client.get("/gw/100/x")).status_code for _ in range(4)]
    assert after == [200, 200, 200, 200]
    health = await gw_world.client.get(
        f"{BASE}/health?orgId=100", headers=gw_world.headers["user_a"]
    )
    upstreams = health.json()["routes"][0]["upstreams"]
    assert [u["markedDown"] for u in upstreams] == [False, True]


async def test_per_route_and_per_client_rate_limits(
    gw_world: World, upstream: RecordingSink
) -> None:
    route = await add(
        gw_world,
        {
            "path": "/limited",
            "targetUrl": upstream.url(),
            "authentication": {"type": "API_KEY"},
            "rateLimiting": {"perClient": {"maxRequests": 2, "windowSeconds": 60}},
        },
    )
    key = gw_world.headers["key_a"]
    first = await gw_world.client.get("/gw/100/limited", headers=key)
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    await gw_world.client.get("/gw/100/limited", headers=key)
    limited = await gw_world.client.get("/gw/100/limited", headers=key)
    assert limited.status_code == 429
    assert limited.json()["code"] == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    # per route: shared by every client
    await gw_world.client.put(
        f"{BASE}/rate-limits?orgId=100",
        json={"routeId": route["routeId"], "perRoute": {"maxRequests": 1, "windowSeconds": 60}},
        headers=gw_world.headers["user_a"],
    )
    await add(gw_world, {"path": "/shared", "targetUrl": upstream.url()})
    await gw_world.client.put(
        f"{BASE}/rate-limits?orgId=100",
        json={"perRoute": {"maxRequests": 1, "windowSeconds": 60}},
        headers=gw_world.headers["user_a"],
    )
    assert (await gw_world.client.get("/gw/100/shared")).status_code == 200
    assert (await gw_world.client.get("/gw/100/shared")).status_code == 429


async def test_large_responses_stream_through(gw_world: World, upstream: RecordingSink) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    upstream.on("/big", Behaviour(200, payload, {"Content-Type": "application/octet-stream"}))
    await add(gw_world, {"path": "/big", "targetUrl": upstream.url()})
    response = await gw_world.client.get("/gw/100/big")
    assert response.status_code == 200
    assert response.content == payload


async def test_jwt_with_a_public_key_and_options_without_preflight(
    gw_world: World, upstream: RecordingSink
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    await add(
        gw_world,
        {
            "path": "/signed",
            "targetUrl": upstream.url(),
            "authentication": {
                "type": "JWT",
                "jwt": {"algorithms": ["ES256"], "publicKey": public_pem},
            },
        },
    )
    claims = {"sub": "svc", "exp": int(time.time()) + 300}
    good = jwt.encode(claims, private, algorithm="ES256")
    other = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    hmac = _hs256(claims, public_pem.encode())  # algorithm confusion: the public key as secret
    for bearer, status in ((good, 200), (other, 401), (hmac, 401)):
        response = await gw_world.client.get(
            "/gw/100/signed", headers={"authorization": f"Bearer {bearer}"}
        )
        assert response.status_code == status, bearer
    options = await gw_world.client.options("/gw/100/signed")
    assert options.status_code == 405
    assert options.headers["allow"] == "GET"


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses a PEM key as an HMAC secret)."""
    import base64
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(orjson.dumps({"alg": "HS256", "typ": "JWT"})) + "." + part(orjson.dumps(claims))
    signature = hmac.new(key, head.encode(), hashlib.sha256).digest()
    return head + "." + part(signature)
