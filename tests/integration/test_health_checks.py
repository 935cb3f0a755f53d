"""Health with seed 001's rules: unhealthy while PostgreSQL cannot be reached (through a
TCP proxy the test stops, never the shared server) and healthy again after; workers
alive by heartbeat; the queue check; Redis when configured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
from tests.support import PG_HOST, PG_PORT, make_settings

from junctionbox.api.app import create_app
from junctionbox.engine.heartbeat import NodeHeartbeat
from junctionbox.queue.jobs import NewJob
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.services.monitor import FAIL, PASS, WARN, Check, overall, redis_check
from junctionbox.store import migrate
from junctionbox.store.database import Database
from junctionbox.store.types import utcnow


class TcpProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL; ``stop`` closes the listener and cuts
    every open connection, ``start`` listens again on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def app_client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_health_is_unhealthy_while_postgres_is_unreachable_and_back_after(
    fresh_pg_database: str, tmp_path: Path
) -> None:
    db = Database(fresh_pg_database)
    await migrate.upgrade(db)
    await db.dispose()
    proxy = TcpProxy()
    await proxy.start()
    url = fresh_pg_database.replace(f"{PG_HOST}:{PG_PORT}", f"127.0.0.1:{proxy.port}")
    services = build_services(make_settings(url, tmp_path))
    try:
        async with app_client(services) as client:
            first = await client.get("/api/v1/health")
            assert first.status_code == 200, first.text
            assert first.json()["status"] == "healthy"
            await proxy.stop()
            down = await client.get("/api/v1/health")
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "unhealthy"
            assert body["checks"]["database"]["status"] == FAIL
            assert "postgres@" not in down.text  # no connection URL in the answer
            assert (await client.get("/api/v1/health/ready")).status_code == 503
            assert (await client.get("/api/v1/health/live")).status_code == 200
            await proxy.start()
            back = await client.get("/api/v1/health")
            assert back.status_code == 200, back.text
            assert back.json()["status"] == "healthy"
    finally:
        await services.close()
        with contextlib.suppress(Exception):
            await proxy.stop()


async def test_workers_alive_by_heartbeat_and_a_stopped_one_fails(
    services: Services, client: httpx.AsyncClient
) -> None:
    beat = NodeHeartbeat(services.db, node_id="node-w1", roles=["worker"], interval=1.0)
    await beat.beat()
    body = (await client.get("/api/v1/health")).json()
    assert body["checks"]["workers"] == {"status": PASS, "details": {"worker": 1}}
    assert body["status"] == "healthy"
    # Seen a while ago, no clean stop: presumed dead -> fail -> unhealthy.
    stale = timedelta(seconds=services.settings.node_stale_seconds * 2)
    late = NodeHeartbeat(
        services.db,
        node_id="node-w1",
        roles=["worker"],
        interval=1.0,
        clock=lambda: utcnow() - stale,
    )
    await late.beat()
    response = await client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["status"] == FAIL
    assert "worker" in response.json()["checks"]["workers"]["message"]
    # A clean stop is not a failure of a live role... but no worker is left: still fail.
    stop = asyncio.Event()
    stop.set()
    await NodeHeartbeat(services.db, node_id="node-w2", roles=["worker"], interval=1.0).run(stop)
    assert (await client.get("/api/v1/health")).json()["checks"]["workers"]["status"] == FAIL
    await NodeHeartbeat(services.db, node_id="node-w3", roles=["worker"], interval=1.0).beat()
    assert (await client.get("/api/v1/health")).json()["checks"]["workers"]["status"] == PASS


async def test_an_old_due_job_degrades_then_fails_the_queue_check(
    services: Services, client: httpx.AsyncClient
) -> None:
    warn_after = services.settings.health_lag_warn_seconds
    fail_after = services.settings.health_lag_fail_seconds
    for age in (warn_after + 30, fail_after + 30):
        async with services.db.write() as conn:
            await services.queue.enqueue(
                conn,
                [NewJob("probe", {}, queue="q", run_at=utcnow() - timedelta(seconds=age))],
            )
        response = await client.get("/api/v1/health")
        body = response.json()
        if age < fail_after:
            assert (response.status_code, body["status"]) == (200, "degraded")
            assert body["checks"]["queue"]["status"] == WARN
        else:
            assert (response.status_code, body["status"]) == (503, "unhealthy")
            assert body["checks"]["queue"]["status"] == FAIL


def test_overall_status_follows_seed_001() -> None:
    assert overall({"a": Check(PASS), "b": Check(PASS)}) == "healthy"
    assert overall({"a": Check(PASS), "b": Check(WARN)}) == "degraded"
    assert overall({"a": Check(WARN), "b": Check(FAIL)}) == "unhealthy"


async def test_redis_check_pings_and_fails_closed() -> None:
    from tests.support import require_service

    require_service("Redis", "127.0.0.1", 6379)
    assert (await redis_check("redis://127.0.0.1:6379/0")).status == PASS
    down = await redis_check("redis://:s3cret-pass@127.0.0.1:1/0", timeout=1.0)
    assert down.status == FAIL
    assert "s3cret" not in (down.message or "")
