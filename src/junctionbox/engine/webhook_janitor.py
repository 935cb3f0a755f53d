"""Forgets received webhook message ids whose replay window has passed.

Safe on every node at once: the purge is one idempotent DELETE.
"""

from __future__ import annotations

import asyncio
import logging

from junctionbox.engine.periodic import run_every
from junctionbox.services.webhook_intake import WebhookIntake

log = logging.getLogger(__name__)


class WebhookJanitor:
    def __init__(self, intake: WebhookIntake, *, interval_seconds: float = 300.0) -> None:
        self.intake = intake
        self.interval_seconds = interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        failure = "purging expired webhook receipts failed"
        await run_every(stop, self.interval_seconds, self.intake.purge_expired, failure, log)
