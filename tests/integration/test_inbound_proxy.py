"""The runtime proxy /api/v1/integrations/{type}: a real upstream on 127.0.0.1 (the recording
sink), both databases. Auth on both sides, transformations, retries, 502/504 with DLQ and
INBOUND delivery logs, rate limits, smuggling and traversal, SSRF, tenant isolation."""

from __future__ import annotations

import base64
import socket
from typing import Any

import httpx
import orjson
import pytest
from tests.integration.inbound_helpers import (
    GOOD_KEY,
    PROXY,
    client_fixture,  # noqa: F401 (fixtures)
    create,
    integration,
    services_fixture,  # noqa: F401
    settings_fixture,  # noqa: F401
    sink_fixture,  # noqa: F401
)
from tests.support import World

from junctionbox.api.app import create_app
from junctionbox.testing import Behaviour, RecordingSink

CALL = f"{PROXY}/appointment-booking?orgId=100"
PATIENT = {"patientId": "p-1", "slot": "09:00", "note": "x"}


async def _logs(world: World, **query: str) -> list[dict[str, Any]]:
    await world.services.proxy.logs.flush()
    params = "&".join(f"{k}={v}" for k, v in {"direction": "INBOUND", **query}.items())
    response = await world.client.get(f"/api/v1/logs?{params}", headers=world.headers["user_a"])
    assert response.status_code == 200, response.text
    return list(response.json()["logs"])


async def _dlq(world: World) -> list[dict[str, Any]]:
    response = await world.client.get("/api/v1/dlq", headers=world.headers["user_a"])
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


