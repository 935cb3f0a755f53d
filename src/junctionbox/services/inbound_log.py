"""Delivery-log rows of proxied calls, written in batches off the request path.

A proxied call must not wait for a database commit (one commit per call would cap the
proxy at the store's single-row insert rate). :meth:`InboundLogWriter.record` queues the
row; one task per process inserts what has queued in one transaction (up to ``batch``
rows, gathered for at most ``linger`` seconds), at the driver level
(``store.queries.log_batches``).
The queue is bounded: when the store falls behind, callers wait for room (back-pressure),
rows are never dropped. :meth:`flush` waits until everything queued so far is written;
:meth:`close` flushes and stops (a graceful shutdown loses nothing).

What a crash may lose: a process killed (or a transaction failing) loses the rows not yet
committed: at most ``queue_size + batch`` rows (10,000 + 500 by default), in steady state
about ``linger`` (50 ms) worth of calls; the calls themselves were answered. Failures
(502/504) are written synchronously with their DLQ entry instead, so they never depend on
this queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Generator
from typing import Final

from junctionbox.store.database import Database
from junctionbox.store.queries.delivery_attempts import AttemptRow
from junctionbox.store.queries.log_batches import insert_log_rows

log = logging.getLogger(__name__)

DEFAULT_QUEUE: Final = 10_000
DEFAULT_BATCH: Final = 500
DEFAULT_LINGER: Final = 0.05  # seconds a batch waits for company


class _Done:
    """An awaitable that is already done (``await`` returns None at once)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]  # no step: StopIteration at once


_QUEUED: Final = _Done()


class InboundLogWriter:
    def __init__(
        self,
        db: Database,
        *,
        queue_size: int = DEFAULT_QUEUE,
        batch: int = DEFAULT_BATCH,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        self.db = db
        self.batch = batch
        self.linger = linger
        self._queue_size = queue_size
        self._queue: asyncio.Queue[AttemptRow] | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def _ensure(self) -> asyncio.Queue[AttemptRow]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue(self._queue_size)
            self._task = loop.create_task(self._run(self._queue), name="inbound-log-writer")
        return self._queue

    def record(self, row: AttemptRow) -> Awaitable[None]:
        """Queue ``row``; the awaitable waits for room only when the queue is full (a
        plain call otherwise: no coroutine per row)."""
        queue = self._ensure()
        if queue.full():
            return queue.put(row)
        queue.put_nowait(row)
        return _QUEUED

    async def flush(self) -> None:
        """Wait until every row queued so far is written (or failed and logged)."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with_loop = task.get_loop() is asyncio.get_running_loop()
            if with_loop:
                await asyncio.gather(task, return_exceptions=True)

    async def _run(self, queue: asyncio.Queue[AttemptRow]) -> None:
        while True:
            rows = [await queue.get()]
            if queue.qsize() < self.batch and self.linger > 0:
                # A moment for more rows: one insert of many costs about what one of one does.
                await asyncio.sleep(self.linger)
            while len(rows) < self.batch and not queue.empty():
                rows.append(queue.get_nowait())
            try:
                async with self.db.write() as conn:
                    await insert_log_rows(conn, rows)
                self.written += len(rows)
            except Exception:
                log.exception("could not write %d inbound delivery-log rows", len(rows))
            finally:
                for _ in rows:
                    queue.task_done()
