"""Appending to the durable, partitioned, per-tenant event log.

Every way in (the publish API, the webhook receiver, the SQL table source) ends here, inside
the caller's write transaction, so that what the caller records alongside (an idempotent
response, a source checkpoint) commits with the events or not at all. Listeners (live
subscriptions) hear about events only after the commit.

Offsets: each partition has a counter row; reserving offsets updates it, which on PostgreSQL
locks the row until commit, so a partition's offsets become visible strictly in order and a
reader that has seen offset n never later finds an uncommitted n-1 appearing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import text
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
from junctionbox.store.database import Database
from junctionbox.store.queries import events as queries
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
# PostgreSQL NOTIFY channel announcing appended offset ranges to other nodes (delivered on
# commit, dropped on rollback): payload ``{"o": org, "s": stream, "p": partition, "f": first,
# "l": last}``.
EVENTS_CHANNEL = "jb_events"
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
        named = [_identified(draft, stream) for draft in drafts]
        supplied = [d.event_id for d in drafts if d.event_id is not None]
        known = await queries.find_ids(conn, org_id, supplied) if supplied else {}
        fresh, repeats = _first_of_each(named, known)
        counts = await self._streams(conn, org_id, {d.stream or "" for d in fresh})
        stored = await self._offsets(conn, org_id, _place(fresh, counts), received_at)
        if stored:
            await queries.insert_events(conn, [queries.event_row(e) for e in stored])
            await self._announce(conn, stored)
        where = {(e.source, e.event_id): e for e in stored}
        results = [
            _result(draft, known, where, repeat=index in repeats)
            for index, draft in enumerate(named)
        ]
        return results, stored

    async def _announce(self, conn: AsyncConnection, stored: list[StoredEvent]) -> None:
        if conn.dialect.name != "postgresql":
            return
        ranges: dict[tuple[str, int], list[int]] = {}
        for event in stored:
            ranges.setdefault((event.stream, event.partition), []).append(event.offset)
        for (stream, partition), offsets in ranges.items():
            message = {"o": stored[0].org_id, "s": stream, "p": partition}
            message |= {"f": min(offsets), "l": max(offsets)}
            await conn.execute(
                text("SELECT pg_notify(:channel, :message)"),
                {"channel": EVENTS_CHANNEL, "message": orjson.dumps(message).decode()},
            )

    def notify(self, stored: Sequence[StoredEvent]) -> None:
        if not stored:
            return
        for listener in self.listeners:
            try:
                listener(stored)
            except Exception:  # a listener must never fail an acknowledged append
                log.exception("event listener failed")

    async def _streams(self, conn: AsyncConnection, org_id: int, names: set[str]) -> dict[str, int]:
        if not names:
            return {}
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

    async def _offsets(
        self,
        conn: AsyncConnection,
        org_id: int,
        placed: dict[tuple[str, int], list[EventDraft]],
        received_at: datetime,
    ) -> list[StoredEvent]:
        """The drafts as events of the log, at offsets reserved partition by partition."""
        stored: list[StoredEvent] = []
        for (stream, partition), drafts in sorted(placed.items()):
            size = sum(len(d.payload) for d in drafts)
            first = await queries.allocate_offsets(
                conn, org_id, stream, partition, len(drafts), size
            )
            stored.extend(
                _stored(org_id, stream, partition, first + index, draft, received_at)
                for index, draft in enumerate(drafts)
            )
        return stored


def _identified(draft: EventDraft, stream: str | None) -> EventDraft:
    """The draft with its id, source and stream filled in."""
    changes: dict[str, Any] = {}
    if draft.event_id is None:
        changes["event_id"] = new_id("evt")
    if draft.source is None:
        changes["source"] = DEFAULT_SOURCE
    if draft.stream is None:
        changes["stream"] = stream or DEFAULT_STREAM
    return dataclasses.replace(draft, **changes) if changes else draft


def _first_of_each(
    named: list[EventDraft], known: dict[tuple[str, str], Any]
) -> tuple[list[EventDraft], set[int]]:
    """Drafts to store (not already logged, the first of repeats within the batch) and the
    indexes of the repeats."""
    seen: set[tuple[str, str]] = set(known)
    fresh, repeats = [], set()
    for index, draft in enumerate(named):
        key = (draft.source or "", draft.event_id or "")
        if key in seen:
            repeats.add(index)
            continue
        seen.add(key)
        fresh.append(draft)
    return fresh, repeats


def _place(
    fresh: list[EventDraft], counts: dict[str, int]
) -> dict[tuple[str, int], list[EventDraft]]:
    placed: dict[tuple[str, int], list[EventDraft]] = {}
    for draft in fresh:
        stream = draft.stream or DEFAULT_STREAM
        key = draft.partition_key if draft.partition_key is not None else draft.event_id or ""
        placed.setdefault((stream, partition_for(key, counts[stream])), []).append(draft)
    return placed


def _stored(
    org_id: int,
    stream: str,
    partition: int,
    offset: int,
    draft: EventDraft,
    received_at: datetime,
) -> StoredEvent:
    return StoredEvent(
        org_id=org_id,
        stream=stream,
        partition=partition,
        offset=offset,
        event_id=draft.event_id or "",
        source=draft.source or DEFAULT_SOURCE,
        type=draft.type,
        subject=draft.subject,
        time=draft.time,
        received_at=received_at,
        partition_key=draft.partition_key,
        data_content_type=draft.data_content_type,
        data_schema=draft.data_schema,
        extensions=draft.extensions,
        payload=draft.payload,
    )


def _result(
    draft: EventDraft,
    known: dict[tuple[str, str], tuple[str, int, int]],
    stored: dict[tuple[str, str], StoredEvent],
    *,
    repeat: bool,
) -> AppendResult:
    """Where the draft's event is; a repeat within one batch points at its first occurrence."""
    key = (draft.source or "", draft.event_id or "")
    if key in known:
        stream, partition, offset = known[key]
        return AppendResult(key[1], stream, partition, offset, duplicate=True)
    event = stored[key]
    return AppendResult(key[1], event.stream, event.partition, event.offset, duplicate=repeat)
