"""Forgets received webhook message ids whose replay window has passed.

Safe on every node at once: the purge is one idempotent DELETE.
"""

from __future__ import annotations

import asyncio
import logging

from junctionbox.services.webhook_intake import WebhookIntake

log = logging.getLogger(__name__)


class WebhookJanitor:
    def __init__(self, intake: WebhookIntake, *, interval_seconds: float = 300.0) -> None:
        self.intake = intake
        self.interval_seconds = interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.intake.purge_expired()
            except Exception:  # the next round tries again; one failure must not end the loop
                log.exception("purging expired webhook receipts failed")
            try:
                await asyncio.wait_for(stop.wait(), self.interval_seconds)
            except TimeoutError:
                continue
