"""Live subscriptions to the event log: new events fanned out to SSE and WebSocket clients.

Events reach the hub two ways: this process's appends (an ``EventLog`` listener, called
after each commit) and, on PostgreSQL, every node's appends (``pg_notify`` on ``jb_events``
announcing offset ranges, which the hub reads back once and fans out). Both may report the
same event, and either may report a partition's offsets out of order (two appends can finish
in another order than they committed). So every subscription keeps a cursor per (stream,
partition) and takes only the next offset: an older one is a duplicate, a newer one reveals a
gap, which the subscription fills by reading the log ("catching up"), exactly as it reads the
backlog of a resumed subscription. It registers for live events before reading anything, so
nothing committed in between is missed, and the cursor drops what both paths report.

Memory stays bounded. Each subscription has a bounded queue: a live event that does not fit
closes it ("slow consumer: N events behind") and the client resumes from its last id. The
backlog is read page by page only as fast as the client takes it. While catching up, live
events are held up to half the queue size; beyond that only their position is kept and they
are read back from the log.

An id (SSE ``id:``, WebSocket ``id``) is the subscription's whole cursor at that event, e.g.
``default@0:17,1:4;orders@2:9``: the last offset handled per partition of every stream the
subscription covers (offsets of events filtered out by type count as handled). A partition
or stream missing from it has been handled from the start. It stays bounded by the number of
partitions the subscription's stream patterns cover.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import StoredEvent
from junctionbox.errors import RateLimitedError, ValidationError
from junctionbox.services.event_log import EVENTS_CHANNEL, EventLog
from junctionbox.store.database import Database
from junctionbox.store.pg_listener import PgListener, asyncpg_dsn
from junctionbox.store.queries import events as queries

log = logging.getLogger(__name__)

Cursor = dict[str, dict[int, int]]  # stream -> partition -> last offset handled
Layout = dict[str, dict[int, tuple[int, int]]]  # stream -> partition -> (before first, last)
Start = Literal["earliest", "latest"]
EMPTY_CURSOR = "-"  # the cursor of a subscription that has handled nothing yet
MAX_CURSOR_CHARS = 16_384
MAX_PATTERNS = 32
MAX_PATTERN_CHARS = 200
_STREAM = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
_SECTION = re.compile(rf"^({_STREAM})@(\d{{1,4}}:\d{{1,19}}(?:,\d{{1,4}}:\d{{1,19}})*)$")
_STREAM_PATTERN = re.compile(r"^[A-Za-z0-9._*-]+$")
_TYPE_PATTERN = re.compile(r"^\S+$")


# --- cursors and patterns ---


def encode_cursor(cursor: Cursor) -> str:
    sections = (_section(stream, cursor[stream]) for stream in sorted(cursor))
    return ";".join(s for s in sections if s) or EMPTY_CURSOR


def _section(stream: str, offsets: dict[int, int]) -> str:
    pairs = ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()) if o >= 0)
    return f"{stream}@{pairs}" if pairs else ""


def parse_cursor(text: str) -> Cursor:
    """A cursor from an id this module produced; ``ValidationError`` if it is not one."""
    text = text.strip()
    if len(text) > MAX_CURSOR_CHARS:
        raise ValidationError(f"lastEventId is longer than {MAX_CURSOR_CHARS} characters")
    cursor: Cursor = {}
    if text in ("", EMPTY_CURSOR):
        return cursor
    for section in text.split(";"):
        match = _SECTION.match(section)
        if match is None:
            raise ValidationError(
                "lastEventId is not an id this server sent "
                "(expected stream@partition:offset,...;stream@...)"
            )
        offsets = cursor.setdefault(match.group(1), {})
        for pair in match.group(2).split(","):
            partition, offset = (int(n) for n in pair.split(":"))
            offsets[partition] = max(offset, offsets.get(partition, -1))
    return cursor


class Patterns:
    """Names matched against ``*`` wildcards (``order.*``, ``*``); any pattern may match."""

    def __init__(self, patterns: Iterable[str], *, what: str, syntax: re.Pattern[str]) -> None:
        items = tuple(dict.fromkeys(p.strip() for p in patterns if p.strip())) or ("*",)
        if len(items) > MAX_PATTERNS:
            raise ValidationError(f"at most {MAX_PATTERNS} {what} patterns")
        for item in items:
            if len(item) > MAX_PATTERN_CHARS or not syntax.match(item):
                raise ValidationError(f"invalid {what} pattern {item[:MAX_PATTERN_CHARS]!r}")
        self.patterns = items
        self.any = "*" in items
        self._exact = frozenset(p for p in items if "*" not in p)
        wild = ["(?:" + ".*".join(map(re.escape, p.split("*"))) + ")" for p in items if "*" in p]
        self._wild = re.compile("|".join(wild), re.DOTALL) if wild else None

    @classmethod
    def streams(cls, patterns: Iterable[str]) -> Patterns:
        return cls(patterns, what="stream", syntax=_STREAM_PATTERN)

    @classmethod
    def types(cls, patterns: Iterable[str]) -> Patterns:
        return cls(patterns, what="type", syntax=_TYPE_PATTERN)

    def match(self, name: str) -> bool:
        if self.any or name in self._exact:
            return True
        return self._wild is not None and self._wild.fullmatch(name) is not None


# --- subscriptions ---


class CloseKind(StrEnum):
    SLOW = "slow"  # the client did not keep up; it should resume from its last id
    SHUTDOWN = "shutdown"  # this server is stopping; resume on another (or later)
    ERROR = "error"  # the log could not be read; resume later
    CLIENT = "client"  # the client went away


class SubscriptionClosed(Exception):
    def __init__(self, kind: CloseKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event for the client, with the id that resumes right after it."""

    event: StoredEvent
    id: str


