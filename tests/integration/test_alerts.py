"""Alerts end to end: rules and channels through the API, a failing delivery that fills
the DLQ and disables its integration, the evaluation pass, an e-mail received by a local
SMTP server (aiosmtpd) and a signed webhook received by a recording sink; deduplication
and cool-down; the alert center with acknowledge; tenant isolation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from tests.integration.delivery_helpers import add_integration
from tests.integration.obs_helpers import Obs, observed

from junctionbox.domain.rollups import AttemptFacts, aggregate
from junctionbox.engine.heartbeat import NodeHeartbeat
from junctionbox.runtime import alert_loop
from junctionbox.services.alerting import _rate_conditions
from junctionbox.store.queries.destination_breakers import BreakerRow, save_breakers
from junctionbox.store.queries.rollups import add_rollups
from junctionbox.store.tables import alert_channels
from junctionbox.store.types import utcnow
from junctionbox.testing import Behaviour, RecordingSink

WEBHOOK_SECRET = "alert-webhook-secret-0123456789"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def api(obs: Obs, method: str, path: str, who: str = "user_a", **kw: Any) -> Any:
    response = await obs.client.request(method, path, headers=obs.world.headers[who], **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def test_alerts_reach_email_webhook_and_the_alert_center_once(
    db_url: str, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    async with (
        RecordingSink() as sink,
        observed(
            db_url, tmp_path, [sink.allowlist_entry], smtp_host="127.0.0.1", smtp_port=port
        ) as obs,
    ):
        email = await api(
            obs,
            "POST",
            "/api/v1/alert-channels",
            json={"type": "EMAIL", "recipients": ["ops@example.com"]},
        )
        hook = await api(
            obs,
            "POST",
            "/api/v1/alert-channels",
            json={"type": "WEBHOOK", "url": sink.url("/alerts"), "secret": WEBHOOK_SECRET},
        )
        assert hook["secret"] == "****"
        channels = [email["id"], hook["id"]]
        await api(
            obs,
            "POST",
            "/api/v1/alert-rules",
            json={"kind": "DLQ_SIZE", "threshold": 0, "channelIds": channels},
        )
        await api(
            obs,
            "POST",
            "/api/v1/alert-rules",
            json={"kind": "INTEGRATION_DISABLED", "channelIds": [email["id"]]},
        )
        bad = await add_integration(
            obs.services,
            sink.url("/down"),
            org_id=100,
            eventType="order.created",
            retryPolicy={"maxRetries": 0, "initialDelay": 1, "maxDelay": 1},
            disableAfterFailures=1,
        )
        sink.on("/down", Behaviour(500))
        await obs.publish({"type": "order.created", "data": {}})
        await obs.deliver()

        evaluator = alert_loop(obs.services).evaluator
        assert await evaluator.tick() == 3  # DLQ: e-mail + webhook; disabled: e-mail
        await asyncio.sleep(0)
        subjects = sorted(m["Subject"] for m in inbox.messages)
        assert len(subjects) == 2
        assert any("DLQ_SIZE" in s for s in subjects)
        assert any("INTEGRATION_AUTO_DISABLED" in s for s in subjects)
        assert {m["To"] for m in inbox.messages} == {"ops@example.com"}
        [posted] = sink.requests_to("/alerts")
        digest = hmac.new(WEBHOOK_SECRET.encode(), posted.body, hashlib.sha256).hexdigest()
        assert posted.header("x-junctionbox-signature") == f"sha256={digest}"
        assert orjson.loads(posted.body)["alert"]["kind"] == "DLQ_SIZE"

        # Deduplicated and cooling down: nothing new on the next passes.
        assert await evaluator.tick() == 0
        assert await evaluator.tick() == 0
        assert len(inbox.messages) == 2
        assert len(sink.requests_to("/alerts")) == 1

        center = await api(obs, "GET", "/api/v1/alerts")
        kinds = sorted(a["kind"] for a in center["data"])
        assert kinds == ["DLQ_SIZE", "INTEGRATION_AUTO_DISABLED"]
        assert center["total"] == 2
        dlq_alert = next(a for a in center["data"] if a["kind"] == "DLQ_SIZE")
        assert all(n["ok"] for n in dlq_alert["notifications"])
        assert bad.id in {a["subjectId"] for a in center["data"]}
        acked = await api(obs, "POST", f"/api/v1/alerts/{dlq_alert['id']}/acknowledge")
        assert acked["acknowledged"] is True
        open_only = await api(obs, "GET", "/api/v1/alerts", params={"acknowledged": "false"})
        assert [a["kind"] for a in open_only["data"]] == ["INTEGRATION_AUTO_DISABLED"]

        # The other tenant sees none of it and cannot acknowledge it.
        theirs = await api(obs, "GET", "/api/v1/alerts", who="user_b")
        assert theirs["total"] == 0
        assert (await api(obs, "GET", "/api/v1/alert-rules", who="user_b"))["data"] == []
        foreign = await obs.client.post(
            f"/api/v1/alerts/{dlq_alert['id']}/acknowledge",
            headers=obs.world.headers["user_b"],
        )
        assert foreign.status_code == 404
        # The admin without orgId sees every tenant's alerts.
        assert (await api(obs, "GET", "/api/v1/admin/alerts", who="admin"))["total"] == 2


async def test_bad_rules_and_channels_are_4xx(db_url: str, tmp_path: Path) -> None:
    async with observed(db_url, tmp_path, []) as obs:
        headers = obs.world.headers["user_a"]
        for path, body in (
            ("/api/v1/alert-rules", {"kind": "NOPE"}),
            ("/api/v1/alert-rules", {"kind": "WORKER_STOPPED"}),
            ("/api/v1/alert-rules", {"kind": "ERROR_RATE", "threshold": "x"}),
            ("/api/v1/alert-rules", {"kind": "DLQ_SIZE", "channelIds": ["ach_missing"]}),
            ("/api/v1/alert-channels", {"type": "EMAIL", "recipients": ["not-an-address"]}),
            ("/api/v1/alert-channels", {"type": "WEBHOOK", "url": "ftp://x"}),
        ):
            response = await obs.client.post(path, json=body, headers=headers)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["code"] == "VALIDATION_ERROR"


def test_error_rate_rule_needs_enough_attempts_and_more_than_the_threshold() -> None:
    rows = [
        {"org_id": 100, "integration_id": "int_a", "key": "SUCCESS", "count": 8},
        {"org_id": 100, "integration_id": "int_a", "key": "FAILED", "count": 2},
        {"org_id": 100, "integration_id": "int_b", "key": "SUCCESS", "count": 9},
        {"org_id": 100, "integration_id": "int_b", "key": "RETRYING", "count": 1},
        {"org_id": 200, "integration_id": "int_c", "key": "FAILED", "count": 5},
    ]
    fired = _rate_conditions(rows, 0.10, 900)  # type: ignore[arg-type]
    assert [(org, subject) for org, subject, _, _ in fired] == [(100, "int_a")]
    assert fired[0][3]["errorRate"] == 0.2


async def test_error_rate_circuit_and_stopped_worker_rules_fire_from_the_store(
    db_url: str, tmp_path: Path
) -> None:
    async with observed(db_url, tmp_path, []) as obs:
        now = utcnow()
        attempts = [
            AttemptFacts(100, "int_flaky", now, "FAILED" if n < 3 else "SUCCESS", None, 10)
            for n in range(10)
        ]
        async with obs.services.db.write() as conn:
            await add_rollups(conn, aggregate(attempts))
            await save_breakers(
                conn, [BreakerRow(100, "https://partner.example", "OPEN", 5, 0, now, now)]
            )
        stale = timedelta(seconds=obs.services.settings.node_stale_seconds * 2)
        await NodeHeartbeat(
            obs.services.db,
            node_id="node-x",
            roles=["worker"],
            interval=1,
            clock=lambda: now - stale,
        ).beat()
        for kind in ("ERROR_RATE", "CIRCUIT_OPEN"):
            await api(obs, "POST", "/api/v1/alert-rules", json={"kind": kind})
        await api(obs, "POST", "/api/v1/alert-rules", who="admin", json={"kind": "WORKER_STOPPED"})
        # A tenant cannot see or make platform rules; it sees only its own.
        assert len((await api(obs, "GET", "/api/v1/alert-rules"))["data"]) == 2
        evaluator = alert_loop(obs.services).evaluator
        await evaluator.tick()
        await evaluator.tick()  # cooling down: no second alert of any
        mine = await api(obs, "GET", "/api/v1/alerts")
        assert sorted(a["kind"] for a in mine["data"]) == ["CIRCUIT_OPEN", "ERROR_RATE"]
        rate = next(a for a in mine["data"] if a["kind"] == "ERROR_RATE")
        assert rate["details"]["errorRate"] == 0.3
        assert rate["subjectId"] == "int_flaky"
        every = await api(obs, "GET", "/api/v1/admin/alerts", who="admin")
        assert sorted(a["kind"] for a in every["data"]) == [
            "CIRCUIT_OPEN",
            "ERROR_RATE",
            "WORKER_STOPPED",
        ]
        assert (await api(obs, "GET", "/api/v1/alerts", who="user_b"))["total"] == 0


async def test_channels_are_editable_and_keep_their_secret(db_url: str, tmp_path: Path) -> None:
    async with observed(db_url, tmp_path, []) as obs:
        path = "/api/v1/alert-channels"
        hook = await api(
            obs,
            "POST",
            path,
            json={
                "type": "WEBHOOK",
                "url": "https://hooks.example.com/a",
                "secret": WEBHOOK_SECRET,
            },
        )

        async def sealed() -> str | None:
            async with obs.services.db.read() as conn:
                row = (
                    await conn.execute(
                        select(alert_channels.c.sealed_secret).where(
                            alert_channels.c.id == hook["id"]
                        )
                    )
                ).one()
            return row[0]

        first = await sealed()
        renamed = await api(
            obs,
            "PATCH",
            f"{path}/{hook['id']}",
            json={"name": "on-call", "url": "https://hooks.example.com/b", "secret": "****"},
        )
        assert (renamed["name"], renamed["url"], renamed["secret"]) == (
            "on-call",
            "https://hooks.example.com/b",
            "****",
        )
        assert await sealed() == first
        await api(obs, "PATCH", f"{path}/{hook['id']}", json={"secret": "another-secret-0123456"})
        second = await sealed()
        assert second not in (None, first)
        assert obs.services.secretbox.open(second, hook["id"]) == "another-secret-0123456"
        cleared = await api(obs, "PATCH", f"{path}/{hook['id']}", json={"secret": None})
        assert cleared["secret"] is None
        headers = obs.world.headers["user_a"]
        for body in ({"type": "EMAIL"}, {"url": "ftp://x"}, {"secret": "short"}):
            bad = await obs.client.patch(f"{path}/{hook['id']}", json=body, headers=headers)
            assert bad.status_code == 400, body
        foreign = await obs.client.patch(
            f"{path}/{hook['id']}", json={"name": "x"}, headers=obs.world.headers["user_b"]
        )
        assert foreign.status_code == 404
        assert (await api(obs, "GET", path))["data"][0]["name"] == "on-call"
