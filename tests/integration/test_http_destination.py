"""HttpDestination, the first destination adapter, against a real recording sink."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from junctionbox.connectors.destinations import (
    Destination,
    DestinationError,
    DestinationRefusedError,
    DestinationResult,
    HealthState,
    HttpDestination,
)
from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.netguard import REFUSED_MESSAGE, parse_allowlist
from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.services.outbound_request import PreparedRequest
from junctionbox.testing import Behaviour, RecordingSink

T = 0.5  # every attempt in this module is bounded by this


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as s:
        yield s


@pytest.fixture
async def destination(sink: RecordingSink) -> AsyncIterator[HttpDestination]:
    async with GuardedHttpClient(
        parse_allowlist(sink.allowlist_entry), max_response_bytes=1024
    ) as http:
        yield HttpDestination(http)


def request(url: str, body: bytes = b'{"a":1}', method: str = "POST") -> PreparedRequest:
    headers = [("content-type", "application/json"), ("webhook-id", "msg_1")]
    return PreparedRequest(method, url, headers, body, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_is_a_destination() -> None:
    assert issubclass(HttpDestination, Destination)
    assert HttpDestination.kind == "http"


async def test_delivers_method_headers_and_body(
    sink: RecordingSink, destination: HttpDestination
) -> None:
    sink.on("/hook", Behaviour(202, b'{"ok": true}', {"Content-Type": "application/json"}))
    result = await destination.execute(request(sink.url("/hook"), method="PATCH"), timeout=T)
    assert result.status == 202
    assert result.header("CONTENT-TYPE") == "application/json"
    assert result.elapsed > 0
    assert not result.truncated
    assert destination.transform_response(result) == {"ok": True}
    (received,) = sink.requests
    assert (received.method, received.body) == ("PATCH", b'{"a":1}')
    assert received.header("webhook-id") == "msg_1"


@pytest.mark.parametrize("status", [200, 204, 301, 302, 400, 404, 408, 410, 429, 500, 503])
async def test_every_status_is_a_result(
    sink: RecordingSink, destination: HttpDestination, status: int
) -> None:
    headers = {"Location": sink.url("/elsewhere"), "Retry-After": "7"}
    sink.on("/s", Behaviour(status, headers=headers))
    result = await destination.execute(request(sink.url("/s")), timeout=T)
    assert result.status == status
    assert [r.path for r in sink.requests] == ["/s"]  # a redirect is never followed
    if status in (429, 503):
        assert result.header("retry-after") == "7"


async def test_hang_is_a_timeout(sink: RecordingSink, destination: HttpDestination) -> None:
    sink.on("/hang", Behaviour.hang())
    with pytest.raises(DestinationError) as caught:
        await destination.execute(request(sink.url("/hang")), timeout=0.3)
    assert caught.value.kind is NetworkErrorKind.TIMEOUT
    assert caught.value.retryable


async def test_reset_is_a_connection_reset(
    sink: RecordingSink, destination: HttpDestination
) -> None:
    sink.on("/reset", Behaviour.reset())
    with pytest.raises(DestinationError) as caught:
        await destination.execute(request(sink.url("/reset")), timeout=T)
    assert caught.value.kind is NetworkErrorKind.CONNECTION_RESET
    assert caught.value.retryable


async def test_garbage_is_a_retryable_network_failure(
    sink: RecordingSink, destination: HttpDestination
) -> None:
    sink.on("/garbage", Behaviour.garbage())
    with pytest.raises(DestinationError) as caught:
        await destination.execute(request(sink.url("/garbage")), timeout=T)
    assert caught.value.kind in (
        NetworkErrorKind.CONNECTION_ABORTED,
        NetworkErrorKind.CONNECTION_RESET,
    )
    assert caught.value.retryable


async def test_nothing_listening_is_connection_refused() -> None:
    port = free_port()
    async with GuardedHttpClient(parse_allowlist(f"127.0.0.1:{port}")) as http:
        with pytest.raises(DestinationError) as caught:
            await HttpDestination(http).execute(request(f"http://127.0.0.1:{port}/x"), timeout=T)
    assert caught.value.kind is NetworkErrorKind.CONNECTION_REFUSED


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{other}/hook",  # loopback, a port the allowlist does not name
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]:{other}/hook",  # IPv4-mapped loopback
        "http://0.0.0.0:{port}/hook",
        "http://localhost:{other}/hook",
    ],
)
async def test_refused_targets_fail_final_with_one_generic_message(
    sink: RecordingSink, destination: HttpDestination, url: str
) -> None:
    target = url.format(other=free_port(), port=sink.port)
    with pytest.raises(DestinationRefusedError) as caught:
        await destination.execute(request(target), timeout=T)
    assert caught.value.message == REFUSED_MESSAGE
    assert caught.value.retryable is False
    assert caught.value.kind is None
    assert sink.requests == []


async def test_large_answer_is_truncated_and_shown_as_text(
    sink: RecordingSink, destination: HttpDestination
) -> None:
    big = b'{"x": "' + b"y" * 5000 + b'"}'
    sink.on("/big", Behaviour(200, big, {"Content-Type": "application/json"}))
    result = await destination.execute(request(sink.url("/big")), timeout=T)
    assert result.truncated
    assert len(result.body) == 1024
    shown = destination.transform_response(result)
    assert isinstance(shown, str)
    assert shown.startswith('{"x": "yyy')


def test_transform_response_text_empty_and_bad_json() -> None:
    dest = HttpDestination(GuardedHttpClient())
    text = DestinationResult(200, (("Content-Type", "text/plain"),), b"ok \xff", 0.1)
    assert dest.transform_response(text) == "ok \ufffd"
    assert dest.transform_response(DestinationResult(204, (), b"", 0.1)) is None
    bad = DestinationResult(200, (("content-type", "application/json"),), b"{oops", 0.1)
    assert dest.transform_response(bad) == "{oops"


def test_validate_config() -> None:
    dest = HttpDestination(GuardedHttpClient())
    good = {"targetUrl": "https://hooks.example.com/x", "httpMethod": "put", "timeoutMs": 500}
    assert dest.validate_config(good) == []
    problems = dest.validate_config(
        {"targetUrl": "ftp://x/", "httpMethod": "GET", "timeoutMs": 0}, ("body", "actions", 0)
    )
    assert [p.loc for p in problems] == [
        ("body", "actions", 0, "targetUrl"),
        ("body", "actions", 0, "httpMethod"),
        ("body", "actions", 0, "timeoutMs"),
    ]
    assert dest.validate_config({})[0].message == "is required"
    assert "credentials" in dest.validate_config({"targetUrl": "https://u:p@h.example/"})[0].message


async def test_health_follows_recent_attempts(
    sink: RecordingSink, destination: HttpDestination
) -> None:
    fresh = await destination.health()
    assert fresh.status is HealthState.HEALTHY
    assert fresh.details["attempts"] == 0
    for _ in range(4):
        await destination.execute(request(sink.url("/ok")), timeout=T)
    healthy = await destination.health()
    assert healthy.status is HealthState.HEALTHY
    assert healthy.latency is not None
    assert healthy.latency > 0
    sink.on("/fail", Behaviour(503))
    await destination.execute(request(sink.url("/fail")), timeout=T)
    assert (await destination.health()).status is HealthState.DEGRADED
    sink.on("/reset", Behaviour.reset())
    for _ in range(4):
        with pytest.raises(DestinationError):
            await destination.execute(request(sink.url("/reset")), timeout=T)
    unhealthy = await destination.health()
    assert unhealthy.status is HealthState.UNHEALTHY
    assert unhealthy.details == {
        "attempts": 9,
        "failures": 5,
        "checkSeconds": unhealthy.details["checkSeconds"],
    }
