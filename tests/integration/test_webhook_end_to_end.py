"""End to end, on SQLite and PostgreSQL: a partner's verified webhook becomes an event in
the log AND an outbound integration delivers it to a real recording sink (the dispatcher
and the delivery worker run as in production, bounded)."""

from __future__ import annotations

import asyncio

import httpx
from standardwebhooks.webhooks import Webhook
from tests.integration.delivery_helpers import ORG, add_integration
from tests.integration.dispatch_helpers import tenant
from tests.integration.webhook_helpers import SENDERS, logged_events, receive_path

from junctionbox.api.app import create_app
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.engine.dispatcher import Dispatcher
from junctionbox.services.container import Services
from junctionbox.testing import RecordingSink


async def test_a_verified_webhook_is_logged_and_delivered(
    svc: Services, sink: RecordingSink
) -> None:
    integration = await add_integration(svc, sink.url("/out"), eventType="shop.*")
    sender = SENDERS["GITHUB"]
    created = await svc.webhook_sources.create(
        tenant(ORG),
        name="shop",
        description=None,
        is_active=True,
        config={
            "eventTypeFrom": "HEADER",
            "eventType": "X-GitHub-Event",
            "eventTypePrefix": "shop.",
            "stream": "partners",
            "verification": {"scheme": "GITHUB"},
        },
        secret=sender.secret,
    )
    body = b'{"order":  {"id": 7, "total": 12.5}}'
    headers = sender.headers(body, msg_id="gh-delivery-1") | {
        "x-github-event": "order_paid",
        "content-type": "application/json",
    }
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(receive_path(created.source.id), content=body, headers=headers)
        refused = await client.post(
            receive_path(created.source.id),
            content=body,
            headers=headers | {"x-hub-signature-256": "sha256=" + "0" * 64},
        )
    assert response.status_code == 202, response.text
    assert refused.status_code == 401
    [event] = await logged_events(svc, ORG)
    assert (event["event_id"], event["type"], event["stream"]) == (
        "gh-delivery-1",
        "shop.order_paid",
        "partners",
    )
    assert event["payload"] == body

    dispatched = await asyncio.wait_for(Dispatcher(svc, node_id="test").dispatch_pending(), 30)
    assert dispatched == 1
    worker = DeliveryWorker(svc, node_id="test-node")
    await worker.run_until_idle(timeout=30)
    [delivered] = await sink.wait_for(1, timeout=10)
    assert delivered.path == "/out"
    assert delivered.body == body  # the bytes the partner signed are the bytes delivered
    secret = integration.signing_keys[0].key
    signed = {
        k: delivered.header(k) or ""
        for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    Webhook(secret).verify(delivered.body, signed)
