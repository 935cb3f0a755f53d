"""The DLQ worker (seed 003): every ``dlq_poll_seconds`` it retries due dead-letter entries.

A cycle (:meth:`DlqWorker.run_once`):

1. abandons waiting entries whose integration was deleted (nothing can retry them);
2. counts as failed the redrives that ended without an outcome (see
   :meth:`DlqService.reconcile_stuck`), so no entry stays RETRYING for ever;
3. claims up to 50 due PENDING_RETRY entries of active integrations, oldest failure first,
   and enqueues their redrive jobs (the delivery worker sends them).

Safe on every node at once (it belongs to the ``scheduler`` role): the claim is one
conditional write (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two nodes never redrive
the same entry, and the dedupe key of each redrive job backs that up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from junctionbox.engine.periodic import run_every
from junctionbox.services.container import Services
from junctionbox.services.dlq import BATCH_SIZE
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)


class DlqWorker:
    def __init__(
        self,
        services: Services,
        *,
        node_id: str,
        batch_size: int = BATCH_SIZE,
        poll_seconds: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.dlq = services.dlq
        self.node_id = node_id
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds or services.settings.dlq_poll_seconds
        self.clock = clock

    async def run_once(self) -> int:
        """One cycle; the number of entries whose retry was enqueued."""
        now = self.clock()
        await self.dlq.abandon_orphans(now=now)
        await self.dlq.reconcile_stuck(now=now)
        redrives = await self.dlq.redrive_due(now=now, limit=self.batch_size)
        if redrives:
            log.info("DLQ worker %s enqueued %d retries", self.node_id, len(redrives))
        return len(redrives)

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(stop, self.poll_seconds, self.run_once, "DLQ worker cycle failed", log)
