"""The loop that polls SQL table sources (seed 003's delivery worker, first half).

Every tick (one second) it asks which active sources this node may poll (lease free, expired
or its own) and are due (their interval passed since the last poll), and polls each in a task
of its own, at most ``concurrency`` at a time, so one slow database never holds the others
up. A poll that read a full batch is followed at once by the next one (a backlog drains at
database speed, not one batch per interval), up to ``max_batches_per_turn``.

Safe on every node at once: ``poll_once`` claims the source's lease first, so one node polls
a source at a time; the lease is renewed by each poll and released when the loop stops.
Stopping waits up to ``grace_seconds`` for polls in flight (a cancelled poll rolls back and
loses nothing), then returns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime

from junctionbox.engine.periodic import run_every
from junctionbox.services.event_sources import EventSourceService, PollReport
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)


class SqlSourcePoller:
    def __init__(
        self,
        service: EventSourceService,
        *,
        node_id: str,
        clock: Callable[[], datetime] = utcnow,
        tick_seconds: float = 1.0,
        concurrency: int = 4,
        max_batches_per_turn: int = 20,
        grace_seconds: float = 5.0,
    ) -> None:
        self.service = service
        self.node_id = node_id
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.max_batches_per_turn = max_batches_per_turn
        self.grace_seconds = grace_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[list[PollReport]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            tick = functools.partial(self.start_due, stop)
            await run_every(stop, self.tick_seconds, tick, "SQL source poller tick failed", log)
        finally:
            await self._shutdown()

    async def start_due(
        self, stop: asyncio.Event | None = None
    ) -> list[asyncio.Task[list[PollReport]]]:
        """Start a poll task for every due source not already being polled here."""
        started = []
        for source_id in await self.service.due_sources(self.node_id, self.clock()):
            if source_id in self._running:
                continue
            task = asyncio.create_task(self._turn(source_id, stop), name=f"sql-source-{source_id}")
            self._running[source_id] = task
            task.add_done_callback(self._forget)
            started.append(task)
        return started

    async def run_once(self) -> list[PollReport]:
        """One tick, waiting for the polls it started (for tests and one-shot runs)."""
        reports: list[PollReport] = []
        for task in await self.start_due():
            reports += await task
        return reports

    def _forget(self, task: asyncio.Task[list[PollReport]]) -> None:
        for source_id, running in list(self._running.items()):
            if running is task:
                del self._running[source_id]

    async def _turn(self, source_id: str, stop: asyncio.Event | None) -> list[PollReport]:
        """Poll one source, then again while batches come back full."""
        reports: list[PollReport] = []
        async with self._slots:
            for _ in range(self.max_batches_per_turn):
                try:
                    report = await self.service.poll_once(source_id, self.node_id, now=self.clock())
                except Exception:  # poll_once records its failures; this is a store outage
                    log.exception("SQL source %s could not be polled", source_id)
                    break
                reports.append(report)
                if not report.more or (stop is not None and stop.is_set()):
                    break
        return reports

    async def _shutdown(self) -> None:
        tasks = list(self._running.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self.service.release_leases(self.node_id)
        except Exception:  # the leases expire on their own
            log.warning("could not release SQL source leases of %s", self.node_id, exc_info=True)
