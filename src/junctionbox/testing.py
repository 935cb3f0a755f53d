"""Test helpers shipped with junctionbox: a real, recording HTTP sink.

:class:`RecordingSink` is an aiohttp server on ``127.0.0.1`` (a free port, in the current
event loop) that records every request and answers as told, per path::

    from junctionbox.testing import Behaviour, RecordingSink

    async with RecordingSink() as sink:
        sink.on("/hook", Behaviour(500), Behaviour(500), Behaviour(200))  # one per request
        sink.on("/slow", Behaviour(delay=2.0))
        sink.on("/gone", Behaviour.reset())        # close the connection, no response
        ... point the code under test at sink.url("/hook") with
        ... JB_SSRF_ALLOWLIST=sink.allowlist_entry (127.0.0.1 is loopback, refused otherwise)
        await sink.wait_for(3, timeout=5)          # bounded: raises TimeoutError
        assert sink.requests[0].body == b"..."

A path without behaviours gets ``sink.default`` (200, empty body). When a sequence runs
out, its last behaviour repeats. Actions: ``respond`` (status, body, headers, after
``delay``), ``hang`` (never answer until the sink closes), ``reset`` (close the connection
without a response), ``garbage`` (write bytes that are not HTTP, then close). Requests are
recorded on arrival, before the behaviour runs, so hung and reset requests are counted too.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

__all__ = ["Behaviour", "RecordedRequest", "RecordingSink"]

Action = Literal["respond", "hang", "reset", "garbage"]
GARBAGE: bytes = b"\x00\x01NOT HTTP AT ALL\r\n\r\n"


@dataclass(frozen=True)
class Behaviour:
    """How the sink answers one request."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before acting
    action: Action = "respond"

    @classmethod
    def hang(cls) -> Behaviour:
        return cls(action="hang")

    @classmethod
    def reset(cls) -> Behaviour:
        return cls(action="reset")

    @classmethod
    def garbage(cls) -> Behaviour:
        return cls(action="garbage")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the sink received it."""

    method: str
    path: str
    query: str  # the raw query string, without "?"
    headers: tuple[tuple[str, str], ...]  # in received order
    body: bytes
    received_at: float  # time.time()

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class RecordingSink:
    """A recording HTTP server for tests; use ``async with RecordingSink() as sink``."""

    def __init__(self, *, default: Behaviour | None = None, host: str = "127.0.0.1") -> None:
        self.default = default or Behaviour()
        self.requests: list[RecordedRequest] = []
        self._host = host
        self._port: int | None = None
        self._behaviours: dict[str, deque[Behaviour]] = {}
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> RecordingSink:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> RecordingSink:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- configuration and inspection -------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sink is not started")
        return self._port

    @property
    def allowlist_entry(self) -> str:
        """The ``host:port`` entry that lets the SSRF guard reach this sink (and nothing else)."""
        return f"{self._host}:{self.port}"

    def url(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{self._host}:{self.port}{path}"

    def on(self, path: str, *behaviours: Behaviour) -> None:
        """Answer requests to ``path`` with ``behaviours``, one per request; the last repeats."""
        if not behaviours:
            self._behaviours.pop(path, None)
            return
        self._behaviours[path] = deque(behaviours)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:  # noqa: ASYNC109
        """Wait until ``count`` requests arrived; raise ``TimeoutError`` after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.requests) < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} requests within {timeout}s, got {len(self.requests)}"
            ) from None
        return list(self.requests)

    # -- the server -------------------------------------------------------------------

    def _next_behaviour(self, path: str) -> Behaviour:
        queue = self._behaviours.get(path)
        if not queue:
            return self.default
        return queue.popleft() if len(queue) > 1 else queue[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=tuple((k, v) for k, v in request.headers.items()),
                body=body,
                received_at=time.time(),
            )
        )
        self._arrived.set()
        behaviour = self._next_behaviour(request.path)
        if behaviour.delay > 0:
            await asyncio.sleep(behaviour.delay)
        if behaviour.action == "hang":
            await self._closing.wait()
            raise web.HTTPServiceUnavailable()
        if behaviour.action in ("reset", "garbage"):
            transport = request.transport
            if transport is not None:
                if behaviour.action == "garbage":
                    transport.write(GARBAGE)
                    transport.close()
                else:
                    sock = transport.get_extra_info("socket")
                    if sock is not None:  # linger 0: close sends RST, not FIN
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    transport.abort()
            # The connection is gone; aiohttp discards what we return.
            return web.Response(status=499)
        return web.Response(status=behaviour.status, body=behaviour.body, headers=behaviour.headers)
