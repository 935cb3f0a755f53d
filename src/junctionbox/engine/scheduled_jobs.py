"""The scheduled jobs' loops: the tick scheduler (``scheduler`` role) and the run worker
(``worker`` role). Both are safe on every node at once.

* :class:`JobTicker` every ``scheduled_jobs_poll_seconds`` claims the due ticks (a
  compare-and-set per job, see ``services.scheduled_jobs``) and queues one run per tick; it
  also fails runs whose queue job ended without them.
* :class:`ScheduledJobWorker` claims runs from the ``scheduled-jobs`` queue (up to
  ``scheduled_jobs_concurrency`` at once), keeps each lease alive with heartbeats while the
  run goes, and records the result and completes the queue job in one transaction.

A node that dies mid-run leaves its lease to expire; the run is then claimed again and
marked FAILED ("interrupted", naming the stage it was in) instead of run again, because it
may have delivered already: the next tick runs as scheduled, and execute-now re-runs it by
hand. A run claimed again before it started (the node died between claim and start) runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from junctionbox.engine.periodic import run_every
from junctionbox.queue.jobs import Job
from junctionbox.queue.store import JobQueue
from junctionbox.services.scheduled_job_runs import Stage
from junctionbox.services.scheduled_jobs import (
    JOB_KIND,
    JOB_QUEUE,
    LeaseLost,
    RunExecution,
    ScheduledJobService,
    StartedRun,
)

log = logging.getLogger(__name__)


class JobTicker:
    def __init__(self, jobs: ScheduledJobService, *, poll_seconds: float) -> None:
        self.jobs = jobs
        self.execution = RunExecution(jobs)
        self.poll_seconds = poll_seconds

    async def run_once(self) -> int:
        queued = await self.jobs.schedule_due()
        await self.execution.fail_orphans()
        return queued

    async def run(self, stop: asyncio.Event) -> None:
        failure = "scheduled job ticker pass failed"
        await run_every(stop, self.poll_seconds, self.run_once, failure, log)


class ScheduledJobWorker:
    def __init__(
        self,
        jobs: ScheduledJobService,
        queue: JobQueue,
        *,
        node_id: str,
        concurrency: int,
        lease_seconds: float,
        poll_seconds: float = 1.0,
    ) -> None:
        self.execution = RunExecution(jobs)
        self.runner = jobs.runner
        self.queue = queue
        self.node_id = node_id
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._tasks: set[asyncio.Task[None]] = set()

    async def run_once(self) -> list[asyncio.Task[None]]:
        """Claim what fits and start it; the started tasks."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return []
        claimed = await self.queue.claim(
            JOB_QUEUE, self.node_id, free, self.lease_seconds, kinds=[JOB_KIND]
        )
        started = []
        for job in claimed:
            task = asyncio.create_task(self.execute(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(task)
        return started

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started: list[asyncio.Task[None]] = []
            try:
                started = await self.run_once()
            except Exception:
                log.exception("scheduled job worker claim failed")
            if not started:
                with contextlib.suppress(Exception):
                    await self.queue.wait_for_work(self.poll_seconds, JOB_QUEUE)
        if self._tasks:
            try:
                await asyncio.wait(self._tasks)
            except asyncio.CancelledError:
                # Out of grace time: the runs stop here; their leases expire and another
                # worker marks them interrupted.
                for task in self._tasks:
                    task.cancel()
                raise

    async def execute(self, job: Job) -> None:
        """Run one claimed run, heartbeating its lease; never raises."""
        try:
            started = await self.execution.start(job)
            if started is None:
                return
            beat = asyncio.create_task(self._heartbeat(job))
            try:
                result = await self.runner.run(
                    started.stored.config,
                    self.execution.run_input(started),
                    on_stage=lambda stage: self._stage(started, stage),
                )
            finally:
                beat.cancel()
            await self.execution.finish(job, started, result)
        except LeaseLost as lost:
            log.warning("scheduled job run %s: lease lost, result not recorded", lost)
        except Exception:
            # The queue re-claims it after the lease expires and marks it interrupted.
            log.exception("scheduled job run of queue job %s failed", job.id)

    async def _stage(self, started: StartedRun, stage: Stage) -> None:
        await self.execution.mark_stage(started, str(stage))

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                if not await self.queue.heartbeat(job.id, job.lease.token, self.lease_seconds):
                    return
            except Exception:
                log.warning("scheduled job heartbeat failed", exc_info=True)
