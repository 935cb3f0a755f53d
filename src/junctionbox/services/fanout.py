"""From stored events to delivery jobs: the part of dispatching shared by the dispatcher
and replay.

``Fanout.plan(conn, events)`` matches each event against the integrations that may apply
(:mod:`junctionbox.domain.matching`) and builds one delivery job per (event, matching
integration) for the integration's first action; ``Fanout.store(conn, plan)`` enqueues them
all with one ``JobQueue.enqueue`` and inserts the occurrence rows of DELAYED and RECURRING
integrations. Both run in the caller's transaction, so a batch's fan-out is all or nothing.

Caches (per process, per ``Fanout``):

* Integrations per owner entity, parsed once. Before a batch uses them, one query reads each
  owner's stamp (count, sum of versions, number active, latest ``updated_at``) and reloads
  the owners whose stamp changed, so any change committed before the batch began is seen by
  it (no staleness window) at the cost of one indexed aggregate per batch (the dispatcher
  reads it with its partition's advisory lock on PostgreSQL, with the batch's events on
  SQLite: no statement of its own).
  ``refresh_seconds`` > 0 skips that check for owners verified more recently (trading
  freshness for a query). The dispatcher never opens credentials: matching needs none, so
  integrations are parsed without their sealed secrets.
* Compiled content filters, keyed by (integration id, version), in an ExpressionCache.
* Each entity's parent (units do not move between organizations).

Duplicates: a job's dedupe key is ``dlv:{message_id}`` (``replay:{replayId}:{message_id}``
for a replay), so planning the same events twice enqueues nothing new.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    EventRef,
    Trigger,
    delivery_dedupe_key,
    job_max_attempts,
    message_id,
)
from junctionbox.domain.events import StoredEvent
from junctionbox.domain.matching import (
    TenantChain,
    candidates,
    filter_activation,
    ordering_key,
    run_filter,
)
from junctionbox.domain.outbound import (
    OrderingMode,
    SchedulingMode,
    StoredIntegration,
    parse_integration,
)
from junctionbox.domain.schedule import (
    Recurrence,
    ScheduleError,
    delayed_due,
    first_occurrence,
    resolve_zone,
)
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.expr import ExpressionCache, compile_filter
from junctionbox.queue.jobs import NewJob
from junctionbox.queue.store import JobQueue
from junctionbox.services.schedules import (
    DeliverySettings,
    Occurrence,
    Target,
    attach_occurrences,
    new_occurrence,
)
from junctionbox.store.queries import dispatch as queries
from junctionbox.store.queries.delivery_attempts import IntegrationStamp
from junctionbox.store.queries.dispatch import NO_INTEGRATIONS, EntityLink, Stamp
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
MAX_CACHED_OWNERS: Final = 10_000
MAX_CACHED_ENTITIES: Final = 100_000
FILTER_LOG_INTERVAL: Final = 60.0  # seconds between two logs of one integration's filter
_CORRELATION_MAX: Final = 100


class NeedsStore(Exception):
    """A plan made from the caches alone (``Fanout.plan_cached``) needed a read."""


def _reader(conn: AsyncConnection | None) -> AsyncConnection:
    if conn is None:
        raise NeedsStore()
    return conn


# --- integrations ---


@dataclass
class _Owned:
    stamp: Stamp
    integrations: tuple[StoredIntegration, ...]
    checked: float


class IntegrationCatalog:
    """Active integrations per owner entity, parsed once, verified by a cheap stamp."""

    def __init__(
        self,
        *,
        refresh_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.monotonic = monotonic
        self._owners: OrderedDict[int, _Owned] = OrderedDict()
        self.loads = 0  # owners (re)loaded, for tests and metrics

    async def of(
        self,
        conn: AsyncConnection | None,
        owners: Collection[int],
        stamps: Mapping[int, Stamp] | None = None,
    ) -> list[StoredIntegration]:
        """The active integrations of ``owners`` (nearest owner first, then oldest).
        ``stamps``: owners' stamps read in this transaction already (every owner that
        :meth:`unchecked` named), which saves the query. Without ``conn``: from the cache,
        or ``NeedsStore``."""
        now = self.monotonic()
        stale = [o for o in owners if self._needs_check(o, now)]
        if stale:
            await self._refresh(conn, stale, now, stamps)
        found: list[StoredIntegration] = []
        for owner in owners:
            self._owners.move_to_end(owner)
            found.extend(self._owners[owner].integrations)
        return found

    def invalidate(self, owner: int | None = None) -> None:
        if owner is None:
            self._owners.clear()
        else:
            self._owners.pop(owner, None)

    def unchecked(self, owners: Collection[int]) -> list[int]:
        """The owners whose stamp a batch using them now must read."""
        now = self.monotonic()
        return [o for o in owners if self._needs_check(o, now)]

    def cached_stamps(self, owners: Collection[int]) -> dict[int, Stamp] | None:
        """The stamp each of ``owners`` was loaded at; None if one is not cached."""
        found = {owner: cached.stamp for owner in owners if (cached := self._owners.get(owner))}
        return found if len(found) == len(owners) else None

    def _needs_check(self, owner: int, now: float) -> bool:
        cached = self._owners.get(owner)
        return cached is None or now - cached.checked >= self.refresh_seconds

    async def _refresh(
        self,
        conn: AsyncConnection | None,
        owners: list[int],
        now: float,
        known: Mapping[int, Stamp] | None,
    ) -> None:
        if known is not None and all(owner in known for owner in owners):
            stamps: Mapping[int, Stamp] = known
        else:
            stamps = await queries.integration_stamps(_reader(conn), owners)
        changed = []
        for owner in owners:
            stamp = stamps.get(owner, NO_INTEGRATIONS)
            cached = self._owners.get(owner)
            if cached is not None and cached.stamp == stamp:
                cached.checked = now
            else:
                changed.append(owner)
        if not changed:
            return
        loaded: dict[int, list[StoredIntegration]] = {owner: [] for owner in changed}
        for row in await queries.active_integration_rows(_reader(conn), changed):
            stored = _matchable(row)
            if stored is not None:
                loaded[stored.org_id].append(stored)
        for owner in changed:
            self._owners[owner] = _Owned(
                stamps.get(owner, NO_INTEGRATIONS), tuple(loaded[owner]), now
            )
            self._owners.move_to_end(owner)
            self.loads += 1
        while len(self._owners) > MAX_CACHED_OWNERS:
            self._owners.popitem(last=False)


def _matchable(row: RowMapping) -> StoredIntegration | None:
    """The integration as matching sees it: its configuration without credentials (the
    auth block is replaced by NONE, which needs none). A stored configuration that no longer
    validates is skipped, loudly: it cannot be matched reliably."""
    document = {**row["config"], "outgoingAuthType": "NONE", "outgoingAuthConfig": {}}
    try:
        integration = parse_integration(document)
    except ValidationError as exc:
        log.error(
            "integration %s is skipped by the dispatcher: its stored configuration is invalid "
            "(%s); save it again to repair it",
            row["id"],
            exc.message,
        )
        return None
    return StoredIntegration(
        id=row["id"],
        org_id=int(row["org_id"]),
        version=int(row["version"]),
        integration=integration,
        signing_keys=(),
        consecutive_failures=int(row["consecutive_failures"]),
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- tenants ---


class TenantDirectory:
    """Each entity's parent, cached (units never change organization)."""

    def __init__(self) -> None:
        self._links: OrderedDict[int, EntityLink] = OrderedDict()

    def cached_chain(self, entity_id: int) -> TenantChain | None:
        link = self._links.get(entity_id)
        return None if link is None else TenantChain(entity_id, link.parent_id)

    async def chain(self, conn: AsyncConnection | None, entity_id: int) -> TenantChain:
        link = self._links.get(entity_id)
        if link is None:
            found = await queries.entity_links(_reader(conn), [entity_id])
            link = found.get(entity_id, EntityLink(entity_id, None, None))
            self._links[entity_id] = link
            while len(self._links) > MAX_CACHED_ENTITIES:
                self._links.popitem(last=False)
        return TenantChain(entity_id, link.parent_id)

    @staticmethod
    async def zone_names(
        conn: AsyncConnection | None, chain: TenantChain
    ) -> tuple[str | None, ...]:
        """The entity's time zone, then its organization's (read fresh: profiles change)."""
        links = await queries.entity_links(_reader(conn), chain.ids)
        return tuple(links[i].timezone if i in links else None for i in chain.ids)


