"""Delivery benchmark: one worker process against a raw aiohttp client, same sink, same run.

Run: ``python bench/deliver.py [--quick] [--backend sqlite|postgres|both]``.

A fast sink (aiohttp, its own process) answers 200 to every POST and counts them. In the same
run the script measures:

- the raw rate: this process POSTs the same 1 KiB bodies to the sink with aiohttp (pool 64);
- deliveries/s of one ``junctionbox serve --roles worker`` process: a backlog of delivery
  jobs is built first (events published and dispatched by an ``api,dispatcher`` process
  whose workers are off), then the worker process is started and timed until the sink has
  counted every delivery;
- the bookkeeping floor (``benchkit.delivery_floor``): this process delivers the same
  backlog doing only what any durable worker must (lease the jobs, write each attempt's log
  row, mark the jobs done), batched, on a database of its own, with junctionbox's bare HTTP/1.1
  client: the highest ratio a worker can reach on this machine with this data model;
- CPU time per delivery of that worker process (user + system, from ``/proc/<pid>/stat``,
  from its first delivery to its last) next to the raw client's CPU time per request
  (``getrusage`` of this process around the raw run): far less sensitive than the rates to
  other load on a shared machine;
- end-to-end: with every role in one process, the pipeline's maximum rate, for a burst
  published 1000 events per request and for events published one per request (32 in
  flight), timed at the sink; then single events published at half the single events'
  maximum (open loop) while the sink records ``now - sent_at`` per delivery: p50 and p99 of
  publish->delivered. (Half the burst's rate is more than one process can take in single
  publishes: each costs more than an event of a batch.)

Client, server and sink share the machine's cores, as in production on one box.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from benchkit import free_port, open_loop, own_cpu_seconds, process_cpu_seconds
from benchkit.delivery_floor import PostgresFloor, SqliteFloor, floor_rate
from sqlalchemy import func, select

from junctionbox.store.database import Database
from junctionbox.store.tables import jobs

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (a throwaway bench key)
FILLER = "A" * 900
IN_FLIGHT = 32  # concurrent single publishes when finding their maximum rate


# --- the sink (its own process) ---


def run_sink(port: int) -> None:
    received: list[float] = []
    latencies: list[float] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        received.append(now)
        sent = orjson.loads(body).get("sentAt")
        if sent is not None:
            latencies.append(now - sent)
        return web.Response(status=200)

    async def stats(_: web.Request) -> web.Response:
        first, last = (received[0], received[-1]) if received else (0.0, 0.0)
        return web.json_response(
            {"count": len(received), "first": first, "last": last, "latencies": latencies}
        )

    async def reset(_: web.Request) -> web.Response:
        received.clear()
        latencies.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = multiprocessing.get_context("spawn").Process(
            target=run_sink, args=(self.port,), daemon=True
        )
        self.process.start()

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(100):
            try:
                await self.stats(http)
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        raise RuntimeError("sink did not start")

    async def stats(self, http: aiohttp.ClientSession) -> dict[str, object]:
        async with http.get(f"{self.url}/stats") as response:
            result: dict[str, object] = await response.json()
            return result

    async def reset(self, http: aiohttp.ClientSession) -> None:
        async with http.post(f"{self.url}/reset"):
            pass

    async def wait_count(self, http: aiohttp.ClientSession, count: int, limit: float) -> float:
        """Seconds until the sink counted ``count`` requests (bounded by ``limit``)."""
        started = time.perf_counter()
        while time.perf_counter() - started < limit:
            stats = await self.stats(http)
            if int(stats["count"]) >= count:  # type: ignore[call-overload]
                return time.perf_counter() - started
            await asyncio.sleep(0.02)
        raise RuntimeError(f"only {stats['count']} of {count} deliveries within {limit} s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# --- CPU time ---


class Rate:
    """Events per second and CPU microseconds per event of one measured run."""

    def __init__(self, per_second: float, cpu_us: float) -> None:
        self.per_second = per_second
        self.cpu_us = cpu_us


# --- the raw baseline ---


async def raw_rate(sink: Sink, count: int) -> Rate:
    connector = aiohttp.TCPConnector(limit=64)
    bodies = [orjson.dumps({"n": n, "filler": FILLER}) for n in range(count)]
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as http:
        queue = iter(bodies)

        async def sender() -> None:
            for body in queue:
                async with http.post(f"{sink.url}/hook", data=body, headers=headers) as r:
                    await r.read()

        started, cpu = time.perf_counter(), own_cpu_seconds()
        await asyncio.gather(*(sender() for _ in range(64)))
        elapsed, used = time.perf_counter() - started, own_cpu_seconds() - cpu
        return Rate(count / elapsed, used / count * 1e6)


# --- junctionbox processes ---


class Server:
    def __init__(self, database_url: str, data_dir: Path, sink: Sink, roles: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "JB_DATABASE_URL": database_url,
            "JB_DATA_DIR": str(data_dir),
            "JB_SECRET_KEY": SECRET,
            "JB_ADMIN_EMAIL": EMAIL,
            "JB_ADMIN_PASSWORD": PASSWORD,
            "JB_PORT": str(self.port),
            "JB_LOG_LEVEL": "WARNING",
            "JB_RATE_LIMIT_ENABLED": "false",  # a load test is not abuse
            "JB_ROLES": roles,
            "JB_SSRF_ALLOWLIST": f"127.0.0.1:{sink.port}",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "junctionbox.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(300):
            try:
                async with http.get(f"{self.url}/api/v1/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not become ready")

    async def admin_headers(self, http: aiohttp.ClientSession) -> dict[str, str]:
        login = {"email": EMAIL, "password": PASSWORD}
        async with http.post(f"{self.url}/api/v1/auth/login", json=login) as response:
            token = (await response.json())["token"]
        return {"authorization": f"Bearer {token}"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def set_up(http: aiohttp.ClientSession, server: Server, sink: Sink) -> dict[str, str]:
    headers = await server.admin_headers(http)
    async with http.post(
        f"{server.url}/api/v1/admin/orgs", json={"orgId": 1, "name": "bench"}, headers=headers
    ) as response:
        assert response.status == 201, await response.text()
    integration = {
        "name": "bench sink",
        "eventType": "bench.*",
        "targetUrl": f"{sink.url}/hook",
    }
    async with http.post(
        f"{server.url}/api/v1/outbound-integrations?orgId=1", json=integration, headers=headers
    ) as response:
        assert response.status == 201, await response.text()
    return headers


async def publish_backlog(
    http: aiohttp.ClientSession, server: Server, headers: dict[str, str], count: int
) -> None:
    url = f"{server.url}/api/v1/integration/events/publish?orgId=1"
    for first in range(0, count, 1000):
        events = [
            {"type": "bench.delivered", "data": {"n": n, "filler": FILLER}}
            for n in range(first, min(first + 1000, count))
        ]
        async with http.post(url, json={"events": events}, headers=headers) as response:
            assert response.status == 201, await response.text()


async def queued_jobs(database_url: str) -> int:
    """Delivery jobs waiting (the dispatcher's output), read straight from the store."""
    db = Database(database_url)
    try:
        async with db.read() as conn:
            query = select(func.count()).where(jobs.c.kind == "delivery", jobs.c.state == "ready")
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()


async def worker_rate(
    database_url: str, tmp: Path, sink: Sink, http: aiohttp.ClientSession, count: int
) -> Rate:
    producer = Server(database_url, tmp, sink, roles="api,dispatcher")
    try:
        await producer.ready(http)
        headers = await set_up(http, producer, sink)
        await publish_backlog(http, producer, headers, count)
        for _ in range(600):
            if await queued_jobs(database_url) >= count:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the dispatcher did not queue the backlog")
    finally:
        producer.stop()
    await sink.reset(http)
    worker = Server(database_url, tmp, sink, roles="worker")
    try:
        # CPU from the first delivery to the last: the process's start-up is not delivery.
        await sink.wait_count(http, 1, limit=60)
        cpu = process_cpu_seconds(worker.process.pid)
        counted = int((await sink.stats(http))["count"])  # type: ignore[call-overload]
        await sink.wait_count(http, count, limit=300)
        used = process_cpu_seconds(worker.process.pid) - cpu
        stats = await sink.stats(http)
    finally:
        worker.stop()
    seconds = float(stats["last"]) - float(stats["first"])  # type: ignore[arg-type]
    return Rate((count - 1) / seconds, used / max(1, count - counted) * 1e6)


async def bookkeeping_floor(backend: str, url: str, tmp: str, sink: Sink, count: int) -> Rate:
    """The least any durable worker does, in this process (``benchkit.delivery_floor``), on a
    database of its own next to the benchmark's."""
    if backend == "sqlite":
        store = SqliteFloor(f"{tmp}/floor.db", count, FILLER)
        try:
            return Rate(*await floor_rate(store, sink.port, count))
        finally:
            await store.close()
    floor_db = url.rsplit("/", 1)[1] + "_floor"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{floor_db}"')
        store = await PostgresFloor.create(url + "_floor", count, FILLER)
        try:
            return Rate(*await floor_rate(store, sink.port, count))
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{floor_db}" WITH (FORCE)')
        await admin.close()


async def pipeline_rate(
    server: Server, sink: Sink, http: aiohttp.ClientSession, headers: dict[str, str], count: int
) -> float:
    """Deliveries/s with every role in one process: publish a burst, time the sink."""
    await sink.reset(http)
    await publish_backlog(http, server, headers, count)
    await sink.wait_count(http, count, limit=600)
    stats = await sink.stats(http)
    return (count - 1) / (float(stats["last"]) - float(stats["first"]))  # type: ignore[arg-type]


async def single_pipeline_rate(
    server: Server, sink: Sink, http: aiohttp.ClientSession, headers: dict[str, str], count: int
) -> float:
    """Deliveries/s with every role in one process when events arrive one per request, as
    in the latency run: ``count`` single publishes kept IN_FLIGHT at a time, timed at the
    sink."""
    await sink.reset(http)
    url = f"{server.url}/api/v1/integration/events/publish?orgId=1"
    numbers = iter(range(count))

    async def publisher() -> None:
        for n in numbers:
            body = {"type": "bench.delivered", "data": {"n": n, "filler": FILLER}}
            async with http.post(url, data=orjson.dumps(body), headers=headers) as response:
                assert response.status == 201, await response.text()

    await asyncio.gather(*(publisher() for _ in range(IN_FLIGHT)))
    await sink.wait_count(http, count, limit=600)
    stats = await sink.stats(http)
    return (count - 1) / (float(stats["last"]) - float(stats["first"]))  # type: ignore[arg-type]


@dataclass
class EndToEnd:
    burst_maximum: float  # events published 1000 per request
    single_maximum: float  # events published one per request
    rate: float
    p50_ms: float
    p99_ms: float


async def end_to_end_latency(
    database_url: str,
    tmp: Path,
    sink: Sink,
    http: aiohttp.ClientSession,
    count: int,
    seconds: float,
) -> EndToEnd:
    """The pipeline's maximum rates (every role in one process), then p50/p99 of
    publish->delivered with single events sent at half the maximum rate of single events
    (open loop). A burst published in batches goes through faster than single publishes
    can arrive, so half of the burst's rate would overload the process with single ones."""
    server = Server(database_url, tmp, sink, roles="all")
    try:
        await server.ready(http)
        headers = {**await server.admin_headers(http), "content-type": "application/json"}
        burst = await pipeline_rate(server, sink, http, headers, count)
        single = await single_pipeline_rate(server, sink, http, headers, count)
        rate = single / 2
        await sink.reset(http)
        url = f"{server.url}/api/v1/integration/events/publish?orgId=1"
        total = int(rate * seconds)

        async def one(n: int) -> None:
            body = {"type": "bench.delivered", "data": {"n": n, "sentAt": time.time()}}
            async with http.post(url, data=orjson.dumps(body), headers=headers) as response:
                await response.read()

        await open_loop(rate, total, one)
        await sink.wait_count(http, total, limit=120)
        latencies = sorted(float(x) for x in (await sink.stats(http))["latencies"])  # type: ignore[union-attr]
    finally:
        server.stop()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    return EndToEnd(burst, single, rate, p50 * 1000, p99 * 1000)


async def run_backend(backend: str, quick: bool) -> None:
    count = 2000 if quick else 10000
    seconds = 3.0 if quick else 10.0
    sink = Sink()
    admin = None
    bench_db = f"jb_bench_dlv_{uuid.uuid4().hex[:6]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            else:
                admin = await asyncpg.connect(PG_ADMIN)
                await admin.execute(f'CREATE DATABASE "{bench_db}"')
                url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{bench_db}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
                await sink.ready(http)
                # Raw before and after the worker phase, averaged: the machine's load drifts.
                raw_before = await raw_rate(sink, count)
                delivered = await worker_rate(url, Path(tmp), sink, http, count)
                floor = await bookkeeping_floor(backend, url, tmp, sink, count)
                raw_after = await raw_rate(sink, count)
                raw = Rate(
                    (raw_before.per_second + raw_after.per_second) / 2,
                    (raw_before.cpu_us + raw_after.cpu_us) / 2,
                )
                e2e = await end_to_end_latency(url, Path(tmp), sink, http, count, seconds)
    finally:
        sink.stop()
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
            await admin.close()
    print(f"\n[{backend}] {count} deliveries of 1 KiB to a local sink")
    ratio = delivered.per_second / raw.per_second
    print(
        f"  {'one worker process':<34} {delivered.per_second:>10,.0f} deliveries/s   "
        f"ratio {ratio:.2f}   CPU {delivered.cpu_us:,.0f} us/delivery"
    )
    print(
        f"  {'raw aiohttp client, pool 64':<34} {raw.per_second:>10,.0f} requests/s     "
        f"CPU {raw.cpu_us:,.0f} us/request   CPU ratio {raw.cpu_us / delivered.cpu_us:.2f}"
    )
    print(
        f"  {'bookkeeping floor (see docstring)':<34} {floor.per_second:>10,.0f} deliveries/s   "
        f"ratio {floor.per_second / raw.per_second:.2f}   CPU {floor.cpu_us:,.0f} us/delivery"
    )
    print(
        f"  {'the worker against the floor':<34} {delivered.per_second / floor.per_second:>10.2f}"
    )
    print("  pipeline, every role in one process:")
    print(f"    {'events published 1000 per request':<32} {e2e.burst_maximum:>10,.0f} deliveries/s")
    print(f"    {'events published one per request':<32} {e2e.single_maximum:>10,.0f} deliveries/s")
    print(
        f"[{backend}] publish -> delivered, one event per request at {e2e.rate:,.0f} events/s"
        " (half the maximum of single events)"
    )
    print(f"  p50 {e2e.p50_ms:.1f} ms   p99 {e2e.p99_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        asyncio.run(run_backend(backend, args.quick))


if __name__ == "__main__":
    main()
