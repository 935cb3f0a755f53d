"""Appending to the durable, partitioned, per-tenant event log.

Every way in (the publish API, the webhook receiver, the SQL table source) ends here, inside
the caller's write transaction, so that what the caller records alongside (an idempotent
response, a source checkpoint) commits with the events or not at all. Listeners (live
subscriptions) hear about events only after the commit.

The group commit's appends (``append_together``) record nothing alongside: when their ids
are all made here and their streams known, they commit below SQLAlchemy
(``queries.append_committed``: one statement on PostgreSQL; one call on aiosqlite's thread,
where the WAL checkpoints happen, see ``store.sqlite_inline``), which halves a small write's
CPU (SQLite 0.80 -> 0.42 ms, PostgreSQL 0.76 -> 0.35 ms for two events, in process).

Offsets: each partition has a counter row; reserving offsets updates it, which on PostgreSQL
locks the row until commit, so a partition's offsets become visible strictly in order and a
reader that has seen offset n never later finds an uncommitted n-1 appearing.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import (
    DEFAULT_SOURCE,
    DEFAULT_STREAM,
    AppendResult,
    EventDraft,
    StoredEvent,
)
from junctionbox.domain.ids import new_id
from junctionbox.domain.partitioning import partition_for
from junctionbox.errors import ConflictError
from junctionbox.services.read_cache import ReadCache
from junctionbox.store.database import Database
from junctionbox.store.queries import events as queries
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
# PostgreSQL NOTIFY channel announcing appended offset ranges to other nodes (delivered on
# commit, dropped on rollback): payload ``{"o": org, "s": stream, "p": partition, "f": first,
# "l": last}``.
EVENTS_CHANNEL = "jb_events"
STREAM_TTL = 5.0
Listener = Callable[[Sequence[StoredEvent]], None]


class EventLog:
    def __init__(
        self,
        db: Database,
        *,
        default_partitions: int = 4,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.default_partitions = default_partitions
        self.clock = clock
        self.listeners: list[Listener] = []
        # (org, stream) -> partition count, so that an append need not read it: partitions
        # are only ever added, and an append that finds its partition gone (the stream was
        # deleted) forgets the count and retries. Streams given partitions elsewhere get
        # events in the new partitions STREAM_TTL seconds later at most.
        self._partition_counts: ReadCache[tuple[int, str], int] = ReadCache(STREAM_TTL)

    async def append(
        self, org_id: int, drafts: Sequence[EventDraft], *, stream: str | None = None
    ) -> list[AppendResult]:
        """Append in a transaction of its own, then tell the listeners."""

        async def work(conn: AsyncConnection) -> tuple[list[AppendResult], list[StoredEvent]]:
            return await self.append_in(conn, org_id, drafts, stream=stream)

        results, stored = await self.write_retrying(work)
        self.notify(stored)
        return results

    async def write_retrying(
        self, work: Callable[[AsyncConnection], Awaitable[T]], attempts: int = 3
    ) -> T:
        """Run ``work`` in a write transaction, again if a concurrent writer logged the same
        event id first (the retry then finds it and answers it as a duplicate)."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.db.write() as conn:
                    return await work(conn)
            except ConflictError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    async def append_in(
        self,
        conn: AsyncConnection,
        org_id: int,
        drafts: Sequence[EventDraft],
        *,
        stream: str | None = None,
    ) -> tuple[list[AppendResult], list[StoredEvent]]:
        """Append in the caller's transaction. Returns a result per draft (in order) and the
        events newly stored, for ``notify`` once the caller has committed."""
        received_at = self.clock()
        named = _identified(drafts, stream or DEFAULT_STREAM)
        supplied = [d.event_id for d in drafts if d.event_id is not None]
        known = await queries.find_ids(conn, org_id, supplied) if supplied else {}
        # Ids made here are new and distinct: only supplied ids can repeat.
        fresh, firsts = _first_of_each(named, known) if supplied else (named, {})
        counts = await self._streams(conn, org_id, {n.stream for n in fresh})
        stored = await self._store(conn, org_id, _place(fresh, counts), received_at)
        results = [_result(name, known, firsts.get(index)) for index, name in enumerate(named)]
        return results, stored

    async def append_together(
        self, parts: Sequence[TenantDrafts]
    ) -> tuple[list[list[AppendResult]], list[StoredEvent]]:
        """Append each part in one write transaction (retried as ``write_retrying``
        retries). A result per draft, by part, and the events newly stored, for ``notify``
        once the caller has answered."""
        committed = await self._append_committed(parts)
        if committed is not None:
            return committed

        async def work(conn: AsyncConnection) -> tuple[list[list[AppendResult]], list[StoredEvent]]:
            results, stored_all = [], []
            for part in parts:
                found, stored = await self.append_in(
                    conn, part.org_id, part.drafts, stream=part.stream
                )
                results.append(found)
                stored_all.extend(stored)
            return results, stored_all

        return await self.write_retrying(work)

    async def _append_committed(
        self, parts: Sequence[TenantDrafts]
    ) -> tuple[list[list[AppendResult]], list[StoredEvent]] | None:
        """``append_together`` by ``queries.append_committed`` (a transaction below
        SQLAlchemy), when that applies (see ``_committed_plan``). None when it does not,
        and when a stream was deleted meanwhile (nothing was stored)."""
        plan = self._committed_plan(parts)
        if plan is None:
            return None
        named_parts, appends = plan
        stored: list[list[StoredEvent]] | None = []
        if appends:
            async with self.db.driver() as driver:
                stored = await queries.append_committed(
                    driver, self.db.engine.dialect, appends, announce_on=EVENTS_CHANNEL
                )
        if stored is None:  # a stream was deleted since its count was kept
            self._partition_counts.invalidate()
            return None
        results = [[_result(name, {}, None) for name in named] for named in named_parts]
        return results, [event for events in stored for event in events]

    def _committed_plan(
        self, parts: Sequence[TenantDrafts]
    ) -> tuple[list[list[_Named]], list[queries.TenantAppend]] | None:
        """Each part's drafts named and placed, when ``queries.append_committed`` can take
        them: every id is made here (a supplied one may be logged already, which takes a
        read), every stream's partition count is known, and on PostgreSQL the events are
        few. None otherwise."""
        if not self.db.is_sqlite and sum(len(p.drafts) for p in parts) > queries.COMMITTED_AT_MOST:
            return None
        if any(d.event_id is not None for part in parts for d in part.drafts):
            return None
        received_at = self.clock()
        named_parts, appends = [], []
        for part in parts:
            named = _identified(part.drafts, part.stream or DEFAULT_STREAM)
            names = {n.stream for n in named}
            counts = self._cached_counts(part.org_id, names)
            if len(counts) != len(names):
                return None
            named_parts.append(named)
            placed = _place(named, counts)
            if placed:
                appends.append(_tenant_append(part.org_id, placed, received_at))
        return named_parts, appends

    def notify(self, stored: Sequence[StoredEvent]) -> None:
        if not stored:
            return
        for listener in self.listeners:
            try:
                listener(stored)
            except Exception:  # a listener must never fail an acknowledged append
                log.exception("event listener failed")

    async def _streams(self, conn: AsyncConnection, org_id: int, names: set[str]) -> dict[str, int]:
        """The partition count of each stream, creating the streams that do not exist."""
        known = self._cached_counts(org_id, names)
        missing = names - known.keys()
        if not missing:
            return known
        generation = self._partition_counts.generation
        counts = await self._read_streams(conn, org_id, missing)
        for name, count in counts.items():
            self._partition_counts.put((org_id, name), count, generation)
        return known | counts

    def _cached_counts(self, org_id: int, names: set[str]) -> dict[str, int]:
        """The partition counts of those streams of ``names`` whose count is kept."""
        known: dict[str, int] = {}
        for name in names:
            hit = self._partition_counts.get((org_id, name))
            if hit is not None:
                known[name] = hit[0]
        return known

    async def _read_streams(
        self, conn: AsyncConnection, org_id: int, names: set[str]
    ) -> dict[str, int]:
        counts = await queries.partition_counts(conn, org_id, names)
        for name in names - counts.keys():
            now = self.clock()
            await queries.create_stream(
                conn,
                {
                    "org_id": org_id,
                    "name": name,
                    "description": None,
                    "partition_count": self.default_partitions,
                    "retention_seconds": None,
                    "retention_bytes": None,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        if names - counts.keys():
            counts = await queries.partition_counts(conn, org_id, names)
        return counts

    async def _store(
        self,
        conn: AsyncConnection,
        org_id: int,
        placed: dict[tuple[str, int], list[_Named]],
        received_at: datetime,
    ) -> list[StoredEvent]:
        """The drafts stored as events of the log, at offsets reserved partition by
        partition (in order, so that concurrent writers lock partitions in one order)."""
        if not placed:
            return []
        part = _tenant_append(org_id, placed, received_at)
        stored = await queries.append_events(
            conn, org_id, part.reservations, part.events_at, announce_on=EVENTS_CHANNEL
        )
        if stored is None:  # a stream was deleted since its count was kept
            self._partition_counts.invalidate()
            raise ConflictError("a stream changed meanwhile")  # write_retrying tries again
        return stored


def _tenant_append(
    org_id: int, placed: dict[tuple[str, int], list[_Named]], received_at: datetime
) -> queries.TenantAppend:
    """The reservations of ``placed`` (by stream and partition) and how its events are made
    of their first offsets (each named draft keeps its stored event)."""
    groups = sorted(placed.items())
    reservations = [
        queries.Reservation(stream, partition, len(names), sum(len(n.draft.payload) for n in names))
        for (stream, partition), names in groups
    ]

    def events_at(firsts: Sequence[int]) -> list[StoredEvent]:
        events = []
        for ((_, partition), names), first in zip(groups, firsts, strict=True):
            for index, name in enumerate(names):
                name.stored = _stored(org_id, partition, first + index, name, received_at)
                events.append(name.stored)
        return events

    return queries.TenantAppend(org_id, reservations, events_at)


@dataclass(frozen=True, slots=True)
class TenantDrafts:
    """A tenant's drafts to append, with the stream of those that name none."""

    org_id: int
    drafts: Sequence[EventDraft]
    stream: str | None = None


@dataclass(slots=True)
class _Named:
    """A draft with its id, source and stream decided (the draft itself is left as is)."""

    draft: EventDraft
    event_id: str
    source: str
    stream: str
    stored: StoredEvent | None = None  # once appended

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.event_id)


def _identified(drafts: Sequence[EventDraft], stream: str) -> list[_Named]:
    """Each draft with its id (new where it has none), source and stream filled in."""
    ids = iter(new_event_ids(sum(d.event_id is None for d in drafts)))
    return [
        _Named(
            d,
            d.event_id if d.event_id is not None else next(ids),
            d.source if d.source is not None else DEFAULT_SOURCE,
            d.stream if d.stream is not None else stream,
        )
        for d in drafts
    ]


# domain.ids' encoding for many ids at once. The ids of one call are a ULID and its
# successors (ULID's "monotonic" mode): the random part of the first has its low 20 bits
# cleared and each id adds its index there, so the ids share all but their last four
# characters (4 x 5 bits) and sort in the order given. ``new_id`` would cost a syscall and a
# (pure Python) base32 encoding per id.
_TO_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_LOW_BITS = 20


@functools.cache
def _suffixes(count: int) -> tuple[str, ...]:
    """The last four characters of the ids ``0 .. count - 1`` above a common part."""
    return tuple(
        "".join(_CROCKFORD[(n >> shift) & 31] for shift in (15, 10, 5, 0)) for n in range(count)
    )


def new_event_ids(count: int) -> list[str]:
    """``count`` new ``evt_`` ids in the format of ``new_id("evt")``, made at once."""
    if count == 0:
        return []
    if count > 1 << _LOW_BITS:
        return [new_id("evt") for _ in range(count)]
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | (int.from_bytes(os.urandom(10), "big") >> _LOW_BITS << _LOW_BITS)
    encoded = base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_TO_CROCKFORD).decode()
    common = "evt_" + encoded[:-4]
    return [common + suffix for suffix in _suffixes(_bucket(count))[:count]]


