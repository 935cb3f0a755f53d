"""The event log: streams, their partitions' offset counters, and the events themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from junctionbox.domain.events import StoredEvent
from junctionbox.store.tables import event_streams, events, stream_partitions


@dataclass(frozen=True)
class StreamRecord:
    org_id: int
    name: str
    description: str | None
    partition_count: int
    retention_seconds: int | None
    retention_bytes: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PartitionRecord:
    partition: int
    next_offset: int
    first_offset: int
    event_count: int
    byte_count: int


def insert_ignoring_conflicts(conn: AsyncConnection, table: Any) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


# --- streams ---


async def get_stream(conn: AsyncConnection, org_id: int, name: str) -> StreamRecord | None:
    query = select(event_streams).where(
        event_streams.c.org_id == org_id, event_streams.c.name == name
    )
    row = (await conn.execute(query)).mappings().first()
    return StreamRecord(**row) if row else None


async def list_streams(conn: AsyncConnection, org_id: int) -> list[StreamRecord]:
    query = select(event_streams).where(event_streams.c.org_id == org_id)
    rows = await conn.execute(query.order_by(event_streams.c.name))
    return [StreamRecord(**row) for row in rows.mappings()]


async def partition_counts(
    conn: AsyncConnection, org_id: int, names: Iterable[str]
) -> dict[str, int]:
    query = select(event_streams.c.name, event_streams.c.partition_count).where(
        event_streams.c.org_id == org_id, event_streams.c.name.in_(list(names))
    )
    return {str(name): int(count) for name, count in (await conn.execute(query)).all()}


async def create_stream(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Create the stream and its partitions unless another writer just did."""
    await conn.execute(insert_ignoring_conflicts(conn, event_streams).values(**values))
    await add_partitions(conn, values["org_id"], values["name"], 0, values["partition_count"])


async def add_partitions(
    conn: AsyncConnection, org_id: int, stream: str, start: int, stop: int
) -> None:
    if stop <= start:
        return
    rows = [
        {
            "org_id": org_id,
            "stream": stream,
            "partition": number,
            "next_offset": 0,
            "first_offset": 0,
            "event_count": 0,
            "byte_count": 0,
        }
        for number in range(start, stop)
    ]
    await conn.execute(insert_ignoring_conflicts(conn, stream_partitions), rows)


async def update_stream(
    conn: AsyncConnection, org_id: int, name: str, values: dict[str, Any]
) -> None:
    await conn.execute(
        update(event_streams)
        .where(event_streams.c.org_id == org_id, event_streams.c.name == name)
        .values(**values)
    )


async def delete_stream(conn: AsyncConnection, org_id: int, name: str) -> int:
    """Remove the stream with its events, partitions and consumer offsets; events removed."""
    removed = await conn.execute(
        delete(events).where(events.c.org_id == org_id, events.c.stream == name)
    )
    await conn.execute(
        delete(event_streams).where(event_streams.c.org_id == org_id, event_streams.c.name == name)
    )
    return int(removed.rowcount or 0)


async def partitions(conn: AsyncConnection, org_id: int, stream: str) -> list[PartitionRecord]:
    query = (
        select(
            stream_partitions.c.partition,
            stream_partitions.c.next_offset,
            stream_partitions.c.first_offset,
            stream_partitions.c.event_count,
            stream_partitions.c.byte_count,
        )
        .where(stream_partitions.c.org_id == org_id, stream_partitions.c.stream == stream)
        .order_by(stream_partitions.c.partition)
    )
    return [PartitionRecord(**row) for row in (await conn.execute(query)).mappings()]


# --- appending ---


async def allocate_offsets(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, count: int, size: int
) -> int:
    """Reserve ``count`` offsets and return the first. The row lock this takes on PostgreSQL
    is held until commit, so offsets of one partition become visible in order."""
    statement = (
        update(stream_partitions)
        .where(
            stream_partitions.c.org_id == org_id,
            stream_partitions.c.stream == stream,
            stream_partitions.c.partition == partition,
        )
        .values(
            next_offset=stream_partitions.c.next_offset + count,
            event_count=stream_partitions.c.event_count + count,
            byte_count=stream_partitions.c.byte_count + size,
        )
        .returning(stream_partitions.c.next_offset)
    )
    return int((await conn.execute(statement)).scalar_one()) - count


async def find_ids(
    conn: AsyncConnection, org_id: int, event_ids: Sequence[str]
) -> dict[tuple[str, str], tuple[str, int, int]]:
    """Events already logged under these ids: (source, id) -> (stream, partition, offset)."""
    query = select(
        events.c.source, events.c.event_id, events.c.stream, events.c.partition, events.c.log_offset
    ).where(events.c.org_id == org_id, events.c.event_id.in_(list(event_ids)))
    return {
        (source, event_id): (stream, partition, offset)
        for source, event_id, stream, partition, offset in (await conn.execute(query)).all()
    }


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(events), rows)


# --- reading ---

_EVENT_COLUMNS = (
    events.c.org_id,
    events.c.stream,
    events.c.partition,
    events.c.log_offset,
    events.c.event_id,
    events.c.source,
    events.c.type,
    events.c.subject,
    events.c.event_time,
    events.c.received_at,
    events.c.partition_key,
    events.c.data_content_type,
    events.c.data_schema,
    events.c.extensions,
    events.c.payload,
)


def stored_event(row: Any) -> StoredEvent:
    return StoredEvent(
        org_id=row.org_id,
        stream=row.stream,
        partition=row.partition,
        offset=row.log_offset,
        event_id=row.event_id,
        source=row.source,
        type=row.type,
        subject=row.subject,
        time=row.event_time,
        received_at=row.received_at,
        partition_key=row.partition_key,
        data_content_type=row.data_content_type,
        data_schema=row.data_schema,
        extensions=row.extensions or {},
        payload=bytes(row.payload),
    )


