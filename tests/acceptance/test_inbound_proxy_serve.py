"""``junctionbox serve`` as a subprocess proxies a call to a real upstream on 127.0.0.1:
inbound credential checked, request and response transformed, outgoing auth added, and
the call logged as an INBOUND delivery."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from tests.acceptance.test_serve import ADMIN, JB, environment, free_port, wait_healthy

from junctionbox.testing import Behaviour, RecordingSink

PARTNER_KEY = "partner-key-0123456789"
UPSTREAM_TOKEN = "upstream-token-0123456789"


class ThreadedSink:
    """A RecordingSink on its own event loop in a thread (the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sink = RecordingSink()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RecordingSink:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sink.start(), self.loop).result(10)
        return self.sink

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/jb.db"
    return str(request.getfixturevalue("fresh_pg_database"))


@pytest.fixture
def upstream() -> Iterator[RecordingSink]:
    with ThreadedSink() as sink:
        yield sink


@pytest.mark.slow
def test_proxy_through_the_real_server(
    tmp_path: Path, database_url: str, upstream: RecordingSink
) -> None:
    upstream.on(
        "/api/book",
        Behaviour(201, b'{"data": {"ref": "R-1"}}', {"content-type": "application/json"}),
    )
    port = free_port()
    env = environment(tmp_path, database_url, JB_SSRF_ALLOWLIST=upstream.allowlist_entry)
    process = subprocess.Popen(
        [*JB, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        with httpx.Client(base_url=base, timeout=30) as http:
            token = http.post("/api/v1/auth/login", json=ADMIN).json()["token"]
            admin = {"authorization": f"Bearer {token}"}
            assert http.post(
                "/api/v1/admin/orgs", json={"orgId": 648, "name": "Acme"}, headers=admin
            ).is_success
            key = http.post(
                "/api/v1/admin/api-keys", json={"orgId": 648, "name": "app"}, headers=admin
            ).json()["key"]
            created = http.post(
                "/api/v1/inbound-integrations?orgId=648",
                headers={"x-api-key": key},
                json={
                    "name": "Booking",
                    "type": "appointment-booking",
                    "targetUrl": upstream.url("/api/book"),
                    "inboundAuthType": "API_KEY",
                    "inboundAuthConfig": {"value": PARTNER_KEY},
                    "outgoingAuthType": "BEARER",
                    "outgoingAuthConfig": {"token": UPSTREAM_TOKEN},
                    "requestTransformationMode": "JSONATA",
                    "requestTransformScript": '{"patient": patientId}',
                    "responseTransformationMode": "JSONATA",
                    "responseTransformScript": '{"reference": data.ref}',
                },
            )
            assert created.status_code == 201, created.text
            call = "/api/v1/integrations/appointment-booking?orgId=648"
            refused = http.post(call, json={"patientId": "p-9"}, headers={"x-api-key": key})
            assert refused.status_code == 401
            response = http.post(
                call,
                json={"patientId": "p-9"},
                headers={"x-api-key": key, "x-integration-key": PARTNER_KEY},
            )
            assert response.status_code == 201, response.text
            assert response.json() == {"reference": "R-1"}
            (seen,) = upstream.requests
            assert orjson.loads(seen.body) == {"patient": "p-9"}
            assert seen.header("authorization") == f"Bearer {UPSTREAM_TOKEN}"
            assert seen.header("x-integration-key") is None
            assert seen.header("x-api-key") is None
            deadline = time.monotonic() + 10  # the success row is written in the background
            rows: list[dict[str, object]] = []
            while not rows and time.monotonic() < deadline:
                rows = http.get(
                    "/api/v1/logs?orgId=648&direction=INBOUND", headers={"x-api-key": key}
                ).json()["logs"]
                time.sleep(0.1)
            assert [r["responseStatus"] for r in rows] == [201]
    finally:
        process.terminate()
        process.wait(20)
