"""The server's HTTP protocol (``api.http_protocol``): a response's writes within one step of
the event loop reach the socket as one write, in order; large or streamed bodies and closes
behave as before. Against a recording transport, then a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from junctionbox.api.http_protocol import (
    HOLD_LIMIT,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)


class Recording:
    """The real transport's side: what was written, and in how many calls."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return sum(len(w) for w in self.writes)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def _coalescing() -> tuple[CoalescingTransport, Recording]:
    real = Recording()
    return CoalescingTransport(real, asyncio.get_running_loop()), real  # type: ignore[arg-type]


async def test_writes_of_one_step_are_one_write() -> None:
    transport, real = _coalescing()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(bytearray(b"ok"))
    assert real.writes == []  # held until the step ends
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"next")  # a later step: written on its own, in order
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_large_writes_go_out_at_once() -> None:
    transport, real = _coalescing()
    transport.write(b"head")
    transport.write(b"x" * HOLD_LIMIT)  # over the limit: the real transport sees it now
    assert real.writes == [b"head" + b"x" * HOLD_LIMIT]
    await asyncio.sleep(0)
    assert len(real.writes) == 1


async def test_close_writes_out_first_and_abort_drops() -> None:
    transport, real = _coalescing()
    transport.write(b"bye")
    transport.close()
    assert real.writes == [b"bye"]
    assert real.closed
    await asyncio.sleep(0)
    assert real.writes == [b"bye"]  # nothing written twice, nothing after close

    transport, real = _coalescing()
    transport.write(b"dropped")
    transport.abort()
    await asyncio.sleep(0)
    assert real.writes == []
    assert real.aborted


async def test_other_uses_write_out_first() -> None:
    transport, real = _coalescing()
    transport.write(b"a")
    assert transport.get_write_buffer_size() == 1
    transport.write(b"b")
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert real.writes == [b"a", b"b"]


# ---------------------------------------------------------------- a real server


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(5):
            await send({"type": "http.response.body", "body": b"%d," % index, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"end"})
        return
    answer = b"echo:" + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        http=CoalescingHttpToolsProtocol,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn has no start event)
            await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    async with asyncio.timeout(10):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_served_through_a_real_socket(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        for index in range(3):  # one kept-alive connection, several responses
            response = await http.post("/", content=b"call-%d" % index)
            assert response.status_code == 201
            assert response.content == b"echo:call-%d" % index
        streamed = await http.get("/stream")
        assert streamed.content == b"0,1,2,3,4,end"
        closing = await http.post("/", content=b"last", headers={"connection": "close"})
        assert closing.content == b"echo:last"
