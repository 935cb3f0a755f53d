"""Proxy benchmark: junctionbox's inbound proxy against a bare forwarder and nginx, one run.

Run: ``python bench/proxy.py [--quick] [--seconds N] [--connections N]``.

One fast upstream (aiohttp, its own process) answers every POST with a small JSON body.
``wrk`` (Debian's package; the load generator, in C, so it is not the bottleneck) drives,
for the same number of seconds and connections, in this order:

- **direct**: the upstream itself (the baseline for added latency);
- **(b) bare forwarder**: a Starlette app (uvicorn, uvloop, httptools) that POSTs the body
  to the upstream with one shared aiohttp session and returns the answer;
- **(c) nginx**: ``proxy_pass`` with upstream keep-alive, 2 worker processes, a temporary
  config, run as a non-daemon subprocess (``apt-get install nginx`` if missing);
- **(a) junctionbox**: ``junctionbox serve --roles api`` (SQLite) with an inbound
  integration that checks an API key (plus the platform API key), rate-limits (a bucket
  large enough never to refuse) and transforms the request (a SIMPLE mapping); the response
  streams back; each call is logged (batched) as an INBOUND delivery;
- **(a) x2**: two such processes on two ports (one wrk per port, rates summed).

Then p50 with a single connection, direct and through (a): the latency junctionbox adds.
Ratios printed: (a)/(b) (target >= 0.8), (a)x2/(c) (target >= 0.25), added p50 (<= 1 ms).
Everything shares the machine's cores; figures from a busy machine are noisy. So each run
also reports the CPU time the server spent per request (utime + stime of the server's
process tree from ``/proc/<pid>/stat``, before and after the run, over wrk's request
count): far less sensitive to other load than the rates, and the figure to compare
between (a) and (b).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from benchkit import free_port, process_cpu_seconds, wait_port

EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (a throwaway bench key)
PARTNER_KEY = "bench-partner-key-0123456789"
BODY = '{"patientId": "p-1", "slot": "09:00", "note": "benchmark"}'
PYTHON = sys.executable


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

FORWARDER = """
import sys
import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
UPSTREAM = sys.argv[2]
session = None
async def forward(request):
    global session
    if session is None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    body = await request.body()
    async with session.post(UPSTREAM, data=body,
                            headers={"content-type": "application/json"}) as upstream:
        data = await upstream.read()
        return Response(data, status_code=upstream.status,
                        media_type=upstream.headers.get("content-type"))
