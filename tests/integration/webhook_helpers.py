"""Shared set-up of the webhook receiver tests: sources over the API, signed requests per
scheme, and reads of what the receiver stored."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import stripe
from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from standardwebhooks.webhooks import Webhook

from junctionbox.domain.webhook_verification import Encoding, sign_hmac
from junctionbox.services.container import Services
from junctionbox.store.tables import delivery_logs, events, webhook_receipts

SOURCES = "/api/v1/webhook-sources"


def receive_path(source_id: str) -> str:
    return f"/api/v1/webhooks/{source_id}"


async def create_source(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": f"src-{time.monotonic_ns()}", "eventType": "order.created", **fields}
    body.setdefault("verification", {"scheme": "STANDARD_WEBHOOKS"})
    response = await client.post(SOURCES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


@dataclass(frozen=True)
class Sender:
    """A partner of one scheme: the source's verification block and how it signs."""

    scheme: str
    verification: dict[str, Any]
    secret: str

    def headers(
        self, body: bytes, *, msg_id: str = "msg_1", at: int | None = None
    ) -> dict[str, str]:
        now = int(time.time()) if at is None else at
        if self.scheme == "STANDARD_WEBHOOKS":
            sent = datetime.fromtimestamp(now, UTC)
            signature = Webhook(self.secret).sign(msg_id, sent, body)
            return {
                "webhook-id": msg_id,
                "webhook-timestamp": str(now),
                "webhook-signature": signature,
            }
        if self.scheme == "HMAC_SHA256":
            mac = sign_hmac(body, self.secret, Encoding.BASE64)
            return {"x-shop-hmac": "sha256=" + mac, "x-request-id": msg_id}
        if self.scheme == "GITHUB":
            return {
                "x-hub-signature-256": "sha256=" + sign_hmac(body, self.secret),
                "x-github-delivery": msg_id,
            }
        if self.scheme == "STRIPE":
            header = stripe.WebhookSignature.generate_signature_header(
                body.decode(), self.secret, now
            )
            return {"stripe-signature": header}
        if self.scheme == "BASIC":
            token = base64.b64encode(f"partner:{self.secret}".encode()).decode()
            return {"authorization": f"Basic {token}", "x-request-id": msg_id}
        return {"x-partner-key": self.secret, "x-request-id": msg_id}


SENDERS = {
    "STANDARD_WEBHOOKS": Sender(
        "STANDARD_WEBHOOKS",
        {"scheme": "STANDARD_WEBHOOKS"},
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ),
    "HMAC_SHA256": Sender(
        "HMAC_SHA256",
        {
            "scheme": "HMAC_SHA256",
            "header": "X-Shop-Hmac",
            "encoding": "BASE64",
            "prefix": "sha256=",
        },
        "shop-secret-1",
    ),
    "GITHUB": Sender("GITHUB", {"scheme": "GITHUB"}, "It's a Secret to Everybody"),
    "STRIPE": Sender("STRIPE", {"scheme": "STRIPE"}, "whsec_stripe_test_secret"),
    "BASIC": Sender("BASIC", {"scheme": "BASIC", "username": "partner"}, "basic-password-1"),
    "API_KEY": Sender("API_KEY", {"scheme": "API_KEY", "header": "X-Partner-Key"}, "partner-key-1"),
}


def source_fields(sender: Sender, **fields: Any) -> dict[str, Any]:
    """The source for ``sender``: its message id in x-request-id where the scheme has none."""
    verification = {**sender.verification, "secret": sender.secret}
    if sender.scheme in ("HMAC_SHA256", "BASIC", "API_KEY"):
        fields.setdefault("messageIdHeader", "X-Request-Id")
    return {"verification": verification, **fields}


async def logged_events(services: Services, org_id: int) -> list[RowMapping]:
    query = select(events).where(events.c.org_id == org_id).order_by(events.c.received_at)
    async with services.db.read() as conn:
        return list((await conn.execute(query)).mappings().all())


async def inbound_lines(services: Services, source_id: str) -> list[RowMapping]:
    query = (
        select(delivery_logs)
        .where(delivery_logs.c.integration_id == source_id)
        .order_by(delivery_logs.c.created_at, delivery_logs.c.id)
    )
    async with services.db.read() as conn:
        return list((await conn.execute(query)).mappings().all())


async def receipts(services: Services, source_id: str) -> list[RowMapping]:
    query = select(webhook_receipts).where(webhook_receipts.c.source_id == source_id)
    async with services.db.read() as conn:
        return list((await conn.execute(query)).mappings().all())
