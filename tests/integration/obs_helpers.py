"""Set-up shared by the observability tests: services whose guard lets a recording sink
through, tracing into an in-memory exporter, an API client, and a World of two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.engine.dispatcher import Dispatcher
from junctionbox.observability.tracing import Tracing
from junctionbox.runtime import build_services
from junctionbox.services.container import Services

PUBLISH = "/api/v1/integration/events/publish"


@dataclass
class Obs:
    services: Services
    client: httpx.AsyncClient
    world: World
    spans: InMemorySpanExporter

    async def publish(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        response = await self.client.post(
            PUBLISH, json=body, headers={**self.world.headers["key_a"], **headers}
        )
        assert response.status_code == 201, response.text
        return response

    async def deliver(self, *, horizon: float | None = None, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        await Dispatcher(self.services, node_id="test-dispatcher").dispatch_pending()
        listeners = (self.services.dlq, self.services.schedules)
        worker = DeliveryWorker(self.services, node_id="test-worker", listeners=listeners)
        await worker.run_until_idle(timeout, horizon=horizon)


@asynccontextmanager
async def observed(
    db_url: str, tmp_path: Path, allow: list[str], **settings: Any
) -> AsyncIterator[Obs]:
    services = build_services(
        make_settings(db_url, tmp_path, ssrf_allowlist=",".join(allow), **settings)
    )
    exporter = InMemorySpanExporter()
    services.telemetry.tracing = Tracing.with_processor(SimpleSpanProcessor(exporter))
    transport = httpx.ASGITransport(app=create_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            world = await World(client, services).build()
            exporter.clear()  # the set-up's own requests
            yield Obs(services, client, world, exporter)
    finally:
        await services.close()