def event_row(event: StoredEvent) -> dict[str, Any]:
    """The row of ``events`` that stores ``event`` (the inverse of ``stored_event``)."""
    return {
        "org_id": event.org_id,
        "stream": event.stream,
        "partition": event.partition,
        "log_offset": event.offset,
        "event_id": event.event_id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "event_time": event.time,
        "received_at": event.received_at,
        "partition_key": event.partition_key,
        "data_content_type": event.data_content_type,
        "data_schema": event.data_schema,
        "extensions": event.extensions or None,
        "payload": event.payload,
        "size": event.size,
    }


@dataclass(frozen=True)
class EventFilter:
    """What to read of one tenant's stream; every bound is optional and inclusive."""

    org_id: int
    stream: str
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()
    type_prefixes: tuple[str, ...] = ()

    def conditions(self) -> list[Any]:
        found: list[ColumnElement[bool]] = [
            events.c.org_id == self.org_id,
            events.c.stream == self.stream,
        ]
        bounds = (
            (self.partition, events.c.partition.__eq__),
            (self.from_offset, events.c.log_offset.__ge__),
            (self.to_offset, events.c.log_offset.__le__),
            (self.since, events.c.received_at.__ge__),
            (self.until, events.c.received_at.__le__),
        )
        found.extend(compare(value) for value, compare in bounds if value is not None)
        found.extend(self._type_conditions())
        return found

    def _type_conditions(self) -> list[Any]:
        if not self.types and not self.type_prefixes:
            return []
        options: list[ColumnElement[bool]] = [events.c.type.in_(self.types)] if self.types else []
        options += [
            events.c.type.startswith(prefix, autoescape=True) for prefix in self.type_prefixes
        ]
        return [or_(*options)]


def _order(by_time: bool) -> tuple[Any, ...]:
    if by_time:
        return (events.c.received_at, events.c.partition, events.c.log_offset)
    return (events.c.partition, events.c.log_offset)


async def read(
    conn: AsyncConnection, where: EventFilter, *, limit: int, skip: int = 0, by_time: bool = False
) -> list[StoredEvent]:
    query = (
        select(*_EVENT_COLUMNS)
        .where(and_(*where.conditions()))
        .order_by(*_order(by_time))
        .limit(limit)
        .offset(skip)
    )
    return [stored_event(row) for row in (await conn.execute(query)).all()]


async def count(conn: AsyncConnection, where: EventFilter) -> int:
    query = select(func.count()).select_from(events).where(and_(*where.conditions()))
    return int((await conn.execute(query)).scalar_one())


async def received_since(conn: AsyncConnection, org_id: int, stream: str, since: datetime) -> int:
    query = select(func.count()).where(
        events.c.org_id == org_id, events.c.stream == stream, events.c.received_at >= since
    )
    return int((await conn.execute(query)).scalar_one())


async def read_after(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, after: int, limit: int
) -> list[StoredEvent]:
    """Events of one partition with offsets greater than ``after``, in offset order."""
    query = (
        select(*_EVENT_COLUMNS)
        .where(
            events.c.org_id == org_id,
            events.c.stream == stream,
            events.c.partition == partition,
            events.c.log_offset > after,
        )
        .order_by(events.c.log_offset)
        .limit(limit)
    )
    return [stored_event(row) for row in (await conn.execute(query)).all()]


# --- retention ---


async def trim(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, below: int
) -> tuple[int, int]:
    """Delete a partition's events with offsets below ``below``; (events, bytes) removed.

    Counts come from the deleted rows themselves, so two nodes trimming at once never
    subtract the same events twice."""
    statement = (
        delete(events)
        .where(
            events.c.org_id == org_id,
            events.c.stream == stream,
            events.c.partition == partition,
            events.c.log_offset < below,
        )
        .returning(events.c.size)
    )
    sizes = (await conn.execute(statement)).scalars().all()
    removed, size = len(sizes), sum(sizes)
    await conn.execute(
        update(stream_partitions)
        .where(
            stream_partitions.c.org_id == org_id,
            stream_partitions.c.stream == stream,
            stream_partitions.c.partition == partition,
        )
        .values(
            first_offset=func.max(stream_partitions.c.first_offset, below)
            if conn.dialect.name == "sqlite"
            else func.greatest(stream_partitions.c.first_offset, below),
            event_count=stream_partitions.c.event_count - removed,
            byte_count=stream_partitions.c.byte_count - size,
        )
    )
    return removed, size


async def offset_freeing(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, excess: int
) -> int:
    """The offset below which the oldest events add up to at least ``excess`` bytes."""
    after, freed = -1, 0
    while freed < excess:
        query = (
            select(events.c.log_offset, events.c.size)
            .where(
                events.c.org_id == org_id,
                events.c.stream == stream,
                events.c.partition == partition,
                events.c.log_offset > after,
            )
            .order_by(events.c.log_offset)
            .limit(1000)
        )
        rows = (await conn.execute(query)).all()
        if not rows:
            break
        for offset, size in rows:
            freed += size
            after = offset
            if freed >= excess:
                break
    return after + 1


async def streams_with_retention(conn: AsyncConnection) -> list[StreamRecord]:
    """Every tenant's streams that have a retention setting (for the retention job only)."""
    query = select(event_streams).where(
        or_(
            event_streams.c.retention_seconds.is_not(None),
            event_streams.c.retention_bytes.is_not(None),
        )
    )
    return [StreamRecord(**row) for row in (await conn.execute(query)).mappings()]
