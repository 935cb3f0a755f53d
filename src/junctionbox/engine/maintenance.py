"""Housekeeping on a timer: stream retention, expired idempotency keys, finished queue jobs
and old delivery-log rows.

Safe to run on every node at once: trimming counts what it actually deleted, and purging
expired keys and finished jobs is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from junctionbox.engine.periodic import run_every
from junctionbox.queue.store import JobQueue
from junctionbox.services.publish import PublishService
from junctionbox.services.streams import StreamService
from junctionbox.store.database import Database
from junctionbox.store.queries import delivery_logs
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(
        self,
        db: Database,
        streams: StreamService,
        publisher: PublishService,
        queue: JobQueue,
        *,
        job_retention: timedelta | None = None,
        log_retention: timedelta | None = None,
        interval_seconds: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.streams = streams
        self.publisher = publisher
        self.queue = queue
        self.job_retention = job_retention  # None: finished jobs are kept
        self.log_retention = log_retention  # None: delivery logs are kept
        self.interval_seconds = interval_seconds
        self.clock = clock

    async def run_once(self) -> None:
        await self.streams.enforce_retention()
        await self.publisher.purge_expired_keys()
        if self.job_retention is not None:
            purged = await self.queue.purge_finished(self.clock() - self.job_retention)
            if purged:
                log.info("purged %d finished jobs", purged)
        if self.log_retention is not None:
            purged = await delivery_logs.purge_before(self.db, self.clock() - self.log_retention)
            if purged:
                log.info("purged %d delivery-log rows", purged)

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(stop, self.interval_seconds, self.run_once, "maintenance round failed", log)
