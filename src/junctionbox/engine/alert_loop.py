"""The scheduler role's alert loop: evaluate the rules and route new alerts every
``JB_ALERTS_INTERVAL_SECONDS``; once an hour, drop rollups past their retention."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from junctionbox.engine.periodic import run_every
from junctionbox.services.alerting import AlertEvaluator
from junctionbox.store.database import Database
from junctionbox.store.queries.rollups import purge_rollups
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
PURGE_EVERY = 3600.0


class AlertLoop:
    def __init__(
        self, evaluator: AlertEvaluator, db: Database, *, interval: float, retention_days: int
    ) -> None:
        self.evaluator = evaluator
        self.db = db
        self.interval = interval
        self.retention = timedelta(days=retention_days)
        self._purged = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(stop, self.interval, self._round, "alert evaluation failed", log)

    async def _round(self) -> None:
        await self.evaluator.tick()
        await self._purge()

    async def _purge(self) -> None:
        if time.monotonic() - self._purged < PURGE_EVERY:
            return
        async with self.db.write() as conn:
            gone = await purge_rollups(conn, utcnow() - self.retention)
        self._purged = time.monotonic()
        if gone:
            log.info("dropped %d rollup rows older than %s", gone, self.retention)
