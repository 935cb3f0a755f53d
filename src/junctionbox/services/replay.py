"""Replay: re-dispatch stored events of one tenant's stream to the integrations that match
them now (or to one named integration).

The events are chosen by stream, optional partition, an offset range or a time range
(``receivedAt``), and optional type patterns (``order.created``, ``order.*``, ``*``). Each is
matched exactly as the dispatcher matches (type, tenant hierarchy, content filter, active
integrations only) and gets one delivery job per match with trigger REPLAY, sent at once
whatever the integration's scheduling mode. A replayed delivery keeps the original's
``webhook-id`` (the message id depends on tenant, event source and id, integration and
action only), so a receiver that deduplicates sees the replay as the same message; its job
gets a fresh dedupe key ``replay:{replayId}:{message_id}``, so a replay always creates new
jobs, and two replays are two sets of deliveries.

Bounds: one request replays at most ``MAX_REPLAY_EVENTS`` events (the count is checked
first; beyond it the answer is 400 naming the count, and the caller narrows the range or
splits it). The range is fixed when the request starts (events appended meanwhile are not
included), events are read a page at a time, and everything is enqueued in one
transaction: a replay happens entirely or not at all. ``dryRun`` matches the same events
and reports the counts without enqueuing anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, NoReturn

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import Trigger
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.matching import TenantChain, applies_to
from junctionbox.errors import ConflictError, FieldProblem, NotFoundError, ValidationError
from junctionbox.queue.store import JobQueue
from junctionbox.services import audit
from junctionbox.services.fanout import Fanout, FanoutOptions
from junctionbox.store.database import Database
from junctionbox.store.queries import dispatch as dispatch_queries
from junctionbox.store.queries import events as queries
from junctionbox.store.queries.events import EventFilter, PartitionRecord
from junctionbox.store.types import utcnow

MAX_REPLAY_EVENTS: Final = 10_000
MAX_TYPE_PATTERNS: Final = 32
PAGE_SIZE: Final = 500
REPLAY_ID_PREFIX: Final = "rpl"
_TYPE_PATTERN: Final = re.compile(r"^(\*|[^\s*]{1,200}(\.\*)?)$")


@dataclass(frozen=True)
class ReplayRequest:
    stream: str
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None
    event_types: tuple[str, ...] = ()
    integration_id: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ReplayResult:
    replay_id: str | None  # None for a dry run
    dry_run: bool
    events: int  # events in the range (and of the types asked for)
    deliveries: int  # jobs created (or, dry, that would be)


class ReplayService:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        *,
        max_events: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.queue = queue
        self.max_events = MAX_REPLAY_EVENTS if max_events is None else max_events
        self.clock = clock

    async def replay(self, tenant: TenantContext, request: ReplayRequest) -> ReplayResult:
        _check(request)
        exact, prefixes = _type_filter(request.event_types)
        replay_id = None if request.dry_run else new_id(REPLAY_ID_PREFIX)
        transaction = self.db.read() if request.dry_run else self.db.write()
        async with transaction as conn:
            parts = await self._partitions(conn, tenant, request)
            fanout = Fanout(self.queue, clock=self.clock)
            chain = await fanout.tenants.chain(conn, tenant.org_id)
            if request.integration_id is not None:
                await self._check_integration(conn, fanout, chain, request.integration_id)
            ranges = [
                EventFilter(
                    org_id=tenant.org_id,
                    stream=request.stream,
                    partition=part.partition,
                    from_offset=max(request.from_offset or 0, part.first_offset),
                    to_offset=_upper(request.to_offset, part.next_offset - 1),
                    since=request.from_time,
                    until=request.to_time,
                    types=exact,
                    type_prefixes=prefixes,
                )
                for part in parts
            ]
            total = sum([await queries.count(conn, where) for where in ranges])
            self._check_size(total)
            options = FanoutOptions(Trigger.REPLAY, replay_id or "dry-run", request.integration_id)
            events, deliveries = await self._run(
                conn, fanout, ranges, options, store=not request.dry_run
            )
            if replay_id is not None:
                await audit.record(
                    conn,
                    tenant.principal,
                    "events.replay",
                    "event_stream",
                    request.stream,
                    org_id=tenant.org_id,
                    after={
                        "replayId": replay_id,
                        "events": events,
                        "deliveries": deliveries,
                        "integrationId": request.integration_id,
                    },
                )
        return ReplayResult(replay_id, request.dry_run, events, deliveries)

    async def _run(
        self,
        conn: AsyncConnection,
        fanout: Fanout,
        ranges: Sequence[EventFilter],
        options: FanoutOptions,
        *,
        store: bool,
    ) -> tuple[int, int]:
        """Match every event of the ranges, a page at a time (keyset on the offset, so the
        pages neither skip nor repeat), storing each page's jobs unless dry; the numbers of
        events and of deliveries."""
        events = deliveries = 0
        for where in ranges:
            following = where.from_offset or 0
            while True:
                page = await queries.read(
                    conn, replace(where, from_offset=following), limit=PAGE_SIZE
                )
                if not page:
                    break
                plan = await fanout.plan(conn, page, options)
                if store:
                    await fanout.store(conn, plan)
                events, deliveries = events + plan.events, deliveries + plan.deliveries
                following = page[-1].offset + 1
                if len(page) < PAGE_SIZE:
                    break
        return events, deliveries

    async def _partitions(
        self, conn: AsyncConnection, tenant: TenantContext, request: ReplayRequest
    ) -> list[PartitionRecord]:
        if await queries.get_stream(conn, tenant.org_id, request.stream) is None:
            raise NotFoundError(f"stream {request.stream!r} not found")
        parts = await queries.partitions(conn, tenant.org_id, request.stream)
        if request.partition is None:
            return parts
        chosen = [p for p in parts if p.partition == request.partition]
        if not chosen:
            _fail("partition", f"stream {request.stream!r} has partitions 0-{len(parts) - 1}")
        return chosen

    async def _check_integration(
        self, conn: AsyncConnection, fanout: Fanout, chain: TenantChain, integration_id: str
    ) -> None:
        state = await dispatch_queries.integration_state(conn, integration_id, chain.ids)
        if state is None:
            raise NotFoundError(f"integration {integration_id} not found")
        if not state:
            raise ConflictError(f"integration {integration_id} is disabled; enable it first")
        active = await fanout.catalog.of(conn, chain.ids)
        named = next((s for s in active if s.id == integration_id), None)
        if named is None or not applies_to(named, chain):
            _fail(
                "integrationId",
                f"integration {integration_id} does not apply to the events of "
                f"{chain.entity_id} (its scope is ENTITY_ONLY or the entity is excluded)",
            )

    def _check_size(self, total: int) -> None:
        if total > self.max_events:
            _fail(
                "fromOffset",
                f"the range holds {total} events; one replay takes at most {self.max_events}: "
                "narrow it (partition, offsets, times or types) or replay it in parts",
            )


def _check(request: ReplayRequest) -> None:
    by_offset = request.from_offset is not None or request.to_offset is not None
    by_time = request.from_time is not None or request.to_time is not None
    if by_offset and by_time:
        _fail("fromTime", "give an offset range or a time range, not both")
    if not by_offset and not by_time:
        _fail("fromOffset", "give an offset range (fromOffset/toOffset) or a time range")
    if (
        request.from_offset is not None
        and request.to_offset is not None
        and request.from_offset > request.to_offset
    ):
        _fail("toOffset", "must not be below fromOffset")
    if (
        request.from_time is not None
        and request.to_time is not None
        and request.from_time > request.to_time
    ):
        _fail("toTime", "must not be before fromTime")
    if len(request.event_types) > MAX_TYPE_PATTERNS:
        _fail("eventTypes", f"at most {MAX_TYPE_PATTERNS} patterns")
    for index, pattern in enumerate(request.event_types):
        if not _TYPE_PATTERN.match(pattern):
            _fail(
                ("eventTypes", index),
                "must be an event type, '*' or a prefix pattern such as 'order.*'",
            )


def _type_filter(patterns: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Exact names and prefixes for the log's query; ``*`` (or nothing) keeps every type."""
    if not patterns or "*" in patterns:
        return (), ()
    exact = tuple(p for p in patterns if not p.endswith(".*"))
    prefixes = tuple(p[:-1] for p in patterns if p.endswith(".*"))
    return exact, prefixes


def _upper(asked: int | None, last: int) -> int:
    return last if asked is None else min(asked, last)


def _fail(field: str | tuple[str, int], message: str) -> NoReturn:
    loc = ("body", *field) if isinstance(field, tuple) else ("body", field)
    where = ".".join(str(p) for p in loc[1:])
    raise ValidationError(f"{where}: {message}", problems=[FieldProblem(loc, message)])