# --- filters ---


@dataclass(frozen=True)
class _CompiledFilter:
    matches: Callable[[Mapping[str, Any]], bool] | None
    error: str | None = None


class FilterBook:
    """Compiled content filters per integration version, and rate-limited error logs."""

    def __init__(self, cache: ExpressionCache | None = None) -> None:
        self.cache = cache or ExpressionCache(4096)
        self._logged: dict[str, float] = {}

    def passes(
        self, stored: StoredIntegration, activation: Mapping[str, Any], event_id: str
    ) -> bool:
        source = stored.integration.filter
        if not source:
            return True
        compiled = self.cache.get_or_compile(
            (stored.id, stored.version, "filter"), lambda: _compile(source)
        )
        if compiled.matches is None:
            self._log(stored.id, event_id, f"does not compile: {compiled.error}")
            return False
        verdict = run_filter(compiled.matches, activation)
        if verdict.error is not None:
            self._log(stored.id, event_id, verdict.error)
        return verdict.matched

    def _log(self, integration_id: str, event_id: str, error: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(integration_id, -FILTER_LOG_INTERVAL) < FILTER_LOG_INTERVAL:
            return
        self._logged[integration_id] = now
        log.warning(
            "content filter of integration %s failed on event %s, counted as no match: %s "
            "(further failures of this filter are not logged for %d s)",
            integration_id,
            event_id,
            error,
            FILTER_LOG_INTERVAL,
        )


def _compile(source: str) -> _CompiledFilter:
    try:
        return _CompiledFilter(compile_filter(source).matches)
    except JunctionboxError as exc:
        return _CompiledFilter(None, exc.message)


# --- the plan ---


@dataclass
class FanoutPlan:
    """The jobs a batch of events makes: immediate ones and scheduled occurrences."""

    events: int = 0
    jobs: list[NewJob] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    # The immediate jobs' integrations as matched: (version, updated_at, is_active) read in
    # the batch's transaction (what a worker checks its cached copy against).
    stamps: dict[str, IntegrationStamp] = field(default_factory=dict)

    @property
    def deliveries(self) -> int:
        return len(self.jobs) + len(self.occurrences)


@dataclass(frozen=True)
class FanoutOptions:
    """EVENT for the dispatcher; REPLAY sends now, whatever the scheduling mode, under
    fresh dedupe keys (``replay_id``), to every match or only ``only_integration``."""

    trigger: Trigger = Trigger.EVENT
    replay_id: str | None = None
    only_integration: str | None = None

    def dedupe_key(self, mid: str) -> str:
        replay = self.replay_id if self.trigger is Trigger.REPLAY else None
        return delivery_dedupe_key(mid, replay)


class Fanout:
    def __init__(
        self,
        queue: JobQueue,
        *,
        catalog: IntegrationCatalog | None = None,
        filters: FilterBook | None = None,
        tenants: TenantDirectory | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.queue = queue
        self.catalog = catalog or IntegrationCatalog()
        self.filters = filters or FilterBook()
        self.tenants = tenants or TenantDirectory()
        self.clock = clock

    async def plan(
        self,
        conn: AsyncConnection | None,
        events: Sequence[StoredEvent],
        options: FanoutOptions = FanoutOptions(),
        *,
        stamps: Mapping[int, Stamp] | None = None,
    ) -> FanoutPlan:
        """Match ``events`` and build their jobs (reads only; ``store`` writes them).
        ``stamps``: integration owners' stamps already read in this transaction. Without
        ``conn`` everything must come from the caches (else ``NeedsStore``)."""
        plan = FanoutPlan()
        chains: dict[int, tuple[TenantChain, list[StoredIntegration]]] = {}
        zones: dict[int, tuple[str | None, ...]] = {}
        for event in events:
            plan.events += 1
            if event.org_id not in chains:
                chain = await self.tenants.chain(conn, event.org_id)
                chains[event.org_id] = (chain, await self.catalog.of(conn, chain.ids, stamps))
            chain, owned = chains[event.org_id]
            matched = self._matching(event, chain, owned, options)
            if matched:
                await self._add(conn, plan, event, chain, matched, options, zones)
        return plan

    async def plan_cached(
        self, events: Sequence[StoredEvent], stamps: Mapping[int, Stamp]
    ) -> FanoutPlan | None:
        """:meth:`plan` from the caches alone, trusting ``stamps`` (the caller verifies
        them where it stores the plan): None when something had to be read (an entity or
        an owner not cached, a stamp not the cached one, a scheduled integration's time
        zone)."""
        try:
            return await self.plan(None, events, stamps=stamps)
        except NeedsStore:
            return None

    async def store(self, conn: AsyncConnection, plan: FanoutPlan) -> None:
        """Enqueue the plan's jobs (one statement batch) and insert its occurrence rows."""
        every = [*plan.jobs, *(o.job for o in plan.occurrences)]
        if not every:
            return
        job_ids = await self.queue.enqueue(conn, every)
        await attach_occurrences(conn, plan.occurrences, job_ids[len(plan.jobs) :])

    def _matching(
        self,
        event: StoredEvent,
        chain: TenantChain,
        owned: list[StoredIntegration],
        options: FanoutOptions,
    ) -> list[tuple[StoredIntegration, dict[str, Any]]]:
        found = candidates(owned, chain, event.type)
        if options.only_integration is not None:
            found = [s for s in found if s.id == options.only_integration]
        if not found:
            return []
        # Decoding the data costs more than matching: only when a filter or a key needs it.
        needed = any(
            s.integration.filter or s.integration.ordering.mode is OrderingMode.FIFO for s in found
        )
        activation = filter_activation(event) if needed else {}
        return [
            (stored, activation)
            for stored in found
            if self.filters.passes(stored, activation, event.event_id)
        ]

    async def _add(
        self,
        conn: AsyncConnection | None,
        plan: FanoutPlan,
        event: StoredEvent,
        chain: TenantChain,
        matched: list[tuple[StoredIntegration, dict[str, Any]]],
        options: FanoutOptions,
        zones: dict[int, tuple[str | None, ...]],
    ) -> None:
        for stored, activation in matched:
            job = _delivery_job(event, stored, options)
            settings = DeliverySettings(
                event.source,
                job_max_attempts(stored.integration.retry_policy.max_retries),
                ordering_key(stored, activation),
            )
            mode = stored.integration.scheduling.mode
            if options.trigger is Trigger.REPLAY or mode is SchedulingMode.IMMEDIATE:
                plan.jobs.append(_immediate(job, settings, options))
                plan.stamps[stored.id] = (stored.version, stored.updated_at, stored.is_active)
                continue
            if event.org_id not in zones:
                zones[event.org_id] = await self.tenants.zone_names(conn, chain)
            occurrence = self._first_occurrence(event, stored, job, settings, zones[event.org_id])
            if occurrence is not None:
                plan.occurrences.append(occurrence)

    def _first_occurrence(
        self,
        event: StoredEvent,
        stored: StoredIntegration,
        job: DeliveryJob,
        settings: DeliverySettings,
        tenant_zones: tuple[str | None, ...],
    ) -> Occurrence | None:
        scheduling = stored.integration.scheduling
        recurrence = None
        try:
            if scheduling.mode is SchedulingMode.DELAYED:
                due: datetime | None = delayed_due(scheduling, event.received_at)
            else:
                zone = resolve_zone(scheduling.timezone, *tenant_zones)
                recurrence = Recurrence.of(scheduling, zone)
                due = first_occurrence(recurrence, event.received_at)
        except ScheduleError as exc:
            log.error("integration %s: event %s not scheduled: %s", stored.id, event.event_id, exc)
            return None
        if due is None:
            log.info(
                "integration %s: the schedule has ended (endAt passed); event %s not scheduled",
                stored.id,
                event.event_id,
            )
            return None
        action = stored.integration.effective_actions()[0]
        return new_occurrence(
            job,
            mode=scheduling.mode,
            due=due,
            occurrence=0,
            settings=settings,
            target=Target(stored.integration.name, action.target_url, action.http_method.value),
            recurrence=recurrence,
            now=self.clock(),
        )


def _delivery_job(
    event: StoredEvent, stored: StoredIntegration, options: FanoutOptions
) -> DeliveryJob:
    correlation = options.replay_id or event.extensions.get("correlationid")
    return DeliveryJob(
        org_id=event.org_id,
        integration_id=stored.id,
        message_id=message_id(event.org_id, event.source, event.event_id, stored.id, 0),
        event=EventRef(event.stream, event.partition, event.offset),
        event_id=event.event_id,
        event_type=event.type,
        action_index=0,
        trigger=options.trigger,
        integration_version=stored.version,
        correlation_id=correlation[:_CORRELATION_MAX] if isinstance(correlation, str) else None,
    )


def _immediate(job: DeliveryJob, settings: DeliverySettings, options: FanoutOptions) -> NewJob:
    return NewJob(
        kind=DELIVERY_JOB_KIND,
        payload=job.to_payload(),
        queue=DELIVERY_QUEUE,
        org_id=job.org_id,
        max_attempts=settings.max_attempts,
        ordering_key=settings.ordering_key,
        dedupe_key=options.dedupe_key(job.message_id),
    )