class Subscription:
    """One client's view of its tenant's log: filters, cursors and a bounded queue.

    The hub offers it every event of its tenant; it keeps those of its streams, in offset
    order per partition, once each, and queues those of its types.
    """

    def __init__(
        self,
        hub: LiveHub,
        org_id: int,
        streams: Patterns,
        types: Patterns,
        *,
        queue_size: int,
        queue_bytes: int,
    ) -> None:
        self.org_id = org_id
        self.streams = streams
        self.types = types
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue(queue_size)
        self.queue_bytes = queue_bytes  # a budget of data bytes too, as events may be large
        self.queued_bytes = 0
        self.peak = 0  # the most deliveries ever waiting at once (never above queue_size)
        self.closed: SubscriptionClosed | None = None
        self.initial_id = EMPTY_CURSOR
        self._hub = hub
        self._cursor: Cursor = {}
        self._encoded: str | None = None
        self._covers: dict[str, bool] = {}
        self._catching_up = True
        self._rescan = False
        self._held: list[StoredEvent] = []
        self._held_bytes = 0
        self._marks: dict[tuple[str, int], int] = {}
        self._room = asyncio.Event()
        self._putting = False  # a backlog delivery is waiting for room (the cursor is past it)
        self._task: asyncio.Task[None] | None = None

    # - what the hub asks -

    @property
    def catching_up(self) -> bool:
        return self._catching_up

    def covers(self, stream: str) -> bool:
        known = self._covers.get(stream)
        if known is None:
            known = self._covers[stream] = self.streams.match(stream)
        return known

    def position(self, stream: str, partition: int) -> int:
        return self._cursor.get(stream, {}).get(partition, -1)

    def offer(self, event: StoredEvent) -> None:
        """A live event (maybe one already handled, maybe one past a gap)."""
        if self.closed is not None or not self.covers(event.stream):
            return
        if self._catching_up:
            self._hold(event)
            return
        last = self.position(event.stream, event.partition)
        if event.offset <= last:
            return
        if event.offset > last + 1:
            self._hold(event)
            self.resync()
            return
        delivery = self._advance(event)
        if delivery is not None:
            self._queue_live(delivery)

    def announced(self, stream: str, partition: int, last: int) -> None:
        """Events up to ``last`` exist that this (catching-up) subscription has not seen."""
        if self.closed is None and self._catching_up:
            key = (stream, partition)
            self._marks[key] = max(last, self._marks.get(key, -1))

    def resync(self) -> None:
        """Read the log again from the cursors (after a gap or a lost LISTEN connection)."""
        if self.closed is not None:
            return
        if self._catching_up:
            self._rescan = True
            return
        self._catching_up = True
        self._task = self._hub.spawn(self._hub.catch_up(self), f"jb-live-catch-up-{self.org_id}")

    # - what the consumer calls -

    async def next_batch(self, wait_seconds: float, limit: int = 100) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting at most ``wait_seconds`` for the first;
        ``[]`` when none came. Raises ``SubscriptionClosed`` once closed."""
        if self.closed is not None:
            raise self.closed
        try:
            async with asyncio.timeout(wait_seconds):
                item = await self.queue.get()
        except TimeoutError:
            return []
        batch: list[Delivery] = []
        while item is not None:
            batch.append(item)
            self.queued_bytes -= item.event.size
            if len(batch) >= limit or self.queue.empty():
                break
            item = self.queue.get_nowait()
        self._room.set()
        if item is None and not batch:
            raise self.closed or SubscriptionClosed(CloseKind.CLIENT, "closed")
        return batch

    def idle_id(self) -> str | None:
        """The id to resume from when everything queued has been taken, else None (heartbeats
        carry it, so a client whose events were all filtered out by type stays current)."""
        idle = self.queue.empty() and not self._putting and self.closed is None
        return self._id() if idle else None

    def close(self, kind: CloseKind = CloseKind.CLIENT, reason: str = "closed") -> None:
        """Close at once: queued deliveries are dropped (the client resumes from its last
        id), the consumer is woken and the hub forgets this subscription."""
        if self.closed is not None:
            return
        self.closed = SubscriptionClosed(kind, reason)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._held.clear()
        self._held_bytes = self.queued_bytes = 0
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        self._room.set()
        self._hub.forget(self)

    # - catching up (driven by the hub's task) -

    def begin(self, cursor: Cursor) -> None:
        if self.closed is not None:  # the hub stopped meanwhile; the consumer will see why
            return
        self._cursor = {stream: dict(offsets) for stream, offsets in cursor.items()}
        self.initial_id = self._id()
        self._task = self._hub.spawn(self._hub.catch_up(self), f"jb-live-catch-up-{self.org_id}")

    def announced_so_far(self) -> dict[tuple[str, int], int]:
        """The announced positions now, taken before reading the layout ``clamp`` gets."""
        return dict(self._marks)

    def clamp(self, layout: Layout, announced_before: dict[tuple[str, int], int]) -> None:
        """Fit the cursors to what the log holds. One past its end (a forged id, or one from
        before a stream was deleted and made again) comes back to it, so that new events are
        not taken for old; one before what retention kept moves up to it (those events are
        gone). Announced positions the log no longer holds are forgotten, so that catching
        up does not wait for them forever; but only those announced before the layout was
        read: one announced since may have committed after the read's snapshot, and is
        still to come (the next scan judges it)."""
        for stream in [s for s in self._cursor if s not in layout]:
            del self._cursor[stream]
            self._encoded = None
        for stream, parts in layout.items():
            for partition, (floor, last) in parts.items():
                position = self.position(stream, partition)
                if not floor <= position <= last:
                    self._set(stream, partition, min(max(position, floor), last))
        for (stream, partition), mark in announced_before.items():
            if self._marks.get((stream, partition)) == mark:
                _, last = layout.get(stream, {}).get(partition, (-1, -1))
                self._marks[(stream, partition)] = min(mark, last)

    async def take_backlog(self, event: StoredEvent) -> None:
        """An event read from the log: waits for room rather than dropping the client."""
        if event.offset <= self.position(event.stream, event.partition):
            return
        delivery = self._advance(event)
        if delivery is None:
            return
        self._putting = True
        try:
            while not self._fits(event.size):
                self._room.clear()
                await self._room.wait()
            await self.queue.put(delivery)
        finally:
            self._putting = False
        self.queued_bytes += event.size
        self.peak = max(self.peak, self.queue.qsize())

    async def wait_room(self) -> None:
        """Until the queue is at most half full: going live with a full queue of backlog
        would drop a client that is keeping up."""
        while (
            self.queue.qsize() > self.queue.maxsize // 2
            or self.queued_bytes > self.queue_bytes // 2
        ):
            self._room.clear()
            await self._room.wait()

    def try_go_live(self) -> bool:
        """Apply the held live events and switch to live delivery, unless some announced or
        held event is still unread (then the caller scans again). Never awaits, so no live
        event can slip between the last read and the switch."""
        held, self._held = sorted(self._held, key=_order), []
        self._held_bytes = 0
        for event in held:
            last = self.position(event.stream, event.partition)
            if event.offset == last + 1:
                delivery = self._advance(event)
                if delivery is not None:
                    self._queue_live(delivery)
            elif event.offset > last:
                self.announced(event.stream, event.partition, event.offset)
        rescan, self._rescan = self._rescan, False
        behind = any(self.position(s, p) < last for (s, p), last in self._marks.items())
        if rescan or behind or self.closed is not None:
            return False
        self._marks.clear()
        self._catching_up = False
        return True

    # - internals -

    def _hold(self, event: StoredEvent) -> None:
        room = self.queue.maxsize - self.queue.maxsize // 2
        budget = self.queue_bytes - self.queue_bytes // 2
        if len(self._held) < room and self._held_bytes + event.size <= budget:
            self._held.append(event)
            self._held_bytes += event.size
        else:
            self.announced(event.stream, event.partition, event.offset)

    def _advance(self, event: StoredEvent) -> Delivery | None:
        self._set(event.stream, event.partition, event.offset)
        if not self.types.match(event.type):
            return None
        return Delivery(event, self._id())

    def _queue_live(self, delivery: Delivery) -> None:
        if self.queue.full() or not self._fits(delivery.event.size):
            behind = self.queue.qsize() + 1
            self.close(CloseKind.SLOW, f"slow consumer: {behind} events behind")
            return
        self.queue.put_nowait(delivery)
        self.queued_bytes += delivery.event.size
        self.peak = max(self.peak, self.queue.qsize())

    def _fits(self, size: int) -> bool:
        """Whether the byte budget takes an event this big (always, into an empty queue:
        one event larger than the budget still gets through)."""
        return self.queued_bytes + size <= self.queue_bytes or self.queue.empty()

    def _set(self, stream: str, partition: int, offset: int) -> None:
        self._cursor.setdefault(stream, {})[partition] = offset
        self._encoded = None

    def _id(self) -> str:
        if self._encoded is None:
            self._encoded = encode_cursor(self._cursor)
        return self._encoded


def _order(event: StoredEvent) -> tuple[str, int, int]:
    return (event.stream, event.partition, event.offset)


# --- the hub ---


class LiveHub:
    """Every live subscription of this process, fed by local appends and PostgreSQL NOTIFY."""

    def __init__(
        self,
        db: Database,
        event_log: EventLog,
        *,
        queue_size: int = 1000,
        queue_bytes: int = 16 * 1024 * 1024,
        heartbeat_seconds: float = 15.0,
        page_size: int = 500,
        max_per_tenant: int = 100,
    ) -> None:
        if queue_size < 2:
            raise ValueError("queue_size must be at least 2")
        self.db = db
        self.event_log = event_log
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.heartbeat_seconds = heartbeat_seconds
        self.page_size = page_size
        self.max_per_tenant = max_per_tenant
        self._by_org: dict[int, set[Subscription]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._announced: dict[tuple[int, str, int], tuple[int, int]] = {}
        self._wake = asyncio.Event()
        self._listener: PgListener | None = None
        self._pump: asyncio.Task[None] | None = None
        self._started = False

    # - lifecycle -

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Hear local appends and, on PostgreSQL, LISTEN for every node's. Waits up to
        ``wait_seconds`` for the LISTEN; if the database is not there yet it keeps trying."""
        if self._started:
            return
        self._started = True
        self.event_log.listeners.append(self._on_appended)
        if self.db.dialect != "postgresql":
            return
        self._pump = asyncio.create_task(self._pump_announcements(), name="jb-live-pump")
        self._listener = PgListener(
            asyncpg_dsn(self.db.url), EVENTS_CHANNEL, self._on_notify, self._on_listening
        )
        if not await self._listener.start(wait_seconds):
            log.warning("live subscriptions: LISTEN %s not in place yet; retrying", EVENTS_CHANNEL)

    async def stop(self) -> None:
        """Close every subscription ("server shutting down") and stop listening."""
        self.close_all()
        if self._on_appended in self.event_log.listeners:
            self.event_log.listeners.remove(self._on_appended)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        pump, self._pump = self._pump, None
        tasks = [t for t in (pump, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._started = False

    def close_all(
        self, kind: CloseKind = CloseKind.SHUTDOWN, reason: str = "server shutting down"
    ) -> None:
        """Close every subscription now; call it before the server drains its connections,
        or open event streams hold a graceful shutdown for its whole grace period."""
        for subscriptions in list(self._by_org.values()):
            for subscription in list(subscriptions):
                subscription.close(kind, reason)

    @property
    def listening(self) -> bool:
        """Whether other nodes' appends reach this process (always False on SQLite)."""
        return self._listener is not None and self._listener.connected.is_set()

    def count(self, org_id: int | None = None) -> int:
        return len(self.subscriptions(org_id))

    def subscriptions(self, org_id: int | None = None) -> list[Subscription]:
        """The open subscriptions (of one tenant), e.g. for metrics."""
        if org_id is not None:
            return list(self._by_org.get(org_id, ()))
        return [s for subscriptions in self._by_org.values() for s in subscriptions]

    # - subscribing -

    async def subscribe(
        self,
        org_id: int,
        *,
        streams: Iterable[str] = ("*",),
        types: Iterable[str] = ("*",),
        resume: Cursor | None = None,
        start: Start = "latest",
    ) -> Subscription:
        """A subscription to the tenant's events from ``resume`` (a parsed id), or else from
        the ``start`` of the log or its current end. The caller must ``close()`` it."""
        stream_patterns, type_patterns = Patterns.streams(streams), Patterns.types(types)
        if self.count(org_id) >= self.max_per_tenant:
            raise RateLimitedError(
                f"this tenant already has {self.max_per_tenant} live subscriptions"
            )
        subscription = Subscription(
            self,
            org_id,
            stream_patterns,
            type_patterns,
            queue_size=self.queue_size,
            queue_bytes=self.queue_bytes,
        )
        self._by_org.setdefault(org_id, set()).add(subscription)  # live first, then read
        try:
            if resume is not None:
                cursor = {s: o for s, o in resume.items() if stream_patterns.match(s)}
            elif start == "latest":
                cursor = await self._ends(org_id, stream_patterns)
            else:
                cursor = {}
        except BaseException:
            subscription.close()
            raise
        subscription.begin(cursor)
        return subscription

    def forget(self, subscription: Subscription) -> None:
        subscriptions = self._by_org.get(subscription.org_id)
        if subscriptions is not None:
            subscriptions.discard(subscription)
            if not subscriptions:
                del self._by_org[subscription.org_id]

    async def _ends(self, org_id: int, patterns: Patterns) -> Cursor:
        async with self.db.read() as conn:
            layout = await _layout(conn, org_id, patterns)
        return {s: {p: last for p, (_, last) in parts.items()} for s, parts in layout.items()}

    # - catching up -

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task of the hub's (cancelled by ``stop``), in a context of its own: not the
        request or append that happened to trigger it."""
        task = asyncio.create_task(work, name=name, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def catch_up(self, subscription: Subscription) -> None:
        """Read the log from the subscription's cursors until it can go live."""
        try:
            while subscription.closed is None:
                await self._scan(subscription)
                await subscription.wait_room()
                if subscription.try_go_live():
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live subscription could not read the event log")
            subscription.close(CloseKind.ERROR, "event log unavailable; resume later")

    async def _scan(self, subscription: Subscription) -> None:
        org_id = subscription.org_id
        announced = subscription.announced_so_far()
        async with self.db.read() as conn:
            layout = await _layout(conn, org_id, subscription.streams)
        subscription.clamp(layout, announced)
        for stream, parts in layout.items():
            for partition, (_, last) in parts.items():
                while (after := subscription.position(stream, partition)) < last:
                    async with self.db.read() as conn:  # released before waiting for room
                        page = await queries.read_after(
                            conn, org_id, stream, partition, after, self.page_size
                        )
                    for event in page:
                        await subscription.take_backlog(event)
                    if len(page) < self.page_size:
                        break

    # - live events -

    def _on_appended(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            subscriptions = self._by_org.get(event.org_id)
            if subscriptions:
                for subscription in tuple(subscriptions):
                    subscription.offer(event)

    def _on_notify(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            org_id, stream, partition = int(message["o"]), str(message["s"]), int(message["p"])
            first, last = int(message["f"]), int(message["l"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring malformed %s notification", EVENTS_CHANNEL)
            return
        if org_id not in self._by_org:
            return
        key = (org_id, stream, partition)
        seen = self._announced.get(key)  # coalesced: bounded by the partitions announced
        self._announced[key] = (min(first, seen[0]), max(last, seen[1])) if seen else (first, last)
        self._wake.set()

    def _on_listening(self) -> None:
        # Notifications sent while the connection was down are lost: read the log again.
        for subscriptions in list(self._by_org.values()):
            for subscription in list(subscriptions):
                subscription.resync()

    async def _pump_announcements(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            announced, self._announced = self._announced, {}
            for (org_id, stream, partition), (first, last) in announced.items():
                try:
                    await self._fetch(org_id, stream, partition, first, last)
                except Exception:
                    log.exception("live subscriptions: could not read announced events")
                    for subscription in self._interested(org_id, stream):
                        subscription.resync()

    def _interested(self, org_id: int, stream: str) -> list[Subscription]:
        return [s for s in self._by_org.get(org_id, ()) if s.covers(stream)]

    async def _fetch(self, org_id: int, stream: str, partition: int, first: int, last: int) -> None:
        """Read an announced range once for every live subscription that lacks part of it."""
        behind = []
        for subscription in self._interested(org_id, stream):
            if subscription.catching_up:
                subscription.announced(stream, partition, last)
            elif subscription.position(stream, partition) < last:
                behind.append(subscription)
        if not behind:
            return
        after = max(first - 1, min(s.position(stream, partition) for s in behind))
        while after < last:
            async with self.db.read() as conn:
                page = await queries.read_after(
                    conn, org_id, stream, partition, after, min(self.page_size, last - after)
                )
            if not page:
                return
            for event in page:
                for subscription in behind:
                    subscription.offer(event)
            after = page[-1].offset


async def _layout(conn: AsyncConnection, org_id: int, patterns: Patterns) -> Layout:
    """For every partition of the streams the patterns cover: the offset just before the
    first that retention kept, and the last offset (-1 and -1 when it never had any)."""
    layout: Layout = {}
    for stream in await queries.list_streams(conn, org_id):
        if patterns.match(stream.name):
            parts = await queries.partitions(conn, org_id, stream.name)
            layout[stream.name] = {
                p.partition: (p.first_offset - 1, p.next_offset - 1) for p in parts
            }
    return layout
