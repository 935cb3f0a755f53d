"""Two gateway processes on one PostgreSQL run a per-second scheduled job: every tick runs
exactly once (one run row, one delivery), whichever node claims it.

Both processes run every role (``junctionbox serve``). The job fetches from and delivers to
a recording sink in this process. It runs for a bounded few seconds and is then paused; the
test waits (bounded) for the queued runs to finish and checks the ticks form an unbroken
one-second series with no tick twice. ``catchUp: ALL`` makes "every tick" exact even when
the machine is slow (a late tick is run, not skipped).
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from tests.acceptance.test_serve import ADMIN, JB, environment, free_port, wait_healthy

from junctionbox.testing import Behaviour, RecordingSink

RUN_SECONDS = 6
SETTLE_SECONDS = 60


def start(tmp_path: Path, database_url: str, sink: RecordingSink, name: str) -> tuple[str, Any]:
    port = free_port()
    env = environment(
        tmp_path / name,
        database_url,
        JB_SECRET_KEY="cluster-test-secret-key-0123456789abcdefghij",
        JB_SSRF_ALLOWLIST=sink.allowlist_entry,
        JB_SCHEDULED_JOBS_POLL_SECONDS="0.5",
    )
    (tmp_path / name).mkdir(exist_ok=True)
    with (tmp_path / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [*JB, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, process)
    return base, process


def stop(process: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_two_nodes_run_each_tick_once(tmp_path: Path, fresh_pg_database: str) -> None:
    async with RecordingSink() as sink:
        sink.on("/source", Behaviour(200, b'[{"n": 1}]', {"content-type": "application/json"}))
        first, p1 = start(tmp_path, fresh_pg_database, sink, "a")
        second, p2 = start(tmp_path, fresh_pg_database, sink, "b")
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                token = (await http.post(f"{first}/api/v1/auth/login", json=ADMIN)).json()["token"]
                admin = {"authorization": f"Bearer {token}"}
                org = await http.post(
                    f"{first}/api/v1/admin/orgs", json={"orgId": 100, "name": "A"}, headers=admin
                )
                assert org.status_code == 201, org.text
                body = {
                    "name": "every second",
                    "targetUrl": sink.url("/in"),
                    "schedule": {"type": "INTERVAL", "intervalMs": 1000, "catchUp": "ALL"},
                    "dataSource": {"type": "API", "url": sink.url("/source")},
                    "transformation": {"mode": "JSONATA", "script": "{'count': $count(data)}"},
                }
                created = await http.post(
                    f"{second}/api/v1/scheduled-jobs?orgId=100", json=body, headers=admin
                )
                assert created.status_code == 201, created.text
                job = created.json()["id"]
                await asyncio.sleep(RUN_SECONDS)  # the nodes work; the sink answers meanwhile
                await http.post(
                    f"{first}/api/v1/scheduled-jobs/{job}/pause?orgId=100", headers=admin
                )
                logs = await settled(http, first, job, admin)
        finally:
            stop(p1)
            stop(p2)
        ticks = sorted(datetime.fromisoformat(log["scheduledFor"]) for log in logs)
        assert len(ticks) >= RUN_SECONDS - 2, ticks
        assert len(set(ticks)) == len(ticks)  # no tick twice
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
        # The pause cancels runs still queued (on a busy machine, the last tick's): only
        # runs after every one that ran may be cancelled; every other run succeeded.
        ran = [log for log in logs if log["status"] != "CANCELLED"]
        cancelled = [log for log in logs if log["status"] == "CANCELLED"]
        assert ran
        assert all(log["status"] == "SUCCESS" for log in ran), [log["errorContext"] for log in ran]
        last_ran = max(log["scheduledFor"] for log in ran)
        assert all(log["scheduledFor"] > last_ran for log in cancelled), cancelled
        deliveries = sink.requests_to("/in")
        keys = [r.header("idempotency-key") for r in deliveries]
        assert sorted(keys) == sorted(log["id"] for log in ran)  # one delivery per run
        assert all(orjson.loads(r.body) == {"count": 1} for r in deliveries)


async def settled(
    http: httpx.AsyncClient, base: str, job: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    """The job's runs once none is queued or running (bounded wait)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        response = await http.get(
            f"{base}/api/v1/scheduled-jobs/{job}/logs",
            params={"orgId": 100, "limit": 200},
            headers=headers,
        )
        logs: list[dict[str, Any]] = response.json()["logs"]
        if all(log["status"] not in ("QUEUED", "RUNNING") for log in logs):
            return logs
        assert time.monotonic() < deadline, "runs did not finish in time"
        await asyncio.sleep(0.3)
