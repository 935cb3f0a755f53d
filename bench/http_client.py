"""Outbound HTTP client benchmark: junctionbox's client against raw aiohttp, one run.

Run: ``python bench/http_client.py [--quick] [--requests N] [--concurrency N]``.

One fast upstream (aiohttp, its own process) answers every POST with a small JSON body.
In this process (uvloop, as the server runs), each client POSTs 1 KiB bodies with N
concurrent tasks:

- **raw aiohttp**: one ``ClientSession`` with a pool of 64 (the baseline);
- **GuardedHttpClient.send**: junctionbox's client (SSRF guard, capped body);
- **GuardedHttpClient.stream**: the same, body read through ``StreamedResponse.read``;
- **Http1Client**: the bare HTTP/1.1 client under ``GuardedHttpClient``, no guard.

Each is reported as requests/s and CPU µs per request of this (the client) process
(``time.process_time``), with ratios to raw aiohttp. The clients run in turns, twice, and
the better round of each is kept, so that a burst of load from elsewhere on a shared
machine hurts one client less. CPU per request is the figure to trust on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import uvloop
from benchkit import free_port, wait_port

from junctionbox.connectors.http1 import Http1Client, request_head
from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.netguard import parse_allowlist

PYTHON = sys.executable
BODY = b"x" * 1024
UPSTREAM = """
import sys
from aiohttp import web
BODY = b'{"data": {"ref": "R-1", "status": "BOOKED"}}'
async def handle(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class Result:
    name: str
    rps: float
    cpu_us: float


Send = Callable[[], Awaitable[None]]


async def drive(send: Send, requests: int, concurrency: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of this process for ``requests`` sends."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await send()

    for _ in range(concurrency):  # warm the pool and caches
        await send()
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def run(port: int, requests: int, concurrency: int, rounds: int) -> list[Result]:
    url = f"http://127.0.0.1:{port}/book"
    headers = {"Content-Type": "application/json"}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    guarded = GuardedHttpClient(parse_allowlist(f"127.0.0.1:{port}"), pool_size=64)

    async def raw() -> None:
        async with session.post(url, data=BODY, headers=headers) as response:
            await response.read()
            assert response.status == 200

    async def send() -> None:
        result = await guarded.send("POST", url, headers=headers, body=BODY)
        assert result.status == 200

    async def stream() -> None:
        async with guarded.stream("POST", url, headers=list(headers.items()), body=BODY) as r:
            await r.read(64 * 1024)
            assert r.status == 200

    async def resolve(host: str, _port: int) -> str:
        return host

    bare = Http1Client(resolve, limit=64)
    head = request_head("POST", "/book", f"127.0.0.1:{port}", list(headers.items()), len(BODY))

    async def http1() -> None:
        response = await bare.request(("http", "127.0.0.1", port), "POST", head, BODY)
        try:
            while await response.next_chunk():
                pass
        finally:
            response.release()
        assert response.status == 200

    clients: dict[str, Send] = {
        "raw aiohttp (pool 64)": raw,
        "GuardedHttpClient.send": send,
        "GuardedHttpClient.stream": stream,
        "Http1Client (no guard)": http1,
    }
    best: dict[str, Result] = {}
    try:
        for _ in range(rounds):
            for name, client in clients.items():
                wall, cpu = await drive(client, requests, concurrency)
                result = Result(name, requests / wall, cpu / requests * 1e6)
                if name not in best or result.cpu_us < best[name].cpu_us:
                    best[name] = result
    finally:
        await session.close()
        await guarded.close()
        bare.close()
    return list(best.values())


def report(results: list[Result], concurrency: int) -> None:
    base = results[0]
    print(f"{concurrency} concurrent tasks, 1 KiB POST bodies, uvloop; best of the rounds")
    print(f"{'client':<28} {'req/s':>9} {'CPU us/req':>11} {'x raw req/s':>12} {'x raw CPU':>10}")
    for r in results:
        print(
            f"{r.name:<28} {r.rps:>9,.0f} {r.cpu_us:>11.1f} "
            f"{r.rps / base.rps:>12.2f} {r.cpu_us / base.cpu_us:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    requests = 5_000 if args.quick else args.requests
    port = free_port()
    upstream = subprocess.Popen(
        [PYTHON, "-c", UPSTREAM, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, upstream)
        results = uvloop.run(run(port, requests, args.concurrency, args.rounds))
    finally:
        upstream.terminate()
        upstream.wait(20)
    report(results, args.concurrency)


if __name__ == "__main__":
    main()