app = Starlette(routes=[Route("/{path:path}", forward, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""

NGINX = """
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream backend {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us: float | None = None  # the server's CPU time per request, microseconds


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in task.read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) and of its live child processes (nginx's
    workers), in seconds."""
    try:
        own = process_cpu_seconds(pid)
    except OSError:
        return 0.0
    return own + sum(cpu_seconds(child) for child in _children(pid))


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(name: str, output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    for match in re.finditer(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", output):
        if match.group(1):
            errors += int(match.group(1))
        else:
            errors += sum(int(n) for n in re.findall(r"\d+", match.group(2)))
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return Result(name, rps, p50, p99, errors, requests)


def wrk_command(url: str, script: Path, seconds: int, connections: int, threads: int) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def run_wrk(
    name: str,
    urls: list[str],
    script: Path,
    seconds: int,
    connections: int,
    servers: list[int],
    threads: int = 1,
) -> Result:
    """One wrk per URL, concurrently; rates summed, latencies of the first; the CPU time of
    the ``servers`` (pids) per request."""
    cpu_before = sum(cpu_seconds(pid) for pid in servers)
    processes = [
        subprocess.Popen(
            wrk_command(url, script, seconds, connections, threads),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for url in urls
    ]
    outputs = [p.communicate(timeout=seconds + 60)[0].decode() for p in processes]
    cpu = sum(cpu_seconds(pid) for pid in servers) - cpu_before
    results = [parse_wrk(name, out) for out in outputs]
    requests = sum(r.requests for r in results)
    return Result(
        name,
        sum(r.rps for r in results),
        results[0].p50_ms,
        results[0].p99_ms,
        sum(r.errors for r in results),
        requests,
        cpu / requests * 1e6 if requests else None,
    )


def write_script(tmp: Path, name: str, headers: dict[str, str]) -> Path:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path = tmp / f"{name}.lua"
    path.write_text(WRK_SCRIPT.format(body=BODY, headers=lines))
    return path


class Processes:
    def __init__(self) -> None:
        self.items: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], port: int, env: dict[str, str] | None = None) -> int:
        """Start a server and wait for its port; its pid."""
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.items.append(process)
        wait_port(port, process)
        return process.pid

    def stop(self) -> None:
        for process in self.items:
            if process.poll() is None:
                process.terminate()
        for process in self.items:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def junctionbox_env(tmp: Path, port: int, upstream: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JB_")}
    env.update(
        JB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/jb.db",
        JB_DATA_DIR=str(tmp),
        JB_SECRET_KEY=SECRET,
        JB_ADMIN_EMAIL=EMAIL,
        JB_ADMIN_PASSWORD=PASSWORD,
        JB_PORT=str(port),
        JB_LOG_LEVEL="WARNING",
        JB_ROLES="api",
        JB_SSRF_ALLOWLIST=f"127.0.0.1:{upstream}",
        # The API rate limits (1,000 per minute per IP by default) would answer most of
        # the benchmark's calls with 429: the proxy is measured, not the limiter.
        JB_RATE_LIMIT_ENABLED="false",
    )
    return env


def set_up_junctionbox(base: str, upstream: int) -> dict[str, str]:
    """Org 1, an API key, and the inbound integration; the headers a caller sends."""
    with httpx.Client(base_url=base, timeout=30) as http:
        token = http.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        admin = {"authorization": f"Bearer {token.json()['token']}"}
        http.post("/api/v1/admin/orgs", json={"orgId": 1, "name": "bench"}, headers=admin)
        key = http.post(
            "/api/v1/admin/api-keys", json={"orgId": 1, "name": "bench"}, headers=admin
        ).json()["key"]
        created = http.post(
            "/api/v1/inbound-integrations?orgId=1",
            headers={"x-api-key": key},
            json={
                "name": "bench",
                "type": "booking",
                "targetUrl": f"http://127.0.0.1:{upstream}/book",
                "inboundAuthType": "API_KEY",
                "inboundAuthConfig": {"value": PARTNER_KEY},
                "rateLimits": {"enabled": True, "maxRequests": 1_000_000, "windowSeconds": 1},
                "requestFieldMappings": [
                    {"sourceField": "patientId", "targetField": "patient.id"},
                    {"sourceField": "slot", "targetField": "slot"},
                    {"sourceField": "note", "targetField": "comment"},
                ],
            },
        )
        created.raise_for_status()
        check = http.post(
            "/api/v1/integrations/booking?orgId=1",
            content=BODY,
            headers={"x-api-key": key, "x-integration-key": PARTNER_KEY},
        )
        if check.status_code != 200:
            raise RuntimeError(f"the proxy does not answer 200: {check.text}")
    return {"X-API-Key": key, "X-Integration-Key": PARTNER_KEY}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3-second runs")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pause", action="store_true", help="wait for Enter before (a), e.g. to attach py-spy"
    )
    args = parser.parse_args()
    seconds = 3 if args.quick else args.seconds
    if shutil.which("wrk") is None:
        # Reported, not faked: a Python load generator would be the bottleneck here.
        print("proxy benchmark skipped: wrk is missing (apt-get install -y wrk)")
        return
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    processes = Processes()
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="jb-proxy-bench-") as name:
        tmp = Path(name)
        try:
            upstream = free_port()
            upstream_pid = processes.start([PYTHON, "-c", UPSTREAM, str(upstream)], upstream)
            plain = write_script(tmp, "plain", {})
            conns = args.connections
            target = f"http://127.0.0.1:{upstream}/book"
            results["direct"] = run_wrk("direct", [target], plain, seconds, conns, [upstream_pid])

            forwarder = free_port()
            pid = processes.start([PYTHON, "-c", FORWARDER, str(forwarder), target], forwarder)
            results["b"] = run_wrk(
                "(b) bare forwarder",
                [f"http://127.0.0.1:{forwarder}/book"],
                plain,
                seconds,
                conns,
                [pid],
            )

            if nginx is not None:
                port = free_port()
                conf = tmp / "nginx.conf"
                conf.write_text(NGINX.format(tmp=tmp, upstream=upstream, port=port))
                pid = processes.start([nginx, "-c", str(conf), "-g", "daemon off;"], port)
                results["c"] = run_wrk(
                    "(c) nginx", [f"http://127.0.0.1:{port}/book"], plain, seconds, conns, [pid]
                )

            ports = [free_port(), free_port()]
            pids = []
            for index, port in enumerate(ports):
                data = tmp / "jb"
                data.mkdir(exist_ok=True)
                env = junctionbox_env(data, port, upstream)
                pids.append(processes.start([PYTHON, "-m", "junctionbox.cli", "serve"], port, env))
                if index == 0:
                    headers = set_up_junctionbox(f"http://127.0.0.1:{port}", upstream)
            script = write_script(tmp, "jb", headers)
            urls = [f"http://127.0.0.1:{p}/api/v1/integrations/booking?orgId=1" for p in ports]
            if args.pause:
                input(f"(a) runs as pid {pids[0]}; press Enter to start wrk")
            results["a"] = run_wrk("(a) junctionbox", urls[:1], script, seconds, conns, pids[:1])
            results["a2"] = run_wrk(
                "(a) junctionbox x2", urls, script, seconds, max(1, conns // 2), pids
            )
            results["direct1"] = run_wrk(
                "direct, 1 connection", [target], plain, seconds, 1, [upstream_pid]
            )
            results["a1"] = run_wrk("(a), 1 connection", urls[:1], script, seconds, 1, pids[:1])
        finally:
            processes.stop()
    report(results, nginx is not None)


def report(results: dict[str, Result], have_nginx: bool) -> None:
    print(f"{'run':<24} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/req':>11}")
    for result in results.values():
        cpu = f"{result.cpu_us:>11,.0f}" if result.cpu_us is not None else f"{'-':>11}"
        print(
            f"{result.name:<24} {result.rps:>10,.0f} {result.p50_ms:>8.2f} "
            f"{result.p99_ms:>8.2f} {result.errors:>7} {cpu}"
        )
    a, b = results["a"], results["b"]
    print(f"(a)/(b) = {a.rps / b.rps:.2f}  (target >= 0.8)")
    if a.cpu_us and b.cpu_us:
        print(f"CPU per request (b)/(a) = {b.cpu_us / a.cpu_us:.2f}  (the rate ratio, unloaded)")
    if have_nginx:
        print(f"(a) x2 / (c) = {results['a2'].rps / results['c'].rps:.2f}  (target >= 0.25)")
    else:
        print("(c) nginx: not measured (nginx is not installed: apt-get install -y nginx)")
    added = results["a1"].p50_ms - results["direct1"].p50_ms
    print(f"added p50 latency of (a) over the upstream = {added:.2f} ms  (target <= 1 ms)")


if __name__ == "__main__":
    main()
