"""Housekeeping on a timer: stream retention and expired idempotency keys.

Safe to run on every node at once: trimming counts what it actually deleted, and purging
expired keys is idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from junctionbox.engine.periodic import run_every
from junctionbox.services.publish import PublishService
from junctionbox.services.streams import StreamService

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(
        self, streams: StreamService, publisher: PublishService, *, interval_seconds: float = 60.0
    ) -> None:
        self.streams = streams
        self.publisher = publisher
        self.interval_seconds = interval_seconds

    async def run_once(self) -> None:
        await self.streams.enforce_retention()
        await self.publisher.purge_expired_keys()

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(stop, self.interval_seconds, self.run_once, "maintenance round failed", log)
