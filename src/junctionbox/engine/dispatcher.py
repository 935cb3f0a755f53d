"""The outbound dispatcher: reads every tenant's event log and enqueues delivery jobs.

It is the consumer group ``$dispatcher`` (a system group: retention never removes an event
it has not committed). Per partition it reads from the committed offset (a partition it
never committed starts at its first retained offset, so every acknowledged event is
dispatched), up to ``dispatcher_batch`` events at a time, matches them
(:mod:`junctionbox.services.fanout`), and in ONE transaction enqueues every job of the batch
and moves the committed offset past it. A crash before that commit leaves nothing behind and
the batch is dispatched again; jobs' dedupe keys (``dlv:{message_id}``) would absorb a
repeat in any case.

One dispatcher per partition at a time: on PostgreSQL each batch's transaction first takes
a transaction-scoped advisory lock on its partition (``pg_try_advisory_xact_lock``); a node
that finds it taken leaves the partition to the holder. Nothing to expire or renew: the
lock ends with the transaction, even if its node dies. Any number of nodes may run the
dispatcher role and they share the partitions. On SQLite a write transaction is already
exclusive. Independently of the lock, the offset moves by compare-and-set, so a batch whose
starting offset was moved by someone else rolls back instead of committing twice.

Cost: a batch is a handful of statements, each run straight on the driver (compiled once,
converted as SQLAlchemy would: ``store.queries.driver_calls``), since under load every
statement, and every wait for the event loop between two, lengthens the transaction and
so, on SQLite, everyone's wait for the write lock. On SQLite a batch makes five calls to
aiosqlite's thread: BEGIN, the read (with the integrations' freshness check), the jobs
(with their dedupe look-up when needed), the offset, COMMIT. On PostgreSQL, from its cursor,
four round trips: BEGIN, one statement for the lock, the setting that makes the commit not
wait for the WAL flush, the freshness check, the read and the offset's move, then the jobs,
COMMIT; and when this process appended every event of the batch itself (the usual case of
a node that takes the publishes it dispatches) and the integrations they match are cached,
ONE statement outside any transaction, since nothing needs reading first
(``store.queries.dispatch_known``: the lock, the check that the cached integrations are
still current, the offset's compare-and-set and the jobs, all or nothing).

Wake-ups: the dispatcher hears this process's appends at once (an ``EventLog`` listener,
called after their commit) and, on PostgreSQL, every node's (``NOTIFY jb_events``, carrying
the partition and offsets). Both only say which partitions to look at; the log itself is
always what is read. Without a wake-up it rescans every partition for lag each
``poll_seconds`` (and after a lost LISTEN connection), so a missed notification costs at
most that much latency, never an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import StoredEvent
from junctionbox.engine.announced_events import AnnouncedEvents
from junctionbox.engine.handoff import NOTHING_KNOWN, JobHandoff, Known, can_hand_over
from junctionbox.observability.tracing import Tracing
from junctionbox.queue.jobs import Job, NewJob
from junctionbox.queue.notify import CHANNEL as JOBS_CHANNEL
from junctionbox.services.container import Services
from junctionbox.services.event_log import EVENTS_CHANNEL
from junctionbox.services.fanout import Fanout, FanoutPlan, IntegrationCatalog
from junctionbox.services.streams import DISPATCHER_GROUP
from junctionbox.store.pg_listener import PgListener, asyncpg_dsn
from junctionbox.store.queries import dispatch as queries
from junctionbox.store.queries import dispatch_known as known_batches
from junctionbox.store.queries.dispatch import PartitionPosition, Stamp
from junctionbox.store.sqlite_inline import SMALL_BATCH
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
GROUP: Final = DISPATCHER_GROUP
MAX_BACKOFF_SECONDS: Final = 30.0
PartitionKey = tuple[int, str, int]  # (org id, stream, partition)


@dataclass(frozen=True)
class BatchResult:
    events: int
    more: bool  # the batch was full or lost a race: look again at once


class Dispatcher:
    def __init__(
        self,
        services: Services,
        *,
        node_id: str,
        poll_seconds: float = 1.0,
        batch_size: int | None = None,
        parallel: int | None = None,
        integration_refresh_seconds: float = 0.0,
        clock: Callable[[], datetime] = utcnow,
        handoff: JobHandoff | None = None,
    ) -> None:
        self.services = services
        self.db = services.db
        self.node_id = node_id
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size or services.settings.dispatcher_batch
        # SQLite has one writer: partitions take turns. PostgreSQL: a few at once.
        self.parallel = parallel or (1 if self.db.is_sqlite else 4)
        self.clock = clock
        self.handoff = handoff  # this process's delivery worker, if it runs one
        self.fanout = Fanout(
            services.queue,
            catalog=IntegrationCatalog(refresh_seconds=integration_refresh_seconds),
            clock=clock,
        )
        self._dirty: dict[PartitionKey, int] = {}  # partition -> last offset announced
        self._done: dict[PartitionKey, int] = {}  # partition -> next offset we committed
        self._announced: dict[PartitionKey, int] = {}  # partition -> last offset heard of
        # PostgreSQL: this process's appended events, for batches that need no read.
        self._appended = None if self.db.is_sqlite else AnnouncedEvents()
        self._failing: dict[PartitionKey, tuple[int, float]] = {}  # -> (failures, retry at)
        self._wake = asyncio.Event()
        self._rescan = True
        self._last_scan = 0.0
        self._listener: PgListener | None = None
        self.dispatched = 0  # events, since start (for metrics and tests)

    # --- running ---

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set; a failing pass is logged and retried with backoff."""
        self._listen()
        relay = asyncio.create_task(self._relay(stop), name="jb-dispatcher-stop")
        failures = 0
        try:
            while not stop.is_set():
                try:
                    worked = await self._pass(full_scan=self._take_rescan())
                    failures = 0
                except Exception:  # the store may be down: back off, then rescan everything
                    failures += 1
                    log.exception("dispatcher pass failed (%d in a row)", failures)
                    self._rescan = True
                    await self._sleep(stop, min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures))
                    continue
                if worked or self._dirty:
                    continue
                await self._wait(self.poll_seconds)  # a timeout makes the next pass a full scan
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await self._unlisten()

    async def dispatch_pending(self) -> int:
        """Dispatch everything committed so far, partition by partition, until caught up;
        the number of events dispatched. Errors propagate (tests, one-shot runs)."""
        total = 0
        full = True
        while True:
            worked = await self._pass(full_scan=full, raise_errors=True)
            total += worked
            full = False
            if not worked and not self._dirty:
                return total

    def invalidate(self, owner: int | None = None) -> None:
        """Forget cached integrations (of one owner entity, or all)."""
        self.fanout.catalog.invalidate(owner)

    # --- one pass ---

    async def _pass(self, *, full_scan: bool, raise_errors: bool = False) -> int:
        """Dispatch the partitions heard about, then, on a full scan, every lagging one,
        batch after batch, until each is caught up; the number of events dispatched. (The
        ones heard about first: they are what a publisher waits for, and the scan is only
        the safety net.)"""
        # partition -> whether to start from our own cursor (not after a full scan: the
        # scan is what finds a partition whose log restarted under our cursor)
        total = await self._catch_up(dict.fromkeys(self._take_dirty(), True), raise_errors)
        if full_scan:
            self._last_scan = time.monotonic()
            lagging = {_key_of(p): False for p in await self._scan() if not self._coming(p)}
            total += await self._catch_up(lagging, raise_errors)
        self.dispatched += total
        return total

    def _coming(self, position: PartitionPosition) -> bool:
        """Whether the next pass dispatches this lagging partition anyway: it was woken
        for all of its lag since this pass began, and the group committed where this
        dispatcher's cursor is. (Under a steady stream of publishes every partition lags at
        every scan; reading each again from the group's offset, in a transaction of its
        own, kept the wake-ups waiting 20-40 ms once a second.)"""
        key = _key_of(position)
        heard = self._dirty.get(key, -1) >= position.next_offset - 1
        return heard and self._done.get(key) == position.committed

    async def _catch_up(self, pending: dict[PartitionKey, bool], raise_errors: bool) -> int:
        total = 0
        while pending := self._not_backing_off(pending, raise_errors):
            results = await self._dispatch_all(sorted(pending.items()))
            pending = {}
            for key, result in results:
                if isinstance(result, BatchResult):
                    self._failing.pop(key, None)
                    total += result.events
                    if result.more:
                        pending[key] = True
                elif raise_errors or not isinstance(result, Exception):
                    raise result
                else:
                    self._back_off(key, result)
        return total

    def _not_backing_off(
        self, pending: dict[PartitionKey, bool], ignore: bool
    ) -> dict[PartitionKey, bool]:
        """Partitions whose last batch failed wait out their backoff (the periodic scan
        brings them back), so one broken partition neither floods the log nor holds up
        the others."""
        if ignore or not self._failing:
            return pending
        now = time.monotonic()
        return {k: t for k, t in pending.items() if self._failing.get(k, (0, 0.0))[1] <= now}

    def _back_off(self, key: PartitionKey, error: Exception) -> None:
        failures = self._failing.get(key, (0, 0.0))[0] + 1
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures)
        self._failing[key] = (failures, time.monotonic() + delay)
        log.error(
            "dispatching %s/%s/%d failed (%d in a row); retrying in %.1f s",
            *key,
            failures,
            delay,
            exc_info=error,
        )

    async def _dispatch_all(
        self, items: list[tuple[PartitionKey, bool]]
    ) -> list[tuple[PartitionKey, BatchResult | BaseException]]:
        done: list[tuple[PartitionKey, BatchResult | BaseException]] = []
        if self._appended is not None:
            done, items = await self._known_ones(items, self._appended)
        if len(items) > 1:
            together, items = await self._small_ones_together(items)
            done += together
        if len(items) == 1:  # the common case at low latency: no task to create
            ((key, trust),) = items
            try:
                return [*done, (key, await self.dispatch_batch(*key, trust_cursor=trust))]
            except Exception as exc:
                return [*done, (key, exc)]
        slots = asyncio.Semaphore(self.parallel)

        async def one(key: PartitionKey, trust: bool) -> BatchResult:
            async with slots:
                return await self.dispatch_batch(*key, trust_cursor=trust)

        results = await asyncio.gather(*(one(*item) for item in items), return_exceptions=True)
        return [*done, *((key, r) for (key, _), r in zip(items, results, strict=True))]

    async def _known_ones(
        self, items: list[tuple[PartitionKey, bool]], appended: AnnouncedEvents
    ) -> tuple[
        list[tuple[PartitionKey, BatchResult | BaseException]], list[tuple[PartitionKey, bool]]
    ]:
        """The partitions whose next batch :meth:`_dispatch_known` could dispatch, each
        in its one statement; the results, and the items left to the usual way."""
        done: list[tuple[PartitionKey, BatchResult | BaseException]] = []
        left = []
        for key, trust in items:
            try:
                result = await self._dispatch_known(key, appended) if trust else None
            except Exception as exc:
                done.append((key, exc))
                continue
            if result is None:
                left.append((key, trust))
            else:
                done.append((key, result))
        return done, left

    async def _dispatch_known(
        self, key: PartitionKey, appended: AnnouncedEvents
    ) -> BatchResult | None:
        """PostgreSQL: the next batch of the partition from this dispatcher's cursor, when
        this process appended every event of it and the integrations they match are cached,
        in ONE statement outside any transaction (``queries.dispatch_known``: the lock, the
        check that the cached integrations are current, the offset's move and the jobs).
        At a moderate load a batch is an event or two, and its transaction cost more CPU
        than the publish that made the event. None: not so, or the integrations changed
        (nothing was written); the usual way follows."""
        cursor = self._done.get(key)
        chain = self.fanout.tenants.cached_chain(key[0])
        if cursor is None or chain is None:
            return None
        events = appended.from_offset(key, cursor)[: self.batch_size]
        owners = self.fanout.catalog.unchecked(chain.ids)
        stamps = self.fanout.catalog.cached_stamps(owners)
        if not events or stamps is None:
            return None
        started = time.time_ns()
        plan = await self.fanout.plan_cached(events, stamps)
        if plan is None or plan.occurrences:  # the statement stores jobs, not occurrences
            return None
        following = events[-1].offset + 1
        found = await self._store_known(key, (cursor, following), events, (owners, stamps), plan)
        if not found.held:
            return BatchResult(0, False)  # another node holds it; it will finish it
        if not found.fresh:
            for owner in owners:  # they changed: the usual way reloads them
                self.fanout.catalog.invalidate(owner)
            return None
        if not found.moved:  # someone moved the offset first: read from the group's
            self._done.pop(key, None)
            return BatchResult(0, True)
        self._done[key] = following
        appended.forget_before(key, following)
        _log_batch(key, plan)
        trace_dispatch(self.services.telemetry.tracing, events, plan, started)
        return BatchResult(len(events), self._announced.get(key, -1) >= following)

    async def _store_known(
        self,
        key: PartitionKey,
        span: tuple[int, int],
        events: Sequence[StoredEvent],
        stamps: tuple[list[int], dict[int, Stamp]],
        plan: FanoutPlan,
    ) -> known_batches.KnownBatch:
        """Run :meth:`_dispatch_known`'s statement for ``plan`` (the batch from ``span``'s
        cursor to its following offset, ``stamps`` its owners' cached ones); the jobs
        handed to this process's worker if it committed, the room given back either way."""
        (cursor, following), (owners, cached) = span, stamps
        grant = _Grant(size=len(events))
        leased, rest = self._for_handoff(plan, grant)
        queue, handoff = self.services.queue, self.handoff
        rows = queue.new_rows(rest.jobs)
        if handoff is not None and leased:
            rows += queue.new_rows(leased, (handoff.owner, handoff.lease_seconds))
        waking = sorted({job.queue for job in rest.jobs})
        moved = False
        try:
            async with self.db.driver() as driver:
                found = await known_batches.dispatch_known(
                    driver,
                    self.db.engine.dialect,
                    lock_key=queries.lock_key(GROUP, *key),
                    stamps=(owners, known_batches.stamps_digest(cached)),
                    offsets=(GROUP, key, cursor, following),
                    now=self.clock(),
                    rows=rows,
                    notify=(JOBS_CHANNEL, waking) if waking else None,
                )
            moved = found.moved
            if moved:
                grant.jobs = queue.inserted(rows, found.inserted)
                grant.known = _known_for(events, plan)
        finally:
            self._settle(grant, committed=moved)
        return found

    async def _scan(self) -> list[PartitionPosition]:
        """Every partition with undispatched events; also gives partitions the group has no
        row for one, so retention waits for the dispatcher from now on."""
        async with self.db.read() as conn:
            lagging = await queries.lagging_partitions(conn, GROUP)
            unprotected = await queries.unprotected_partitions(conn, GROUP)
        if unprotected:
            async with self.db.write() as conn:
                await queries.protect(conn, GROUP, unprotected, self.clock())
        return lagging

    async def dispatch_batch(
        self, org_id: int, stream: str, partition: int, *, trust_cursor: bool = True
    ) -> BatchResult:
        """Dispatch the next batch of one partition: its jobs and the new committed offset
        in one transaction.

        It starts at the offset this dispatcher committed last (saving a query on the hot
        path; the compare-and-set of the commit verifies it), or, without one (or with
        ``trust_cursor`` False, as full scans do), at the group's committed offset.
        """
        key = (org_id, stream, partition)
        cursor = self._done.get(key) if trust_cursor else None
        # A batch known to be small (the events announced since our cursor) runs its SQLite
        # calls inline (store.sqlite_inline), and then reads no more than a small batch.
        inline = self._announced_since(key, cursor) is not None
        try:
            [result] = await self._in_one_transaction([(key, cursor)], inline=inline)
        except _Raced:
            self._done.pop(key, None)
            log.info("dispatcher: %s/%s/%d moved under this batch; reading it again", *key)
            return BatchResult(0, True)
        return result

    def _announced_since(self, key: PartitionKey, cursor: int | None) -> int | None:
        """How many events were announced past ``cursor`` when that is a small batch's
        worth (``SMALL_BATCH`` at most); None when unknown or more."""
        announced = self._announced.get(key)
        if cursor is None or announced is None or announced >= cursor + SMALL_BATCH:
            return None
        return max(0, announced - cursor + 1)

    async def _in_one_transaction(
        self, items: Sequence[tuple[PartitionKey, int | None]], *, inline: bool
    ) -> list[BatchResult]:
        """The next batch of each partition (from its cursor, or else from the group's
        committed offset) in ONE write transaction; whatever fails rolls all of them back
        and propagates."""
        size = SMALL_BATCH if inline else self.batch_size
        grants = [_Grant(size=size) for _ in items]
        batches: list[_Batch] = []
        committed = False
        try:
            # Not durable: a batch a crash loses is dispatched again, with the same dedupe keys
            # (on PostgreSQL each partition's lock statement says so: queries.lock_partition).
            async with self.db.write(inline=inline) as conn:
                for (key, cursor), grant in zip(items, grants, strict=True):
                    batches.append(await self._batch(conn, key, cursor, grant))
            committed = True
        finally:
            for grant in grants:
                self._settle(grant, committed=committed)
        for (key, _), batch in zip(items, batches, strict=True):
            if batch.following is None:
                self._done.pop(key, None)
            else:
                self._done[key] = batch.following
                if self._appended is not None:
                    self._appended.forget_before(key, batch.following)
                _log_batch(key, batch.plan)
        return [batch.result for batch in batches]

    async def _small_ones_together(
        self, items: list[tuple[PartitionKey, bool]]
    ) -> tuple[list[tuple[PartitionKey, BatchResult]], list[tuple[PartitionKey, bool]]]:
        """The partitions whose announced events make small batches are dispatched
        together, up to ``SMALL_BATCH`` events per (on SQLite, inline) transaction, instead
        of a transaction each. On SQLite, under a stream of single publishes spread over a
        stream's partitions, every transaction waited its turn for the write lock, and each
        partition's events waited for all the others'; on PostgreSQL the transactions run in
        parallel, but each costs its round trips and its commit on both sides (8 % less CPU
        per event in the server, and less in PostgreSQL, at 1,100 single publishes a second).
        A group that fails is left to the usual way, one partition per transaction, so that
        one partition's failure stays its own. The results, and the items left."""
        groups: list[list[tuple[PartitionKey, int]]] = [[]]
        left, room = [], SMALL_BATCH
        for key, trust in items:
            cursor = self._done.get(key) if trust else None
            count = self._announced_since(key, cursor)
            if cursor is None or count is None:
                left.append((key, trust))
                continue
            if count > room:
                groups.append([])
                room = SMALL_BATCH
            groups[-1].append((key, cursor))
            room -= count
        done: list[tuple[PartitionKey, BatchResult]] = []
        for group in groups:
            if len(group) < 2:
                left += [(key, True) for key, _ in group]
                continue
            try:
                results = await self._in_one_transaction(group, inline=True)
            except Exception:  # _Raced too: each partition again on its own
                log.debug("dispatching %d partitions together failed", len(group), exc_info=True)
                left += [(key, True) for key, _ in group]
                continue
            done += [(key, result) for (key, _), result in zip(group, results, strict=True)]
        return done, left

    async def _batch(
        self, conn: AsyncConnection, key: PartitionKey, cursor: int | None, grant: _Grant
    ) -> _Batch:
        # The owners whose integrations the batch may match are known before its events
        # (a partition is one tenant's): their freshness check rides on the lock
        # (PostgreSQL) or on the read (SQLite).
        chain = await self.fanout.tenants.chain(conn, key[0])
        owners = self.fanout.catalog.unchecked(chain.ids)
        lock_key = queries.lock_key(GROUP, *key)
        if cursor is not None and self.db.dialect == "postgresql":
            found = await queries.lock_and_read(
                conn, lock_key, owners, GROUP, key, cursor, grant.size, self.clock()
            )
            if not found.locked:
                return _Batch(BatchResult(0, False))  # as below
            if found.events and not found.moved:
                raise _Raced()
            read = _Read((), found.stamps, found.events, moved=found.moved)
            return await self._batch_from(conn, key, read, (cursor, cursor, None), grant)
        locked, stamps = await queries.lock_partition(conn, lock_key, owners)
        if not locked:
            return _Batch(BatchResult(0, False))  # another node holds it; it will finish it
        read = _Read(owners if stamps is None else (), stamps)
        if cursor is not None:
            return await self._batch_from(conn, key, read, (cursor, cursor, None), grant)
        at = await queries.position(conn, *key, GROUP)
        if at is None or at.lag == 0:
            return _Batch(BatchResult(0, False), None if at is None else at.start)
        span = (at.start, at.committed, at.next_offset)
        return await self._batch_from(conn, key, read, span, grant)

    async def _batch_from(
        self,
        conn: AsyncConnection,
        key: PartitionKey,
        read: _Read,
        span: tuple[int, int | None, int | None],
        grant: _Grant,
    ) -> _Batch:
        """Read, match, enqueue and commit one batch; ``span`` is where it starts, the
        committed offset it moves from, and the partition's next offset when known (None:
        starting from our own cursor)."""
        start, committed, end = span
        started = time.time_ns()
        size = grant.size
        if read.events is not None:
            events, stamps = read.events, read.stamps
        else:
            events, stamps = await queries.read_batch(conn, *key, start - 1, size, read.owners)
            if read.stamps is not None:
                stamps = read.stamps
        if not events and end is None:
            # Nothing after our own cursor: nothing new, or the stream was deleted and made
            # again (offsets restart). Forget the cursor; the next look reads the group's.
            return _Batch(BatchResult(0, False))
        plan = await self.fanout.plan(conn, events, stamps=stamps) if events else FanoutPlan()
        await self.fanout.store(conn, await self._lease_to_worker(conn, plan, events, grant))
        # No events before the end: they were trimmed, or their stream deleted.
        following = events[-1].offset + 1 if events else end or start
        moved = read.moved or await queries.advance(
            conn, GROUP, *key, committed, following, self.clock()
        )
        if not moved:
            raise _Raced()
        more = len(events) >= size if end is None else following < end
        trace_dispatch(self.services.telemetry.tracing, events, plan, started)
        return _Batch(BatchResult(len(events), more), following, plan)

    async def _lease_to_worker(
        self,
        conn: AsyncConnection,
        plan: FanoutPlan,
        events: Sequence[StoredEvent],
        grant: _Grant,
    ) -> FanoutPlan:
        """Insert the jobs this process's worker has room for already leased to it (see
        :mod:`junctionbox.engine.handoff`, noted in ``grant`` for after the commit); the
        plan of the jobs left to store as usual."""
        leased, rest = self._for_handoff(plan, grant)
        handoff = self.handoff
        if handoff is not None and leased:
            owner, seconds = handoff.owner, handoff.lease_seconds
            grant.jobs = await self.services.queue.enqueue_leased(conn, leased, owner, seconds)
            grant.known = _known_for(events, plan)
        return rest

    def _for_handoff(self, plan: FanoutPlan, grant: _Grant) -> tuple[list[NewJob], FanoutPlan]:
        """The plan's jobs this process's worker has room for (reserved in ``grant``),
        and the plan of the others."""
        handoff = self.handoff
        if handoff is None or not plan.jobs:
            return [], plan
        eligible = [index for index, job in enumerate(plan.jobs) if can_hand_over(job)]
        grant.reserved = handoff.reserve(len(eligible)) if eligible else 0
        if not grant.reserved:
            return [], plan
        chosen = set(eligible[: grant.reserved])
        leased = [plan.jobs[index] for index in sorted(chosen)]
        rest = [job for index, job in enumerate(plan.jobs) if index not in chosen]
        return leased, FanoutPlan(plan.events, rest, plan.occurrences)

    def _settle(self, grant: _Grant, *, committed: bool) -> None:
        """Hand the worker its jobs once their batch committed, and give back the room
        reserved for them either way."""
        if grant.reserved and self.handoff is not None:
            self.handoff.take(grant.jobs if committed else [], grant.known, grant.reserved)

    # --- wake-ups ---

    def _on_appended(self, stored: Sequence[StoredEvent]) -> None:
        for event in stored:
            if self._appended is not None:
                self._appended.add(event)
            self._mark((event.org_id, event.stream, event.partition), event.offset)

    def _on_notify(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            key = (int(message["o"]), str(message["s"]), int(message["p"]))
            self._mark(key, int(message["l"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed %s notification", EVENTS_CHANNEL)

    def _on_reconnected(self) -> None:
        self._rescan = True  # notifications were lost while disconnected
        self._wake.set()

    def _mark(self, key: PartitionKey, last_offset: int) -> None:
        if self._done.get(key, -1) > last_offset:
            return  # already dispatched (both wake-up paths report local appends)
        self._dirty[key] = max(last_offset, self._dirty.get(key, -1))
        self._wake.set()

    def _take_dirty(self) -> set[PartitionKey]:
        dirty, self._dirty = self._dirty, {}
        self._announced.update(dirty)
        return {key for key, last in dirty.items() if self._done.get(key, -1) <= last}

    def _take_rescan(self) -> bool:
        """Whether this pass scans every partition: when asked to, and at least every
        ``poll_seconds`` even under a steady stream of wake-ups."""
        due = time.monotonic() - self._last_scan >= self.poll_seconds
        rescan, self._rescan = self._rescan or due, False
        return rescan

    async def _wait(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return False
        finally:
            self._wake.clear()
        return True

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    def _listen(self) -> None:
        event_log = self.services.event_log
        if self._on_appended not in event_log.listeners:
            event_log.listeners.append(self._on_appended)
        if self.db.dialect == "postgresql" and self._listener is None:
            # This process's own appends are announced to _on_appended after their commit,
            # with their events: their NOTIFY, often heard first, would send the batch
            # the usual way (a read of the log) before the events arrive in memory.
            self._listener = PgListener(
                asyncpg_dsn(self.db.url),
                EVENTS_CHANNEL,
                self._on_notify,
                self._on_reconnected,
                ignore_from=self.db.owns_backend,
            )
            self._listener.ensure_started()

    async def _unlisten(self) -> None:
        event_log = self.services.event_log
        if self._on_appended in event_log.listeners:
            event_log.listeners.remove(self._on_appended)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()


@dataclass(frozen=True)
class _Batch:
    result: BatchResult
    following: int | None = None  # the committed offset after it; None: forget the cursor
    plan: FanoutPlan | None = None


@dataclass
class _Grant:
    """A batch's size, and the jobs leased to this process's worker in its transaction,
    handed over after it."""

    size: int  # events the batch reads at most
    reserved: int = 0  # room the worker holds for them until handed (or the batch failed)
    jobs: list[Job] = field(default_factory=list)
    known: Known = NOTHING_KNOWN


@dataclass(frozen=True)
class _Read:
    owners: Collection[int]  # whose stamps the read is to bring
    stamps: dict[int, Stamp] | None  # the stamps the lock brought
    events: list[StoredEvent] | None = None  # the batch, when the lock read it too
    moved: bool = False  # and moved the group's offset past it


class _Raced(Exception):
    """The committed offset moved under this batch: roll it back (the other writer won)."""


def _key_of(position: PartitionPosition) -> PartitionKey:
    return (position.org_id, position.stream, position.partition)


def _known_for(events: Sequence[StoredEvent], plan: FanoutPlan) -> Known:
    events_at = {(e.org_id, e.stream, e.partition, e.offset): e for e in events}
    return Known(events_at, plan.stamps)


def _log_batch(key: PartitionKey, plan: FanoutPlan | None) -> None:
    if plan is not None and plan.deliveries and log.isEnabledFor(logging.DEBUG):
        log.debug(
            "dispatched %d events of %s/%s/%d: %d jobs, %d scheduled",
            plan.events,
            *key,
            len(plan.jobs),
            len(plan.occurrences),
        )


def trace_dispatch(
    tracing: Tracing, events: Sequence[StoredEvent], plan: FanoutPlan, started_ns: int
) -> None:
    """A ``dispatch`` span per event that carries a ``traceparent``, covering its batch's
    read, match and enqueue (nothing to do, and no cost, when tracing is off)."""
    if not tracing.recording or not events:
        return
    for event in events:
        parent = Tracing.context_of_traceparent(event.extensions.get("traceparent"))
        if parent is None:
            continue
        span = tracing.tracer.start_span(
            "dispatch",
            context=parent,
            start_time=started_ns,
            attributes={
                "tenant.id": event.org_id,
                "event.id": event.event_id,
                "event.type": event.type,
                "stream": event.stream,
                "partition": event.partition,
                "offset": event.offset,
                "batch.deliveries": plan.deliveries,
            },
        )
        span.end()