def _bucket(count: int) -> int:
    """``count`` rounded up to a power of two, so that few suffix tables are kept."""
    return 1 << (count - 1).bit_length()


def _first_of_each(
    named: list[_Named], known: dict[tuple[str, str], Any]
) -> tuple[list[_Named], dict[int, _Named]]:
    """Drafts to store (not already logged, the first of repeats within the batch) and, by
    index, the first occurrence of each repeat."""
    seen: dict[tuple[str, str], _Named] = {}
    fresh, firsts = [], {}
    for index, name in enumerate(named):
        key = name.key
        if key in known:
            continue
        first = seen.get(key)
        if first is not None:
            firsts[index] = first
            continue
        seen[key] = name
        fresh.append(name)
    return fresh, firsts


def _place(fresh: list[_Named], counts: dict[str, int]) -> dict[tuple[str, int], list[_Named]]:
    placed: dict[tuple[str, int], list[_Named]] = {}
    for name in fresh:
        partition_key = name.draft.partition_key
        key = partition_key if partition_key is not None else name.event_id
        placed.setdefault((name.stream, partition_for(key, counts[name.stream])), []).append(name)
    return placed


def _stored(
    org_id: int, partition: int, offset: int, name: _Named, received_at: datetime
) -> StoredEvent:
    draft = name.draft
    return StoredEvent(
        org_id,
        name.stream,
        partition,
        offset,
        name.event_id,
        name.source,
        draft.type,
        draft.subject,
        draft.time,
        received_at,
        draft.partition_key,
        draft.data_content_type,
        draft.data_schema,
        draft.extensions,
        draft.payload,
    )


def _result(
    name: _Named, known: dict[tuple[str, str], tuple[str, int, int]], first: _Named | None
) -> AppendResult:
    """Where the draft's event is; a repeat within one batch points at its first occurrence
    (``first``)."""
    if known:
        found = known.get(name.key)
        if found is not None:
            return AppendResult(name.event_id, *found, duplicate=True)
    event = (first or name).stored
    assert event is not None, "every fresh draft was stored"
    return AppendResult(
        name.event_id, event.stream, event.partition, event.offset, duplicate=first is not None
    )
