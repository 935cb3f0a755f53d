"""Keeps PostgreSQL's planner statistics up with tables that grow faster than autovacuum
looks (``store.queries.table_statistics`` says why it matters).

Runs in every process with a role that reads the log or the queue heavily. Safe on every
node at once: one node analyses at a time (an advisory lock), and a table just analysed no
longer looks stale to the others.
"""

from __future__ import annotations

import asyncio
import logging

from junctionbox.engine.periodic import run_every
from junctionbox.store.database import Database
from junctionbox.store.queries import table_statistics as queries

log = logging.getLogger(__name__)


class TableStatistics:
    def __init__(self, db: Database, *, interval_seconds: float = 5.0) -> None:
        self.db = db
        self.interval_seconds = interval_seconds

    async def run_once(self) -> list[str]:
        """Analyse the tables whose statistics are stale; the tables analysed. (SQLite
        plans without statistics, none to keep.)"""
        if self.db.is_sqlite:
            return []
        async with self.db.read() as conn:
            stale = await queries.stale_tables(conn)
        if not stale:
            return []
        async with self.db.write() as conn:
            if not await queries.analyze(conn, stale):
                return []
        log.info("analysed %s", ", ".join(stale))
        return stale

    async def run(self, stop: asyncio.Event) -> None:
        failure = "refreshing planner statistics failed"
        await run_every(stop, self.interval_seconds, self.run_once, failure, log)