async def test_passes_the_call_through(world: World, sink: RecordingSink) -> None:
    sink.on(
        "/book",
        Behaviour(201, b'{"booked": true}', {"content-type": "application/json", "x-up": "1"}),
    )
    await create(world, integration(sink))
    response = await world.client.post(
        f"{CALL}&extra=1",
        content=orjson.dumps(PATIENT),
        headers={
            **world.headers["key_a"],
            "content-type": "application/json",
            "cookie": "session=ours",
            "connection": "x-drop-me",
            "x-drop-me": "1",
            "x-custom": "kept",
            "x-forwarded-for": "6.6.6.6",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"booked": True}
    assert response.headers["x-up"] == "1"
    (seen,) = sink.requests
    assert seen.method == "POST"
    assert seen.path == "/book"
    assert seen.query == "extra=1"
    assert orjson.loads(seen.body) == PATIENT
    assert seen.header("x-custom") == "kept"
    for hidden in ("x-api-key", "cookie", "x-drop-me", "authorization"):
        assert seen.header(hidden) is None, hidden
    assert seen.header("x-forwarded-for") == "127.0.0.1"  # the untrusted incoming one is replaced
    assert seen.header("x-forwarded-proto") == "http"
    assert seen.header("x-forwarded-host") == "testserver"
    (row,) = await _logs(world)
    assert row["direction"] == "INBOUND"
    assert row["status"] == "SUCCESS"
    assert row["responseStatus"] == 201
    assert row["attemptCount"] == 1


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.0/8"}])
async def test_trusted_proxy_forwarded_headers_are_kept(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    headers = {
        **world.headers["key_a"],
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-proto": "https",
    }
    assert (await world.client.post(CALL, json=PATIENT, headers=headers)).status_code == 200
    (seen,) = sink.requests
    assert seen.header("x-forwarded-for") == "203.0.113.9, 127.0.0.1"
    assert seen.header("x-forwarded-proto") == "https"


async def test_platform_credential_is_required(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    response = await world.client.post(CALL, json=PATIENT)
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"
    assert sink.requests == []


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("auth_type", "config", "right", "wrong"),
    [
        (
            "API_KEY",
            {"value": GOOD_KEY},
            {"x-integration-key": GOOD_KEY},
            {"x-integration-key": GOOD_KEY + "x"},
        ),
        (
            "API_KEY",
            {"name": "X-Partner", "value": GOOD_KEY},
            {"x-partner": GOOD_KEY},
            {"x-integration-key": GOOD_KEY},
        ),
        (
            "BEARER",
            {"token": GOOD_KEY},
            {"authorization": f"Bearer {GOOD_KEY}"},
            {"authorization": f"Basic {GOOD_KEY}"},
        ),
        (
            "BASIC",
            {"username": "partner", "password": GOOD_KEY},
            {"authorization": _basic("partner", GOOD_KEY)},
            {"authorization": _basic("other", GOOD_KEY)},
        ),
    ],
)
async def test_inbound_credentials(
    world: World,
    sink: RecordingSink,
    auth_type: str,
    config: dict[str, str],
    right: dict[str, str],
    wrong: dict[str, str],
) -> None:
    await create(world, integration(sink, inboundAuthType=auth_type, inboundAuthConfig=config))
    platform = world.headers["key_a"]
    for headers in (wrong, {}):
        refused = await world.client.post(CALL, json=PATIENT, headers={**platform, **headers})
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "UNAUTHORIZED"
    assert sink.requests == []
    accepted = await world.client.post(CALL, json=PATIENT, headers={**platform, **right})
    assert accepted.status_code == 200, accepted.text
    (seen,) = sink.requests
    for name in right:  # the partner's credential for us never reaches the upstream
        assert seen.header(name) is None


async def test_outgoing_auth_is_added(world: World, sink: RecordingSink) -> None:
    await create(
        world,
        integration(
            sink,
            outgoingAuthType="API_KEY",
            outgoingAuthConfig={"name": "X-Upstream-Key", "value": "upstream-secret-1"},
        ),
    )
    assert (
        await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    ).status_code == 200
    assert sink.requests[0].header("x-upstream-key") == "upstream-secret-1"
    (row,) = await _logs(world)
    assert "upstream-secret-1" not in orjson.dumps(row).decode()


REQUEST_MODES = [
    {"requestFieldMappings": [{"sourceField": "patientId", "targetField": "patient.id"}]},
    {
        "requestTransformationMode": "JSONATA",
        "requestTransformScript": '{"patient": {"id": patientId}}',
    },
    {
        "requestTransformationMode": "SCRIPT",
        "requestTransformScript": "return { patient: { id: payload.patientId } };",
    },
]


@pytest.mark.parametrize("mode", REQUEST_MODES, ids=["SIMPLE", "JSONATA", "SCRIPT"])
async def test_request_transformation(
    world: World, sink: RecordingSink, mode: dict[str, Any]
) -> None:
    await create(world, integration(sink, **mode))
    response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert response.status_code == 200, response.text
    (seen,) = sink.requests
    assert orjson.loads(seen.body) == {"patient": {"id": "p-1"}}
    assert seen.header("content-type") == "application/json"


RESPONSE_MODES = [
    {"responseFieldMappings": [{"sourceField": "data.ref", "targetField": "reference"}]},
    {"responseTransformationMode": "JSONATA", "responseTransformScript": '{"reference": data.ref}'},
    {
        "responseTransformationMode": "SCRIPT",
        "responseTransformScript": "return { reference: payload.data.ref };",
    },
]


@pytest.mark.parametrize("mode", RESPONSE_MODES, ids=["SIMPLE", "JSONATA", "SCRIPT"])
async def test_response_transformation(
    world: World, sink: RecordingSink, mode: dict[str, Any]
) -> None:
    upstream = orjson.dumps({"data": {"ref": "R-9", "internal": "hidden"}})
    sink.on("/book", Behaviour(200, upstream, {"content-type": "application/json"}))
    await create(world, integration(sink, **mode))
    response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert response.status_code == 200, response.text
    assert response.json() == {"reference": "R-9"}
    assert response.headers["content-type"] == "application/json"


async def test_malformed_json_with_a_transformation_is_400(
    world: World, sink: RecordingSink
) -> None:
    await create(world, integration(sink, **REQUEST_MODES[1]))
    response = await world.client.post(
        CALL,
        content=b'{"patientId": ',
        headers={**world.headers["key_a"], "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert sink.requests == []


async def test_response_not_json_for_a_transformation_is_502(
    world: World, sink: RecordingSink
) -> None:
    sink.on("/book", Behaviour(200, b"<html>"))
    await create(world, integration(sink, **RESPONSE_MODES[1]))
    response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert response.status_code == 502


async def test_idempotent_call_is_retried_after_5xx(world: World, sink: RecordingSink) -> None:
    sink.on("/book", Behaviour(500), Behaviour(503), Behaviour(200, b"ok"))
    await create(world, integration(sink, httpMethod="GET"))
    response = await world.client.get(CALL, headers=world.headers["key_a"])
    assert response.status_code == 200
    assert response.content == b"ok"
    assert len(sink.requests) == 3
    (row,) = await _logs(world)
    assert row["attemptCount"] == 3
    assert row["status"] == "SUCCESS"


async def test_network_errors_are_retried_then_502_with_dlq(
    world: World, sink: RecordingSink
) -> None:
    sink.on("/book", Behaviour.reset())
    await create(world, integration(sink, httpMethod="PUT", retryPolicy={"maxRetries": 3}))
    response = await world.client.put(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["code"] == "BAD_GATEWAY"
    assert set(body) >= {
        "error",
        "statusCode",
        "timestamp",
        "requestId",
    }
    # 4 of ours; aiohttp may add one retry of its own per reset of a pooled connection.
    assert 4 <= len(sink.requests) <= 8
    (entry,) = await _dlq(world)
    assert entry["direction"] == "INBOUND"
    assert entry["status"] == "ABANDONED"
    assert entry["deliveryAttempts"] == 4
    (row,) = await _logs(world, status="FAILED")
    assert row["errorCategory"] == "NETWORK_ERROR"


async def test_a_failure_with_a_long_caller_request_id_is_recorded(
    world: World, sink: RecordingSink
) -> None:
    sink.on("/book", Behaviour.reset())
    await create(world, integration(sink, retryPolicy={"maxRetries": 0}))
    long_id = "req_" + "F" * 100
    headers = {**world.headers["key_a"], "x-request-id": long_id}
    response = await world.client.post(CALL, json=PATIENT, headers=headers)
    assert response.status_code == 502, response.text
    (entry,) = await _dlq(world)
    assert entry["deliveryId"] == long_id[:40]
    (row,) = await _logs(world, status="FAILED")
    assert row["deliveryId"] == long_id[:40]


async def test_post_is_not_retried_unless_configured(world: World, sink: RecordingSink) -> None:
    sink.on("/book", Behaviour(500, b"boom"))
    created = await create(world, integration(sink))
    response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert response.status_code == 502
    assert "HTTP 500" in response.json()["error"]
    assert len(sink.requests) == 1
    (entry,) = await _dlq(world)
    assert entry["lastError"] == "upstream answered HTTP 500"
    redrive = await world.client.post(
        f"/api/v1/dlq/{entry['id']}/retry", headers=world.headers["user_a"]
    )
    assert redrive.status_code == 409  # a proxied call is never re-sent by junctionbox
    await world.client.patch(
        f"/api/v1/inbound-integrations/{created['id']}",
        json={"retryPolicy": {"retryNonIdempotent": True}},
        headers=world.headers["user_a"],
    )
    again = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert again.status_code == 502
    assert len(sink.requests) == 1 + 3


async def test_client_errors_pass_through_unretried(world: World, sink: RecordingSink) -> None:
    sink.on(
        "/book", Behaviour(422, b'{"error": "slot taken"}', {"content-type": "application/json"})
    )
    await create(world, integration(sink, httpMethod="GET"))
    response = await world.client.get(CALL, headers=world.headers["key_a"])
    assert response.status_code == 422
    assert response.json() == {"error": "slot taken"}
    assert len(sink.requests) == 1
    assert await _dlq(world) == []


async def test_timeout_is_504_with_dlq(world: World, sink: RecordingSink) -> None:
    sink.on("/book", Behaviour.hang())
    await create(world, integration(sink, httpMethod="GET", timeoutMs=300))
    response = await world.client.get(CALL, headers=world.headers["key_a"])
    assert response.status_code == 504
    assert response.json()["code"] == "GATEWAY_TIMEOUT"
    assert len(sink.requests) == 1  # a timeout is not retried
    (entry,) = await _dlq(world)
    assert entry["errorCategory"] == "TIMEOUT"


async def test_rate_limit(world: World, sink: RecordingSink) -> None:
    await create(
        world,
        integration(sink, rateLimits={"enabled": True, "maxRequests": 2, "windowSeconds": 60}),
    )
    statuses = []
    for _ in range(3):
        response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert response.json()["code"] == "RATE_LIMITED"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit"] == "2"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert len(sink.requests) == 2


async def test_unknown_inactive_and_wrong_method(world: World, sink: RecordingSink) -> None:
    created = await create(world, integration(sink))
    unknown = await world.client.post(
        f"{PROXY}/nope?orgId=100", json={}, headers=world.headers["key_a"]
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "NOT_FOUND"
    method = await world.client.get(CALL, headers=world.headers["key_a"])
    assert method.status_code == 405
    assert method.headers["allow"] == "POST"
    await world.client.post(
        f"/api/v1/inbound-integrations/{created['id']}/disable", headers=world.headers["user_a"]
    )
    inactive = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert inactive.status_code == 404
    assert sink.requests == []


async def test_body_over_the_limit_is_413(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    big = b"x" * (64 * 1024 + 1)
    response = await world.client.post(CALL, content=big, headers=world.headers["key_a"])
    assert response.status_code == 413
    assert sink.requests == []


async def test_ambiguous_framing_is_400(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    for extra in (
        {"transfer-encoding": "chunked", "content-length": "2"},
        {"transfer-encoding": "gzip, chunked"},
    ):
        response = await world.client.post(
            CALL, content=b"{}", headers={**world.headers["key_a"], **extra}
        )
        assert response.status_code == 400, (extra, response.text)
    assert sink.requests == []


@pytest.mark.parametrize(
    "sub",
    ["%2e%2e/admin", "a/%2E%2e/%2e%2e/admin", "a%2fb", "..%5c..%5cadmin", "%00"],
)
async def test_sub_path_cannot_escape_the_target(
    world: World, sink: RecordingSink, sub: str
) -> None:
    await create(world, integration(sink, targetUrl=sink.url("/api/v2"), httpMethod="GET"))
    response = await world.client.get(
        f"{PROXY}/appointment-booking/{sub}?orgId=100", headers=world.headers["key_a"]
    )
    assert response.status_code in (400, 404), response.text
    assert sink.requests == []


async def test_sub_path_is_appended_inside_the_target(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink, targetUrl=sink.url("/api/v2?fixed=1"), httpMethod="GET"))
    response = await world.client.get(
        f"{PROXY}/appointment-booking/slots//2026%20Jan?orgId=100&day=mon",
        headers=world.headers["key_a"],
    )
    assert response.status_code == 200, response.text
    (seen,) = sink.requests
    assert seen.path == "/api/v2/slots/2026 Jan"
    assert seen.query == "fixed=1&day=mon"


async def test_private_upstream_is_refused(world: World, sink: RecordingSink) -> None:
    # Saving refuses literal private addresses; a name that resolves to one is refused
    # when the call is made (the allowlist names only the sink's port).
    refused = await world.client.post(
        "/api/v1/inbound-integrations?orgId=100",
        json=integration(sink, targetUrl="http://127.0.0.1:1/x"),
        headers=world.headers["user_a"],
    )
    assert refused.status_code == 400
    host = socket.gethostname()
    async with RecordingSink() as other:  # listening, but not on the allowlist
        await create(world, integration(sink, targetUrl=f"http://{host}:{other.port}/book"))
        response = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
        assert response.status_code == 502
        assert other.requests == []
    (entry,) = await _dlq(world)
    assert entry["errorCategory"] == "NETWORK_ERROR"


async def test_tenant_isolation_and_parent_fallback(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    other = await world.client.post(
        f"{PROXY}/appointment-booking?orgId=200", json=PATIENT, headers=world.headers["key_b"]
    )
    assert other.status_code == 404
    forged = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_b"])
    assert forged.status_code == 404  # org b may not act for org 100
    assert sink.requests == []
    unit = await world.client.post(
        f"{PROXY}/appointment-booking?orgId=101", json=PATIENT, headers=world.headers["key_a"]
    )
    assert unit.status_code == 200  # the unit uses its organization's integration
    rows = await _logs(world)
    assert [r["orgId"] for r in rows] == [101]


async def test_changes_reach_the_proxy_at_once(world: World, sink: RecordingSink) -> None:
    created = await create(world, integration(sink, targetUrl=sink.url("/one")))
    assert (
        await world.client.post(CALL, json={}, headers=world.headers["key_a"])
    ).status_code == 200
    await world.client.patch(
        f"/api/v1/inbound-integrations/{created['id']}",
        json={"targetUrl": sink.url("/two")},
        headers=world.headers["user_a"],
    )
    assert (
        await world.client.post(CALL, json={}, headers=world.headers["key_a"])
    ).status_code == 200
    assert [r.path for r in sink.requests] == ["/one", "/two"]


async def test_head_and_options_when_allowed(world: World, sink: RecordingSink) -> None:
    body = b'{"slots": ["09:00", "10:00"]}'
    sink.on("/book", Behaviour(200, body, {"content-type": "application/json", "x-up": "1"}))
    await create(world, integration(sink, httpMethod="GET", allowedMethods=["GET", "HEAD"]))
    head = await world.client.head(CALL, headers=world.headers["key_a"])
    assert head.status_code == 200, head.text
    assert head.content == b""  # no body to HEAD...
    assert head.headers["content-length"] == str(len(body))  # ...but the GET's length
    assert head.headers["x-up"] == "1"
    assert "x-request-id" in head.headers
    options = await world.client.options(CALL, headers=world.headers["key_a"])
    assert options.status_code == 405  # not allowed by this integration
    assert options.headers["allow"] == "GET, HEAD"
    assert [r.method for r in sink.requests] == ["HEAD"]
    (row,) = await _logs(world)
    assert row["httpMethod"] == "HEAD"
    assert row["status"] == "SUCCESS"


async def test_options_forwarded_when_allowed(world: World, sink: RecordingSink) -> None:
    sink.on("/book", Behaviour(204, b"", {"allow": "GET, POST, OPTIONS"}))
    await create(world, integration(sink, allowedMethods=["POST", "OPTIONS"]))
    response = await world.client.options(CALL, headers=world.headers["key_a"])
    assert response.status_code == 204, response.text
    assert response.headers["allow"] == "GET, POST, OPTIONS"
    assert [r.method for r in sink.requests] == ["OPTIONS"]


async def test_head_and_options_are_refused_at_save_unless_listed(
    world: World, sink: RecordingSink
) -> None:
    bad = await world.client.post(
        "/api/v1/inbound-integrations?orgId=100",
        json=integration(sink, allowedMethods=["POST", "TRACE"]),
        headers=world.headers["user_a"],
    )
    assert bad.status_code == 400
    assert "HEAD" in bad.text  # the methods it accepts are named
    assert "OPTIONS" in bad.text


async def test_one_id_per_call_and_never_the_callers(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))
    ours = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert ours.status_code == 200
    request_id = ours.headers["x-request-id"]
    assert request_id.startswith("req_")
    named = {**world.headers["key_a"], "x-request-id": "req_CALLERS0WN0000000000000000"}
    theirs = await world.client.post(CALL, json=PATIENT, headers=named)
    assert theirs.headers["x-request-id"] == "req_CALLERS0WN0000000000000000"
    rows = {row["deliveryId"]: row for row in await _logs(world)}
    # The log row shares the body of the request id junctionbox drew...
    assert rows[request_id]["id"] == "dlg_" + request_id.removeprefix("req_")
    # ...but a caller's id is never made a row's key (it could collide).
    assert rows["req_CALLERS0WN0000000000000000"]["id"] != "dlg_CALLERS0WN0000000000000000"
    assert rows["req_CALLERS0WN0000000000000000"]["id"].startswith("dlg_")


async def test_a_long_caller_request_id_does_not_lose_log_rows(
    world: World, sink: RecordingSink
) -> None:
    """The edge accepts request ids of up to 128 characters; the log's ``delivery_id`` column
    holds 40. Such a row once failed its whole batch on PostgreSQL (every call logged with
    it was lost): it is cut to the column, and the other calls' rows are written."""
    await create(world, integration(sink))
    long_id = "req_" + "L" * 100
    named = {**world.headers["key_a"], "x-request-id": long_id}
    theirs = await world.client.post(CALL, json=PATIENT, headers=named)
    ours = await world.client.post(CALL, json=PATIENT, headers=world.headers["key_a"])
    assert theirs.status_code == ours.status_code == 200
    assert theirs.headers["x-request-id"] == long_id
    rows = {row["deliveryId"]: row for row in await _logs(world)}
    assert set(rows) == {long_id[:40], ours.headers["x-request-id"]}


async def test_streamed_body_over_the_limit_is_413(world: World, sink: RecordingSink) -> None:
    await create(world, integration(sink))

    async def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(20):
            yield b"x" * 4096

    response = await world.client.post(CALL, content=chunks(), headers=world.headers["key_a"])
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "x-request-id" in response.headers
    assert sink.requests == []


async def test_the_documented_route_serves_the_call_without_the_fast_path(
    world: World, sink: RecordingSink
) -> None:
    sink.on("/book", Behaviour(201, b'{"booked": true}', {"x-up": "1"}))
    await create(world, integration(sink))
    app = create_app(world.services)
    transport = httpx.ASGITransport(app=app.framework)  # FastAPI alone: its router and route
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(CALL, json=PATIENT, headers=world.headers["key_a"])
        missing = await http.post(
            f"{PROXY}/nope?orgId=100", json={}, headers=world.headers["key_a"]
        )
    assert response.status_code == 201, response.text
    assert response.json() == {"booked": True}
    assert response.headers["x-up"] == "1"
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    assert len(sink.requests) == 1
