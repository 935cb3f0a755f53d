"""At-least-once delivery under kill -9: every event acknowledged to a producer reaches the
endpoint after the server is killed mid-burst and restarted, each with one stable webhook-id.

The server runs every role as a user would start it (``junctionbox serve``); the endpoint is
a real HTTP sink in this process, allowlisted for the SSRF guard by its exact address.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook
from tests.acceptance.test_serve import ADMIN, JB, environment, free_port

from junctionbox.testing import RecordingSink

EVENTS = 240  # published in requests of 4, concurrently; bounded so the test ends by itself
KILL_AFTER_ACKS = 80
DEADLINE_SECONDS = 90


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/jb.db"
    return str(request.getfixturevalue("fresh_pg_database"))


class Server:
    def __init__(self, tmp_path: Path, database_url: str, sink: RecordingSink) -> None:
        self.env = environment(
            tmp_path,
            database_url,
            JB_SECRET_KEY="kill-test-secret-key-0123456789abcdefghijklmnop",
            JB_SSRF_ALLOWLIST=sink.allowlist_entry,
            # Jobs the killed worker held are claimable again when their lease runs out.
            JB_WORKER_LEASE_SECONDS="5",
        )
        self.tmp_path = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.starts = 0

    async def start(self) -> None:
        port = free_port()
        self.starts += 1
        with (self.tmp_path / f"server-{self.starts}.log").open("wb") as log:
            # Popen only spawns; the server's life is watched with poll() below.
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [*JB, "serve", "--port", str(port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "server exited early"
                try:
                    if (await http.get(f"{self.base}/api/v1/health", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError("server did not become healthy")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def set_up_tenant(http: httpx.AsyncClient, base: str, sink: RecordingSink) -> tuple[str, str]:
    token = (await http.post(f"{base}/api/v1/auth/login", json=ADMIN)).json()["token"]
    admin = {"authorization": f"Bearer {token}"}
    created = await http.post(
        f"{base}/api/v1/admin/orgs", json={"orgId": 100, "name": "A"}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = await http.post(
        f"{base}/api/v1/admin/api-keys", json={"orgId": 100, "name": "producer"}, headers=admin
    )
    integration = await http.post(
        f"{base}/api/v1/outbound-integrations?orgId=100",
        json={
            "name": "orders to partner",
            "eventType": "order.*",
            "targetUrl": sink.url("/hook"),
            "retryPolicy": {"maxRetries": 10, "initialDelay": 100, "maxDelay": 1000},
        },
        headers=admin,
    )
    assert integration.status_code == 201, integration.text
    return key.json()["key"], integration.json()["signingSecret"]


async def publish_burst(http: httpx.AsyncClient, base: str, key: str, server: Server) -> set[int]:
    """Publish EVENTS events; kill -9 the server after KILL_AFTER_ACKS acknowledgements.
    Returns the numbers of the acknowledged events."""
    acked: set[int] = set()
    killed = asyncio.Event()

    async def send(first: int) -> None:
        numbers = list(range(first, first + 4))
        body = {
            "events": [{"type": "order.created", "id": f"o-{n}", "data": {"n": n}} for n in numbers]
        }
        try:
            response = await http.post(
                f"{base}/api/v1/integration/events/publish?orgId=100",
                json=body,
                headers={"x-api-key": key},
                timeout=10,
            )
        except httpx.HTTPError:
            return  # in flight when the server died: not acknowledged, no promise made
        if response.status_code in (200, 201):
            acked.update(numbers)
        if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
            killed.set()
            server.kill()

    limiter = asyncio.Semaphore(8)

    async def limited(first: int) -> None:
        async with limiter:
            if not killed.is_set():
                await send(first)

    await asyncio.gather(*(limited(first) for first in range(0, EVENTS, 4)))
    assert killed.is_set(), "the burst ended before the kill"
    return acked


async def test_every_acknowledged_event_is_delivered_after_kill_9(
    tmp_path: Path, database_url: str
) -> None:
    async with RecordingSink() as sink:
        server = Server(tmp_path, database_url, sink)
        try:
            await server.start()
            async with httpx.AsyncClient() as http:
                key, secret = await set_up_tenant(http, server.base, sink)
                acked = await publish_burst(http, server.base, key, server)
                await server.start()  # same database, new process
                deadline = time.monotonic() + DEADLINE_SECONDS
                # Polling the sink's record is simplest here; the loop is bounded.
                while not acked <= delivered_numbers(sink) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.25)
        finally:
            server.stop()
        missing = sorted(acked - delivered_numbers(sink))
        assert not missing, f"acknowledged but never delivered: {missing[:20]}"
        assert_one_webhook_id_per_event_and_valid_signatures(sink, secret)


def delivered_numbers(sink: RecordingSink) -> set[int]:
    return {orjson.loads(r.body)["n"] for r in sink.requests_to("/hook")}


def assert_one_webhook_id_per_event_and_valid_signatures(sink: RecordingSink, secret: str) -> None:
    ids: dict[int, set[str]] = {}
    verifier = Webhook(secret)
    for request in sink.requests_to("/hook"):
        headers = {k.lower(): v for k, v in request.headers}
        verifier.verify(request.body, headers)  # raises on a bad signature
        ids.setdefault(orjson.loads(request.body)["n"], set()).add(headers["webhook-id"])
    redelivered = [n for n, seen in ids.items() if len(seen) > 1]
    assert not redelivered, f"a redelivery changed its webhook-id: {redelivered[:10]}"
