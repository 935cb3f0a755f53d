"""A gateway route without body transformation or caching streams: the client gets the first
part of the upstream's answer while the upstream is still writing the rest (a real server)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import uvicorn
from aiohttp import web
from sqlalchemy import insert
from tests.support import make_settings

from junctionbox.api.app import create_app
from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, TenantContext
from junctionbox.runtime import build_services
from junctionbox.store.tables import entities
from junctionbox.store.types import utcnow

LIMIT = 10.0  # every wait in this test is bounded by this


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_answer_streams_through(db_url: str, tmp_path: Path) -> None:
    first_part_seen = asyncio.Event()

    async def slow_upstream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"first part;")
        # The rest is written only once the client has read the first part through the
        # gateway: a gateway that buffered the whole answer would never get here.
        await asyncio.wait_for(first_part_seen.wait(), LIMIT)
        await response.write(b"second part")
        await response.write_eof()
        return response

    upstream_app = web.Application()
    upstream_app.router.add_get("/stream", slow_upstream)
    runner = web.AppRunner(upstream_app)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()

    services = build_services(
        make_settings(db_url, tmp_path, ssrf_allowlist=f"127.0.0.1:{upstream_port}")
    )
    async with services.db.write() as conn:
        now = utcnow()
        await conn.execute(
            insert(entities).values(id=7, name="t", tags=[], created_at=now, updated_at=now)
        )
    admin = Principal(PrincipalKind.USER, "usr_test", Role.ADMIN, None)
    tenant = TenantContext(Entity(7, None, "t"), admin)
    await services.gateway.configure(
        tenant, {"path": "/stream", "targetUrl": f"http://127.0.0.1:{upstream_port}"}, None
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(services), host="127.0.0.1", port=port, log_config=None, loop="none"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(LIMIT):
            while not server.started:  # noqa: ASYNC110 (uvicorn has no start event)
                await asyncio.sleep(0.02)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/gw/7/stream") as response,
            ):
                assert response.status == 200
                first = await response.content.readexactly(len(b"first part;"))
                assert first == b"first part;"
                first_part_seen.set()
                assert await response.content.read() == b"second part"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, LIMIT)
        await services.close()
        await runner.cleanup()
