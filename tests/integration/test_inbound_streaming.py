"""A large upstream response streams through the proxy without being held in memory.

The app runs under a real uvicorn server on 127.0.0.1 (httpx's ASGI transport would buffer
the response itself), the upstream writes 32 MiB in 64 KiB chunks, and the client reads
and drops chunks while tracemalloc records the peak of the process's Python allocations:
it stays a small fraction of the body (bounded by pool and socket buffers, not the size).
"""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from collections.abc import AsyncIterator

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from tests.integration.inbound_helpers import (
    client_fixture,  # noqa: F401 (fixtures)
    create,
    services_fixture,  # noqa: F401
    settings_fixture,  # noqa: F401
)
from tests.support import World

from junctionbox.api.app import create_app
from junctionbox.services.container import Services

CHUNK = b"z" * (64 * 1024)
TOTAL = 32 * 1024 * 1024


class BigUpstream:
    """Answers GET /big with TOTAL bytes, written chunk by chunk."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/octet-stream"})
        response.content_length = TOTAL
        await response.prepare(request)
        for _ in range(TOTAL // len(CHUNK)):
            await response.write(CHUNK)
        await response.write_eof()
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/big", self._big)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def allowlist_entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(name="sink")
async def big_upstream() -> AsyncIterator[BigUpstream]:
    upstream = BigUpstream()
    await upstream.start()
    yield upstream
    await upstream.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server(services: Services) -> AsyncIterator[str]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(services), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    async with asyncio.timeout(10):
        while not running.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_large_response_streams_with_bounded_memory(
    world: World, sink: BigUpstream, server: str
) -> None:
    await create(
        world,
        {"name": "Export", "type": "export", "targetUrl": sink.url("/big"), "httpMethod": "GET"},
    )
    received = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server}/api/v1/integrations/export?orgId=100",
                headers=world.headers["key_a"],
                timeout=aiohttp.ClientTimeout(total=120),
            ) as response,
        ):
            assert response.status == 200
            assert response.headers["content-length"] == str(TOTAL)
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == TOTAL
    assert peak < TOTAL // 4, f"peak {peak} bytes for a {TOTAL}-byte body"
