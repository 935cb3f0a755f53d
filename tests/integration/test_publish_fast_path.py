"""The ASGI fast path for publishing answers exactly as the FastAPI route it stands in for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.support import World

from junctionbox.api.app import create_app
from junctionbox.api.publish_fast_path import PublishFastPath
from junctionbox.observability.http import RouteTemplate
from junctionbox.services.container import Services

PUBLISH = "/api/v1/integration/events/publish"
VOLATILE = {"timestamp", "requestId", "id", "offset", "partition"}


class ServedBy:
    """Records, per request, whether the fast path (not FastAPI's router) answered it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.fast: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.fast.append(isinstance(scope.get("route"), RouteTemplate))


@pytest.fixture
async def apps(
    services: Services,
) -> AsyncIterator[tuple[ServedBy, httpx.AsyncClient, httpx.AsyncClient]]:
    """A client of the app as served (fast path on) and one of the same app without it."""
    route_only = create_app(services)
    route_only.user_middleware = [
        m for m in route_only.user_middleware if m.cls is not PublishFastPath
    ]
    served = ServedBy(create_app(services))
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as fast,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=route_only), base_url="http://t"
        ) as slow,
    ):
        yield served, fast, slow


def _stable(value: Any) -> Any:
    """The JSON with what differs between two equal requests (ids, offsets, times) left out."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    headers = {
        k: v
        for k, v in response.headers.items()
        if k not in {"x-request-id", "x-correlation-id", "content-length"}
    }
    return response.status_code, headers, _stable(response.json())


def _cases(world: World) -> list[tuple[str, str, bytes, dict[str, str]]]:
    key, user = world.headers["key_a"], world.headers["user_a"]
    json_ = {**key, "content-type": "application/json"}
    event = b'{"type": "order.created", "data": {"n": 1}}'
    batch = orjson.dumps({"events": [{"type": "ok", "data": 1}, {"data": 2}]})
    return [
        ("one event", "", event, json_),
        (
            "a bearer token, a unit",
            "?orgId=101",
            event,
            {**user, "content-type": "application/json"},
        ),
        (
            "a batch to a stream",
            "?stream=orders",
            orjson.dumps({"events": [{"type": "t"}] * 3}),
            json_,
        ),
        ("partial, any letter case", "?partial=TRUE", batch, json_),
        ("partial off", "?partial=0", batch, json_),
        ("a repeated parameter: the last counts", "?stream=bad%20name&stream=good", event, json_),
        ("no credentials", "", event, {"content-type": "application/json"}),
        ("an unknown API key", "", event, {"x-api-key": "jb_nope", "content-type": "text/json"}),
        ("a bearer token that is not one", "", event, {"authorization": "Bearer x.y.z"}),
        ("another tenant", "?orgId=200", event, json_),
        ("orgId not a number", "?orgId=abc", event, json_),
        ("orgId zero", "?orgId=0", event, json_),
        ("orgId empty", "?orgId=", event, json_),
        ("orgId with leading zeros", "?orgId=0100", event, json_),
        ("orgId with a sign", "?orgId=%2B100", event, json_),
        ("orgId beyond the ids stored", "?orgId=" + "9" * 25, event, json_),
        ("orgId not a number and no credentials", "?orgId=x", event, {}),
        ("a bad stream name", "?stream=no%20spaces", event, json_),
        ("a stream name ending in a newline", "?stream=abc%0A", event, json_),
        ("a stream name too long", "?stream=" + "s" * 101, event, json_),
        ("partial not a boolean", "?partial=maybe", batch, json_),
        ("partial empty", "?partial=", batch, json_),
        ("bad parameters and bad credentials", "?stream=%20&partial=x", event, {}),
        ("malformed JSON", "", b'{"type": "t", "data": ', json_),
        ("wrong content type", "", event, {**key, "content-type": "text/plain"}),
        ("missing type", "", b'{"data": {}}', json_),
        ("not UTF-8", "", b'{"type": "t", "data": "\xff"}', json_),
        ("too many events", "", orjson.dumps({"events": [{"type": "t"}] * 1001}), json_),
        ("a body over the limit", "", orjson.dumps({"type": "t", "data": "x" * 65_537}), json_),
        ("an invalid Idempotency-Key", "", event, {**json_, "idempotency-key": " "}),
        (
            "binary CloudEvent",
            "",
            b"<x/>",
            {**key, "content-type": "application/xml", "ce-specversion": "1.0", "ce-id": "b1"}
            | {"ce-source": "/s", "ce-type": "x.y"},
        ),
    ]


def _own_id(headers: dict[str, str], suffix: str) -> dict[str, str]:
    """A binary CloudEvent's id made distinct per client, or the second would be a duplicate."""
    return headers | {"ce-id": headers["ce-id"] + suffix} if "ce-id" in headers else headers


async def test_each_case_is_answered_as_the_route_answers_it(
    world: World, apps: tuple[ServedBy, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    served, fast, slow = apps
    for name, query, body, headers in _cases(world):
        got = await fast.post(PUBLISH + query, content=body, headers=_own_id(headers, "f"))
        expected = await slow.post(PUBLISH + query, content=body, headers=_own_id(headers, "s"))
        assert _answer(got) == _answer(expected), name
        assert got.status_code != 500, name
    # Plainly valid parameters are served by the fast path, the others by the route.
    delegated = {"orgId not a number", "orgId zero", "orgId empty", "orgId with leading zeros"}
    delegated |= {"orgId with a sign", "orgId not a number and no credentials"}
    delegated.add("orgId beyond the ids stored")
    delegated |= {"a bad stream name", "a stream name ending in a newline"}
    delegated |= {"a stream name too long", "partial not a boolean", "partial empty"}
    delegated |= {"bad parameters and bad credentials"}
    delegated.add("a body over the limit")  # refused before either, by the body limit
    for (name, *_), fast_path in zip(_cases(world), served.fast, strict=True):
        assert fast_path == (name not in delegated), name


async def test_idempotency_answers_match_the_routes(
    world: World, apps: tuple[ServedBy, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    _, fast, slow = apps
    answers = []
    for client, key in ((fast, "fast"), (slow, "slow")):
        headers = {**world.headers["key_a"], "idempotency-key": key}
        first = await client.post(PUBLISH, json={"type": "t", "data": 1}, headers=headers)
        again = await client.post(PUBLISH, json={"type": "t", "data": 1}, headers=headers)
        other = await client.post(PUBLISH, json={"type": "t", "data": 2}, headers=headers)
        assert again.content == first.content
        answers.append([_answer(r) for r in (first, again, other)])
    assert answers[0] == answers[1]
    assert answers[0][1][1]["idempotent-replayed"] == "true"
    assert answers[0][2][0] == 422


async def test_other_methods_and_paths_go_on_to_the_router(
    world: World, apps: tuple[ServedBy, httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    served, fast, _ = apps
    key = world.headers["key_a"]
    assert (await fast.get(PUBLISH, headers=key)).status_code == 405
    slash = await fast.post(PUBLISH + "/", json={"type": "t"}, headers=key)
    assert slash.status_code == 307  # FastAPI's redirect to the path without the slash
    streams = await fast.get("/api/v1/integration/events/streams", headers=key)
    assert streams.status_code == 200
    assert served.fast == [False, False, False]


async def test_the_route_stays_in_the_openapi_document(
    apps: tuple[ServedBy, httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, fast, _ = apps
    document = (await fast.get("/openapi.json")).json()
    operation = document["paths"][PUBLISH]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"orgId", "stream", "partial", "Idempotency-Key"}
