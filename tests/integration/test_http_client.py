"""The guarded outbound HTTP client against a real recording sink."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from junctionbox.connectors.http_client import (
    GuardedHttpClient,
    GuardedResolver,
    OutboundNetworkError,
    OutboundTimeoutError,
)
from junctionbox.domain.netguard import REFUSED_MESSAGE, TargetRefusedError, parse_allowlist
from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.testing import Behaviour, RecordingSink

T = 0.5  # every request in this module is bounded by this


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as s:
        yield s


@pytest.fixture
async def client(sink: RecordingSink) -> AsyncIterator[GuardedHttpClient]:
    async with GuardedHttpClient(
        parse_allowlist(sink.allowlist_entry), timeout_seconds=T, max_response_bytes=1024
    ) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_post_arrives_with_exact_body_and_headers(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    body = b'{"a": 1,  "b":"\xc3\xa9"}\n'
    result = await client.send(
        "POST",
        sink.url("/hook?x=1"),
        headers={"Content-Type": "application/json", "webhook-id": "msg_1"},
        body=body,
    )
    assert result.status == 200
    assert result.body == b""
    assert not result.truncated
    assert result.elapsed >= 0
    (received,) = sink.requests
    assert (received.method, received.path, received.query) == ("POST", "/hook", "x=1")
    assert received.body == body
    assert received.header("content-type") == "application/json"
    assert received.header("Webhook-Id") == "msg_1"
    assert received.header("user-agent") == "junctionbox"


async def test_response_status_headers_and_body_are_returned(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    sink.on("/r", Behaviour(429, b"slow down", {"Retry-After": "7"}))
    result = await client.send("POST", sink.url("/r"), body=b"x")
    assert result.status == 429
    assert result.body == b"slow down"
    assert result.header("retry-after") == "7"
    assert result.header_values("RETRY-AFTER") == ["7"]


async def test_redirect_is_returned_not_followed(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    sink.on("/moved", Behaviour(302, headers={"Location": sink.url("/target")}))
    result = await client.send("POST", sink.url("/moved"), body=b"x")
    assert result.status == 302
    assert result.header("location") == sink.url("/target")
    assert [r.path for r in sink.requests] == ["/moved"]


async def test_sink_without_allowlist_entry_is_refused(sink: RecordingSink) -> None:
    async with GuardedHttpClient(timeout_seconds=T) as bare:
        with pytest.raises(TargetRefusedError) as info:
            await bare.send("POST", sink.url("/hook"), body=b"x")
    assert str(info.value) == REFUSED_MESSAGE
    assert sink.requests == []


@pytest.mark.parametrize(
    "host", ["localhost", "[::1]", "0.0.0.0", "169.254.169.254", "[::ffff:127.0.0.1]"]
)
async def test_non_public_hosts_are_refused_with_one_message(
    sink: RecordingSink, client: GuardedHttpClient, host: str
) -> None:
    # Another port than the sink's: the allowlist entry covers 127.0.0.1 on the sink's port.
    with pytest.raises(TargetRefusedError) as info:
        await client.send("POST", f"http://{host}:{_free_port()}/hook", body=b"x")
    assert str(info.value) == REFUSED_MESSAGE
    assert sink.requests == []


async def test_localhost_is_refused_even_on_the_sink_port(sink: RecordingSink) -> None:
    async with GuardedHttpClient(timeout_seconds=T) as bare:
        with pytest.raises(TargetRefusedError):
            await bare.send("GET", f"http://localhost:{sink.port}/hook")
    assert sink.requests == []


async def test_allowlist_is_per_port(sink: RecordingSink, client: GuardedHttpClient) -> None:
    assert (await client.send("GET", sink.url("/ok"))).status == 200
    async with RecordingSink() as other:
        with pytest.raises(TargetRefusedError):
            await client.send("GET", other.url("/ok"))
        assert other.requests == []


async def test_timeout_is_etimedout(sink: RecordingSink, client: GuardedHttpClient) -> None:
    sink.on("/slow", Behaviour.hang())
    with pytest.raises(OutboundTimeoutError) as info:
        await client.send("POST", sink.url("/slow"), body=b"x", timeout_seconds=0.2)
    assert info.value.kind is NetworkErrorKind.TIMEOUT
    assert len(sink.requests) == 1


async def test_delay_beyond_timeout_times_out(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    sink.on("/slow", Behaviour(delay=0.4))
    with pytest.raises(OutboundNetworkError) as info:
        await client.send("GET", sink.url("/slow"), timeout_seconds=0.1)
    assert info.value.kind is NetworkErrorKind.TIMEOUT


async def test_closed_port_is_econnrefused() -> None:
    port = _free_port()
    async with GuardedHttpClient(parse_allowlist(f"127.0.0.1:{port}"), timeout_seconds=T) as c:
        with pytest.raises(OutboundNetworkError) as info:
            await c.send("POST", f"http://127.0.0.1:{port}/", body=b"x")
    assert info.value.kind is NetworkErrorKind.CONNECTION_REFUSED
    assert isinstance(info.value.__cause__, OSError)


async def test_reset_is_econnreset(sink: RecordingSink, client: GuardedHttpClient) -> None:
    sink.on("/reset", Behaviour.reset())
    with pytest.raises(OutboundNetworkError) as info:
        await client.send("POST", sink.url("/reset"), body=b"x")
    assert info.value.kind is NetworkErrorKind.CONNECTION_RESET
    assert len(sink.requests) == 1


async def test_garbage_is_a_protocol_error(sink: RecordingSink, client: GuardedHttpClient) -> None:
    sink.on("/junk", Behaviour.garbage())
    with pytest.raises(OutboundNetworkError) as info:
        await client.send("POST", sink.url("/junk"), body=b"x")
    assert info.value.kind in (
        NetworkErrorKind.CONNECTION_ABORTED,
        NetworkErrorKind.CONNECTION_RESET,
    )
    assert info.value.__cause__ is not None


async def test_large_body_is_truncated_at_the_cap(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    sink.on("/big", Behaviour(body=b"a" * 5000), Behaviour(body=b"b" * 1024))
    big = await client.send("GET", sink.url("/big"))
    assert big.truncated
    assert big.body == b"a" * 1024
    exact = await client.send("GET", sink.url("/big"))
    assert not exact.truncated
    assert exact.body == b"b" * 1024


async def test_behaviour_sequence_is_consumed_then_last_repeats(
    sink: RecordingSink, client: GuardedHttpClient
) -> None:
    sink.on("/retry", Behaviour(500), Behaviour(503), Behaviour(200, b"ok"))
    statuses = [(await client.send("POST", sink.url("/retry"), body=b"x")).status for _ in "1234"]
    assert statuses == [500, 503, 200, 200]
    assert len(await sink.wait_for(4, timeout=T)) == 4


async def test_wait_for_is_bounded(sink: RecordingSink) -> None:
    with pytest.raises(TimeoutError, match="expected 1 requests"):
        await sink.wait_for(1, timeout=0.05)


async def test_error_messages_carry_no_header_values(sink: RecordingSink) -> None:
    async with GuardedHttpClient(timeout_seconds=T) as bare:
        with pytest.raises(TargetRefusedError) as info:
            await bare.send("POST", sink.url("/?token=s3cret"), headers={"Authorization": "s3cret"})
    assert "s3cret" not in repr(info.value)
    assert "s3cret" not in str(info.value)


async def test_resolver_refuses_when_any_answer_is_not_public(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443)),
    ]

    async def fake_getaddrinfo(*_args: object, **_kwargs: object) -> list[object]:
        return list(answers)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    resolver = GuardedResolver(parse_allowlist(""))
    with pytest.raises(TargetRefusedError):
        await resolver.resolve("rebind.example", 443, socket.AF_UNSPEC)
    answers.pop()
    (only,) = await resolver.resolve("rebind.example", 443, socket.AF_UNSPEC)
    assert only["host"] == "93.184.216.34"
    assert only["port"] == 443


async def test_dns_failure_is_enotfound() -> None:
    async with GuardedHttpClient(timeout_seconds=T) as c:
        with pytest.raises(OutboundNetworkError) as info:
            await c.send("GET", "http://no-such-host.invalid/")
    assert info.value.kind is NetworkErrorKind.DNS
