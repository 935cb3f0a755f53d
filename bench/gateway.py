"""Gateway benchmark: requests through a gateway route against the same upstream called
directly, in the same run.

Run: ``python bench/gateway.py [--quick]``.

An upstream (aiohttp, its own process) answers every GET with a 1 KiB JSON body. A
``junctionbox serve --roles api`` process on SQLite serves one route ``/gw/1/item/{id}``
(no auth) and one ``/gw/1/keyed/{id}`` (API key, per-client rate limit high enough never to
refuse, so the bucket is still checked). With 32 concurrent clients for a fixed count of
requests each path reports requests/s and p50/p99 latency; the ratios to the direct calls
are printed, with the CPU time the serving process spent per request (``/proc/<pid>/stat``,
before and after each run). Client, server and upstream share the machine's cores.
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
from pathlib import Path

import aiohttp
from aiohttp import web
from benchkit import free_port, process_cpu_seconds

EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (a throwaway bench key)
BODY = b'{"filler": "' + b"A" * 1000 + b'"}'
CONCURRENCY = 32


def run_upstream(port: int) -> None:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with http.get(url) as response:
                if response.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


async def load(
    http: aiohttp.ClientSession, url: str, total: int, headers: dict[str, str]
) -> tuple[float, float, float]:
    """requests/s, p50 ms, p99 ms of ``total`` GETs by CONCURRENCY clients."""
    latencies: list[float] = []
    per_client = total // CONCURRENCY

    async def client(n: int) -> None:
        for i in range(per_client):
            started = time.perf_counter()
            async with http.get(f"{url}/{n}-{i}", headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        len(latencies) / elapsed,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
    )


async def set_up(http: aiohttp.ClientSession, base: str, upstream: str) -> dict[str, str]:
    async with http.post(
        f"{base}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
    ) as response:
        admin = {"authorization": f"Bearer {(await response.json())['token']}"}
    async with http.post(
        f"{base}/api/v1/admin/orgs", json={"orgId": 1, "name": "bench"}, headers=admin
    ) as response:
        assert response.status == 201, await response.text()
    async with http.post(
        f"{base}/api/v1/admin/api-keys", json={"orgId": 1, "name": "bench"}, headers=admin
    ) as response:
        key = {"x-api-key": (await response.json())["key"]}
    routes = [
        {"path": "/item/{id}", "targetUrl": upstream},
        {
            "path": "/keyed/{id}",
            "targetUrl": upstream,
            "authentication": {"type": "API_KEY"},
            "rateLimiting": {"perClient": {"maxRequests": 10_000_000, "windowSeconds": 60}},
        },
    ]
    for route in routes:
        async with http.post(
            f"{base}/api/v1/integration/api-gateway/configure?orgId=1", json=route, headers=admin
        ) as response:
            assert response.status == 201, await response.text()
    return key


async def measured(
    pid: int, http: aiohttp.ClientSession, url: str, total: int, headers: dict[str, str]
) -> tuple[float, float, float, float]:
    """``load`` and the CPU microseconds process ``pid`` spent per request meanwhile."""
    before = process_cpu_seconds(pid)
    rate, p50, p99 = await load(http, url, total, headers)
    return rate, p50, p99, (process_cpu_seconds(pid) - before) / total * 1e6


def start_server(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "junctionbox.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main(quick: bool) -> None:
    total = 2_000 if quick else 20_000
    upstream_port, port = free_port(), free_port()
    upstream_process = multiprocessing.Process(target=run_upstream, args=(upstream_port,))
    upstream_process.start()
    upstream = f"http://127.0.0.1:{upstream_port}"
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "JB_DATABASE_URL": f"sqlite+aiosqlite:///{Path(data_dir) / 'jb.db'}",
            "JB_DATA_DIR": data_dir,
            "JB_SECRET_KEY": SECRET,
            "JB_ADMIN_EMAIL": EMAIL,
            "JB_ADMIN_PASSWORD": PASSWORD,
            "JB_PORT": str(port),
            "JB_LOG_LEVEL": "WARNING",
            "JB_ROLES": "api",
            "JB_RATE_LIMIT_ENABLED": "false",  # the API limits; route limits still apply
            "JB_SSRF_ALLOWLIST": f"127.0.0.1:{upstream_port}",
        }
        server = start_server(env)
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
            async with aiohttp.ClientSession(connector=connector) as http:
                await wait_ready(http, f"{upstream}/ready")
                await wait_ready(http, f"{base}/api/v1/health/ready")
                key = await set_up(http, base, upstream)
                await load(http, f"{base}/gw/1/item", total // 10, {})  # warm up
                up_pid = upstream_process.pid or 0
                direct = await measured(up_pid, http, f"{upstream}/item", total, {})
                plain = await measured(server.pid, http, f"{base}/gw/1/item", total, {})
                keyed = await measured(server.pid, http, f"{base}/gw/1/keyed", total, key)
        finally:
            server.terminate()
            server.wait(timeout=30)
            upstream_process.terminate()
            upstream_process.join(timeout=10)
    print(f"{total} GETs, {CONCURRENCY} concurrent clients, 1 KiB JSON answers")
    print("path                      req/s    p50 ms  p99 ms  ratio to direct  server CPU us/req")
    for name, (rate, p50, p99, cpu) in (
        ("upstream directly", direct),
        ("gateway route, no auth", plain),
        ("gateway route, key+limit", keyed),
    ):
        print(
            f"{name:<25} {rate:>8.0f} {p50:>8.2f} {p99:>7.2f}  {rate / direct[0]:>15.2f}"
            f"  {cpu:>17.0f}"
        )
    print(f"added p50 latency (no auth): {plain[1] - direct[1]:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    asyncio.run(main(parser.parse_args().quick))
