"""The delivery worker: claims delivery jobs and runs them, many at once, fairly.

    wait_for_work ─► claim (alone, or in the commit) ─► prepare (one read) ─► the job's lane:
        queued (within the lane's limit) | deferred (the lane is saturated)
    lanes, round robin ─► attempt (rate limit ─► breaker ─► build ─► send ─► classify ─► plan)
        ─► outbox ─► committer: log rows + job transitions + listeners, batched per commit

* **Slots and lanes.** At most ``concurrency`` attempts run at once, and at most
  ``destination_concurrency`` of them to one destination origin (a lane), so a slow or
  failing endpoint occupies only its own slots. Claimed jobs wait in their lane's queue,
  served round robin as slots free. A lane may hold what it drains in ``HOLD_SECONDS``
  (never less than its cap): a fast endpoint keeps its pipeline full, while a lane found
  stuck keeps only a few claims and turns the rest back to the queue without spending an
  attempt, each with a turn at the lane's pace (so a backlog for a stuck endpoint is passed
  over about once, and cannot keep the claims from other endpoints' jobs).
* **Batches.** Up to ``TRACKED_PER_SLOT * concurrency`` claims are held (running, queued, or
  awaiting their commit): claims and commits take turns on the store, so the deeper this
  pipeline, the larger (and cheaper per job) each claim and commit. With every slot busy,
  claims wait until a quarter of the slots can be claimed at once. Finished attempts are
  gathered (up to ``commit_window``, or half ``concurrency`` of them) and written in one
  transaction; a job is acknowledged only in the transaction that inserts its log row.
* **Claiming in the commit.** While a backlog lasts (the last claim was full), the commit
  claims the next jobs in its own transaction, after writing the outcomes: one write
  transaction per cycle, where a separate claim would take turns with the commit on the
  store's write lock. The jobs are taken on only once that transaction has committed (on
  a rollback their leases never existed). When the queue runs dry, or a slot idles with
  nothing queued, the claim loop claims on its own as soon as it is woken (latency).
* **Leases.** One heartbeat task extends every lease this worker holds, each third of the
  lease. A lease found lost stops its attempt (nothing is recorded for it); the commit is
  fenced by the lease token too.
* **Stopping.** Claiming stops; jobs not started are given back at once (their attempt is
  not counted); attempts in flight get ``grace_seconds`` to finish and are cancelled and
  given back after that; recorded outcomes are flushed.

Duplicates (at-least-once): a destination may see the same ``webhook-id`` twice when this
process dies (or stalls past its lease) after sending but before the commit, or when the
commit fails after the send. Nothing is ever lost: an unrecorded job's lease expires and the
job runs again.

Cluster mode: any number of worker processes share the queue. Circuit breakers are shared
through the database (see :mod:`junctionbox.services.breakers`); rate limits and lanes are
per process (see :mod:`junctionbox.services.rate_limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from junctionbox.connectors.destinations.base import Destination
from junctionbox.connectors.destinations.http import HttpDestination
from junctionbox.domain.circuit_breaker import BreakerConfig
from junctionbox.domain.delivery import DELIVERY_JOB_KIND, DELIVERY_QUEUE
from junctionbox.engine.delivery_attempt import (
    BUSY_NOTE,
    AttemptOutcome,
    AttemptRunner,
    Disposition,
    crashed,
    defer,
    release,
)
from junctionbox.engine.delivery_commit import AttemptCommitter, Committed
from junctionbox.engine.delivery_prefetch import DeliveryLoader, Prepared
from junctionbox.engine.handoff import NOTHING_KNOWN, Known, merged
from junctionbox.queue.jobs import MAX_CLAIM, ClaimRequest, Job, Lease
from junctionbox.services.breakers import Breakers
from junctionbox.services.container import Services
from junctionbox.services.delivery_hooks import DeliveryListener
from junctionbox.services.rate_limits import RateLimiter
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

TRACKED_PER_SLOT: Final = 6  # claims held per concurrency slot (see Batches above)
HOLD_SECONDS: Final = 2.0  # a lane may hold claimed what it drains in this long
TRIM_SECONDS: Final = 0.25  # how often lanes' queues are re-checked against their limits
# A job turned away by a saturated lane is given a turn at the lane's pace, at most this far
# ahead: a backlog for one destination is then passed over about once, not at every claim.
MAX_BUSY_DELAY: Final = 300.0
_MIN_RATE: Final = 0.2  # completions/s assumed of a lane that finishes nothing
# A lane idle this long is forgotten: a worker serves many destinations over its life, and
# must not keep one lane for each (a new lane starts rated high, as an idle one would be).
LANE_IDLE_SECONDS: Final = 600.0
_LANE_SWEEP_SECONDS: Final = 60.0
_COMMIT_TRIES: Final = 5
_COMMIT_BACKOFF: Final = 0.5


@dataclass
class _Lane:
    """One destination origin: attempts running, jobs queued for it, recent completions."""

    name: str
    running: int = 0
    queue: deque[Prepared] = field(default_factory=deque)
    finished: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    busy_since: float = field(default_factory=time.monotonic)
    next_turn: float = 0.0  # when the last job turned away from this lane is due back

    def idle_since(self) -> float:
        """When it last started or finished an attempt (monotonic)."""
        return max(self.finished[-1], self.busy_since) if self.finished else self.busy_since

    def drain_rate(self, now: float) -> float:
        """Completions per second lately. A lane that has finished nothing for a while is
        rated by that wait, so a stuck lane rates low within moments and a new one high."""
        last = self.idle_since()
        stalled = max(self.running, 1) / max(now - last, 1e-3)
        recent = [t for t in self.finished if t >= self.busy_since]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            return min((len(recent) - 1) / (recent[-1] - recent[0]), stalled)
        return stalled


@dataclass
class _Claim:
    """A job this worker holds a lease on, until its outcome is committed."""

    job: Job
    lane: _Lane | None = None
    task: asyncio.Task[None] | None = None
    lost: bool = False
    commit_tries: int = 0


class DeliveryWorker:
    """Runs ``delivery`` jobs of the ``deliveries`` queue; see the module docstring."""

    def __init__(
        self,
        services: Services,
        *,
        node_id: str,
        listeners: Sequence[DeliveryListener] = (),
        concurrency: int | None = None,
        destination_concurrency: int | None = None,
        lease_seconds: float | None = None,
        grace_seconds: float | None = None,
        breaker_config: BreakerConfig | None = None,
        destination: Destination | None = None,
        poll_seconds: float = 1.0,
        commit_window: float = 0.01,
        commit_batch: int = 500,
        random: Callable[[], float] = _random.random,
    ) -> None:
        settings = services.settings
        self.services = services
        self.queue = services.queue
        self.node_id = node_id
        self.concurrency = concurrency or settings.worker_concurrency
        self.destination_concurrency = min(
            destination_concurrency or settings.worker_destination_concurrency, self.concurrency
        )
        self.lease_seconds = lease_seconds or settings.worker_lease_seconds
        # The runtime cancels role loops after shutdown_grace_seconds: finish before that.
        self.grace_seconds = (
            grace_seconds if grace_seconds is not None else settings.shutdown_grace_seconds * 0.75
        )
        self.poll_seconds = poll_seconds
        self.commit_window = commit_window
        self.commit_batch = commit_batch
        self.random = random
        self.breakers = Breakers(breaker_config)
        self.limiter = RateLimiter()
        self.loader = DeliveryLoader(services.db, services.secretbox, self.breakers)
        self.runner = AttemptRunner(
            services.requests,
            destination or HttpDestination(services.http),
            self.limiter,
            self.breakers,
            random=random,
            telemetry=services.telemetry,
        )
        self.committer = AttemptCommitter(
            services.db,
            self.queue,
            self.breakers,
            listeners,
            metrics=services.telemetry.metrics,
        )
        self._max_tracked = TRACKED_PER_SLOT * self.concurrency
        services.telemetry.metrics.watch_slots(self.concurrency, lambda: self._running)
        self._min_claim = max(1, self.concurrency // 4)
        self._commit_min = max(1, min(commit_batch, self.concurrency // 2))
        self._reset()

    def _reset(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._lanes_swept = time.monotonic()
        self._queued: dict[str, _Lane] = {}  # lanes with jobs waiting, in round-robin order
        self._claims: dict[str, _Claim] = {}
        self._running = 0
        self._outbox: asyncio.Queue[AttemptOutcome | None] = asyncio.Queue()
        self._capacity = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._next_due = float("inf")
        self._reserved = 0  # jobs being claimed right now (not yet in ``_claims``)
        self._handed: list[Job] = []  # claimed by a commit, to admit
        self._handed_over: list[Job] = []  # leased by this process's dispatcher, to admit
        self._handed_known: list[Known] = []  # what the dispatcher read for them
        self._placed = False  # handed over and started at once, since the claim loop woke
        self._handoff_arrived = asyncio.Event()
        self._work_signalled = False  # the queue's wake-up was taken, no claim since
        self._accepting = False  # the role loop runs: jobs may be handed over
        self._more_due = False  # the last claim was full: a backlog is likely waiting
        self._committing = False
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Claims held: jobs running, waiting for their lane, or not yet committed."""
        return len(self._claims)

    # ------------------------------------------------------------------ the role loop

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and deliver until ``stop`` is set, then stop gracefully."""
        self._reset()
        self._accepting = True
        committer = asyncio.create_task(self._commit_loop(), name="delivery-commits")
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="delivery-heartbeats")
        try:
            await self._claim_loop(stop)
        finally:
            await self._shutdown(committer, heartbeat)

    async def run_until_idle(self, timeout: float = 10.0, *, horizon: float | None = None) -> None:  # noqa: ASYNC109
        """Run until no delivery job is running or ready (due within ``horizon`` seconds,
        if given), then stop; ``TimeoutError`` after ``timeout`` seconds (tests, one-shot
        runs)."""
        stop = asyncio.Event()
        loop = asyncio.create_task(self.run(stop), name="delivery-worker")
        try:
            async with asyncio.timeout(timeout):
                while not loop.done():
                    await asyncio.sleep(0.02)
                    if not self._claims and await self._queue_idle(horizon):
                        break
        finally:
            stop.set()
            await loop

    async def _queue_idle(self, horizon: float | None) -> bool:
        due = None if horizon is None else utcnow() + timedelta(seconds=horizon)
        return await self.queue.unfinished(DELIVERY_QUEUE, due_before=due) == 0

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._forget_idle_lanes(time.monotonic())
            if self._handed:  # claimed by a commit
                handed, self._handed = self._handed, []
                await self._admit(handed)
                continue
            if self._handed_over or self._placed:  # by the dispatcher: no claim for them
                handed, self._handed_over = self._handed_over, []
                known, self._handed_known = self._handed_known, []
                self._placed = False
                if handed:
                    await self._admit(handed, merged(known))
                await self._sleep_until_work(stop)
                continue
            self._trim_lanes(time.monotonic())
            budget = self._budget()
            if budget <= 0 or self._commit_will_claim():
                wait = TRIM_SECONDS if self._queued else self.poll_seconds
                await self._wait_for(stop, wait, self._capacity.wait())
                self._capacity.clear()
                continue
            if self._next_due <= time.time():
                self._next_due = float("inf")
            self._work_signalled = False  # this claim acts on it
            request = self._claim_request(budget)
            self._reserved += request.limit
            try:
                jobs = await self.queue.claim(
                    request.queue,
                    request.owner,
                    request.limit,
                    request.lease_seconds,
                    kinds=request.kinds,
                )
            except Exception:  # the store may be away: try again after a pause
                log.exception("claiming delivery jobs failed")
                await self._wait_for(stop, self.poll_seconds, stop.wait())
                continue
            finally:
                self._reserved -= request.limit
            self._more_due = len(jobs) >= request.limit
            if jobs:
                self._register(jobs)
                await self._admit(jobs)
            if len(jobs) < budget:  # drained what is due
                await self._sleep_until_work(stop)

    async def _sleep_until_work(self, stop: asyncio.Event) -> None:
        """Until jobs may be due: the queue's wake-up (level-triggered: one that came
        meanwhile returns at once), jobs handed over or claimed by a commit, the next retry
        due, or the poll. A wake-up of the queue taken here is kept (``_work_signalled``)
        until a claim acts on it: handed-over jobs arriving with it must not swallow it."""
        if self._handed or self._handed_over or self._placed or self._work_signalled:
            return
        wait = min(self.poll_seconds, max(0.0, self._next_due - time.time()))
        self._handoff_arrived.clear()
        woken = asyncio.ensure_future(self.queue.wait_for_work(wait, queue=DELIVERY_QUEUE))
        await self._wait_for(stop, wait, woken, self._handoff_arrived.wait())
        if woken.done() and not woken.cancelled() and woken.result():
            self._work_signalled = True

    def _budget(self, freed: int = 0) -> int:
        """How many jobs to claim now (``freed`` claims are about to be committed). Claims
        are held up to ``TRACKED_PER_SLOT * concurrency`` (running, queued in lanes, or
        waiting to be committed). With a slot idle, claim at once (low latency); with every
        slot busy, only once a good batch can be claimed."""
        room = self._max_tracked - len(self._claims) + freed - self._reserved
        if room <= 0:
            return 0
        if self._running < self.concurrency or room >= self._min_claim:
            return min(room, MAX_CLAIM)
        return 0

    def _commit_will_claim(self) -> bool:
        """Whether to leave the next claim to the commit coming up: a backlog is being
        worked through (jobs wait in lanes, and more are due), so nothing is urgent and one
        transaction can do both."""
        if not (self._more_due and (self._committing or not self._outbox.empty())):
            return False
        # Only with a round of work queued for the slots: they must not idle meanwhile.
        waiting = sum(len(lane.queue) for lane in self._queued.values())
        return waiting >= self.concurrency - self._running

    def _claim_request(self, limit: int) -> ClaimRequest:
        return ClaimRequest(
            DELIVERY_QUEUE, self.node_id, limit, self.lease_seconds, (DELIVERY_JOB_KIND,)
        )

    @staticmethod
    async def _wait_for(stop: asyncio.Event, timeout: float, *waiting: object) -> None:  # noqa: ASYNC109
        """Wait for one of ``waiting`` (coroutines), ``stop`` or ``timeout``, whichever
        first."""
        tasks = {asyncio.ensure_future(w) for w in (*waiting, stop.wait())}  # type: ignore[call-overload]
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ lanes

    def _register(self, jobs: Sequence[Job]) -> None:
        """Hold the claims from now on (heartbeats, budget), before they are prepared."""
        for job in jobs:
            self._claims[job.id] = _Claim(job)

    async def _admit(self, jobs: Sequence[Job], known: Known = NOTHING_KNOWN) -> None:
        try:
            prepared = await self.loader.prepare(jobs, known)
        except Exception:
            log.exception("could not load %d delivery jobs; giving them back", len(jobs))
            for job in jobs:
                self._finish(release(Prepared(job, None)))
            return
        self._place(prepared)

    def _place(self, prepared: Sequence[Prepared]) -> None:
        """Prepared jobs into their lanes' queues (or turned away by a saturated lane), and
        started while slots are free."""
        now = time.monotonic()
        limits: dict[str, int] = {}  # per lane: its rate is the same for the whole batch
        for item in prepared:
            claim = self._claims.get(item.job.id)
            if claim is None or claim.lost:
                continue
            if item.ready is None:  # nothing to send: decided without a slot
                self._finish(self.runner.unrunnable(item))
                continue
            lane = self._lane(item.ready.destination, now)
            claim.lane = lane
            limit = limits.get(lane.name)
            if limit is None:
                limit = limits[lane.name] = self._queue_limit(lane, now)
            if len(lane.queue) < limit:
                lane.queue.append(item)
                self._queued[lane.name] = lane
            else:
                self._finish(defer(item, self._busy_turn(lane, now), BUSY_NOTE))
        self._pump()

    def _lane(self, destination: str, now: float) -> _Lane:
        lane = self._lanes.get(destination)
        if lane is None:
            lane = self._lanes[destination] = _Lane(destination, busy_since=now)
        elif lane.running == 0 and not lane.queue:
            lane.busy_since = now  # idle until now: its wait starts afresh
        return lane

    def _queue_limit(self, lane: _Lane, now: float) -> int:
        """Jobs a lane may hold claimed while they wait for its slots: what it drains in
        ``HOLD_SECONDS``, at least its cap, at most every claim."""
        drains = int(lane.drain_rate(now) * HOLD_SECONDS)
        return max(self.destination_concurrency, min(self._max_tracked, drains))

    def _pump(self) -> None:
        """Start queued jobs while slots are free: one per lane in turn (round robin), each
        lane within its cap."""
        progress = True
        while progress and self._running < self.concurrency and self._queued:
            progress = False
            for name, lane in list(self._queued.items()):
                if self._running >= self.concurrency:
                    break
                if lane.running >= self.destination_concurrency:
                    continue
                item = lane.queue.popleft()
                del self._queued[name]
                if lane.queue:
                    self._queued[name] = lane  # to the back of the round
                claim = self._claims.get(item.job.id)
                if claim is not None and not claim.lost:
                    self._start(item, claim, lane)
                progress = True

    def _trim_lanes(self, now: float) -> None:
        """A lane found stuck holds fewer claims: the excess goes back to the queue (no
        attempt spent) so that claims serve the other lanes."""
        for name, lane in list(self._queued.items()):
            excess = len(lane.queue) - self._queue_limit(lane, now)
            for _ in range(max(0, excess)):
                item = lane.queue.pop()
                self._finish(defer(item, self._busy_turn(lane, now), BUSY_NOTE))
            if not lane.queue:
                del self._queued[name]

    def _forget_idle_lanes(self, now: float) -> None:
        """Once a minute, drop the lanes idle for ``LANE_IDLE_SECONDS``."""
        if now - self._lanes_swept < _LANE_SWEEP_SECONDS:
            return
        self._lanes_swept = now
        wall = time.time()
        for name, lane in list(self._lanes.items()):
            idle = lane.running == 0 and not lane.queue and lane.next_turn < wall
            if idle and lane.idle_since() < now - LANE_IDLE_SECONDS:
                del self._lanes[name]

    def _busy_turn(self, lane: _Lane, now: float) -> float:
        """When a job turned away by a saturated lane should come back (epoch seconds):
        one turn after the previous such job, at the pace the lane has been draining."""
        rate = max(lane.drain_rate(now), _MIN_RATE)
        wall = time.time()
        backlog = (lane.running + len(lane.queue)) / rate
        earliest = wall + min(max(backlog, 0.05), MAX_BUSY_DELAY)
        turn = max(earliest, min(lane.next_turn + 1 / rate, wall + MAX_BUSY_DELAY))
        lane.next_turn = turn
        return turn + min(1.0, 0.1 * (turn - wall)) * self.random()

    def _start(self, prepared: Prepared, claim: _Claim, lane: _Lane) -> None:
        lane.running += 1
        self._running += 1
        claim.task = asyncio.create_task(self._run_one(prepared, claim, lane))

    async def _run_one(self, prepared: Prepared, claim: _Claim, lane: _Lane) -> None:
        outcome: AttemptOutcome | None = None
        try:
            outcome = await self.runner.run(prepared)
        except asyncio.CancelledError:
            # Stopping (give the job back) or the lease was lost (it is not ours to touch).
            outcome = None if claim.lost else release(prepared)
        except Exception as exc:
            log.exception("delivery job %s failed unexpectedly", prepared.job.id)
            outcome = crashed(prepared, exc)
        finally:
            lane.running -= 1
            self._running -= 1
            lane.finished.append(time.monotonic())
            if outcome is not None:
                self._finish(outcome)
            elif claim.lost:
                self._claims.pop(prepared.job.id, None)
            self._pump()
            self._capacity.set()

    def _finish(self, outcome: AttemptOutcome) -> None:
        """Hand an outcome to the committer."""
        if outcome.disposition in (Disposition.RETRY, Disposition.DEFER) and outcome.run_at:
            self._next_due = min(self._next_due, outcome.run_at.timestamp())
        self._outbox.put_nowait(outcome)
        if self._outbox.qsize() >= self._commit_min:
            self._batch_ready.set()

    # ------------------------------------------------------------------ committing

    async def _commit_loop(self) -> None:
        ending = False
        while not ending:
            first = await self._outbox.get()
            if first is None:
                break
            if self._outbox.qsize() + 1 < self._commit_min:
                # Gather a batch: a commit per attempt would cost more than the attempts.
                self._batch_ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.commit_window):
                        await self._batch_ready.wait()
            batch = [first]
            while len(batch) < self.commit_batch and not self._outbox.empty():
                item = self._outbox.get_nowait()
                if item is None:
                    ending = True
                    break
                batch.append(item)
            await self._commit(batch, final=ending)

    async def _commit(self, batch: list[AttemptOutcome], *, final: bool = False) -> None:
        wanted = None
        if not (final or self._stopping) and self._more_due:
            budget = self._budget(freed=len(batch))
            wanted = self._claim_request(budget) if budget > 0 else None
        reserved = wanted.limit if wanted is not None else 0
        self._reserved += reserved
        self._committing = True
        try:
            committed = await self.committer.commit(batch, wanted)
        except Exception:  # commit() logs and survives its own failures; belt and braces
            log.exception("committing %d delivery outcomes failed", len(batch))
            committed = Committed()
        finally:
            self._reserved -= reserved
            self._committing = False
        if wanted is not None:
            self._take_handed(committed.claimed, wanted.limit)
        kept, lost = committed.kept, committed.lost
        retry: list[AttemptOutcome] = []
        for outcome in batch:
            claim = self._claims.get(outcome.job_id)
            if outcome.job_id in kept or outcome.job_id in lost or claim is None:
                self._claims.pop(outcome.job_id, None)
                continue
            claim.commit_tries += 1
            if claim.commit_tries >= _COMMIT_TRIES or final:
                # Left to its lease: it expires and the job runs again.
                log.error("giving up recording job %s; it will run again", outcome.job_id)
                self._claims.pop(outcome.job_id, None)
            else:
                retry.append(outcome)
        if retry:
            asyncio.get_running_loop().call_later(_COMMIT_BACKOFF, self._requeue, retry)
        self._capacity.set()

    def _take_handed(self, jobs: list[Job], limit: int) -> None:
        """Jobs claimed by a commit: held now, admitted by the claim loop (or given back
        if the worker is stopping)."""
        self._more_due = len(jobs) >= limit
        if self._hold(jobs):
            self._handed.extend(jobs)

    def _hold(self, jobs: Sequence[Job]) -> bool:
        """Hold the claims of ``jobs``; False when there are none, or they were given back
        at once (the worker is stopping)."""
        if not jobs:
            return False
        self._register(jobs)
        if self._stopping:
            for job in jobs:
                self._finish(release(Prepared(job, None)))
            return False
        return True

    # ------------------------------------------------------------------ handed over
    # (engine.handoff: jobs the dispatcher of this process leased to this worker)

    @property
    def owner(self) -> str:
        return self.node_id

    def reserve(self, wanted: int) -> int:
        """Room for new jobs straight from the dispatcher: only while the role loop runs
        and the last claim came back short (no backlog for them to overtake), and only as
        many as can start at once (idle slots): a burst is better served by claims, which
        the commits then take over (one transaction per cycle)."""
        if not self._accepting or self._stopping or self._more_due:
            return 0
        waiting = sum(len(lane.queue) for lane in self._queued.values())
        idle = self.concurrency - self._running - waiting - self._reserved
        granted = max(0, min(wanted, self._budget(), idle))
        self._reserved += granted
        return granted

    def take(self, jobs: Sequence[Job], known: Known, reserved: int) -> None:
        """Jobs leased by the dispatcher's committed transaction. When nothing needs reading
        for them (the usual case) they go to their lanes and start now, in the dispatcher's
        call: waking the claim loop to do the same cost a few turns of a busy event loop
        (dispatched -> attempt started, p99 at 800 publishes/s: 6.9-10.1 -> 3.3-5.8 ms).
        Else, or behind jobs of an earlier hand-over still waiting, the claim loop admits
        them. Either way the claim loop is woken to go back to sleep without claiming, as
        after admitting: a claim in flight holds its whole budget reserved, and claiming at
        every wake-up left the dispatcher no room to hand jobs over (a sixth of them went
        through the queue and a claim instead)."""
        self._reserved -= reserved
        if not self._hold(jobs):
            return
        if not self._handed_over and self._placed_at_once(jobs, known):
            self._placed = True  # the claim loop goes back to sleep, as after admitting
        else:
            self._handed_over.extend(jobs)
            self._handed_known.append(known)
        self._handoff_arrived.set()

    def _placed_at_once(self, jobs: Sequence[Job], known: Known) -> bool:
        """Place handed-over jobs now when nothing needs reading for them; False if not
        (the claim loop's admission takes them, and retries a preparation that failed)."""
        try:
            prepared = self.loader.prepared_in_memory(jobs, known)
        except Exception:  # in the dispatcher's call: never let it fail the dispatcher
            log.exception("could not prepare %d handed-over jobs at once", len(jobs))
            return False
        if prepared is None:
            return False
        self._place(prepared)
        return True

    def _requeue(self, outcomes: list[AttemptOutcome]) -> None:
        for outcome in outcomes:
            self._outbox.put_nowait(outcome)

    # ------------------------------------------------------------------ leases

    async def _heartbeat_loop(self) -> None:
        interval = self.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Extend every lease held; stop the attempts whose lease was lost."""
        leases = [
            Lease(job_id, claim.job.lease_token)
            for job_id, claim in self._claims.items()
            if not claim.lost and claim.job.lease_token is not None
        ]
        if not leases:
            return
        try:
            ours = await self.queue.heartbeat_many(leases, self.lease_seconds)
        except Exception:  # the store may be away; the next beat tries again
            log.warning("heartbeat of %d delivery leases failed", len(leases), exc_info=True)
            return
        for lease in leases:
            if lease.job_id not in ours:
                self._lose(lease.job_id)

    def _lose(self, job_id: str) -> None:
        claim = self._claims.get(job_id)
        if claim is None or claim.lost:
            return
        log.warning("lease of delivery job %s was lost; stopping its attempt", job_id)
        claim.lost = True
        if claim.task is not None:
            if not claim.task.done():
                claim.task.cancel()  # its outcome is dropped, and the claim with it
            return
        if claim.lane is not None:  # queued in its lane, not started
            lane = claim.lane
            lane.queue = deque(p for p in lane.queue if p.job.id != job_id)
            if not lane.queue:
                self._queued.pop(lane.name, None)
        self._claims.pop(job_id, None)

    # ------------------------------------------------------------------ stopping

    async def _shutdown(self, committer: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> None:
        self._stopping = True
        self._accepting = False
        try:
            handed = [*self._handed, *self._handed_over]
            self._handed, self._handed_over, self._handed_known = [], [], []
            for job in handed:  # claimed by a commit or handed over, not admitted yet
                if job.id in self._claims:
                    self._finish(release(Prepared(job, None)))
            for lane in self._lanes.values():  # not started: give them back now
                while lane.queue:
                    self._finish(release(lane.queue.popleft()))
            self._queued.clear()
            running = [c.task for c in self._claims.values() if c.task and not c.task.done()]
            if running:
                _, pending = await asyncio.wait(running, timeout=self.grace_seconds)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            self._outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(committer), timeout=self.grace_seconds)
        finally:
            for task in (committer, heartbeat):
                task.cancel()
            await asyncio.gather(committer, heartbeat, return_exceptions=True)
            for claim in self._claims.values():
                if claim.task is not None:
                    claim.task.cancel()
