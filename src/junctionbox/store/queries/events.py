"""The event log: streams, their partitions' offset counters, and the events themselves."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Dialect,
    LargeBinary,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from junctionbox.domain.events import StoredEvent
from junctionbox.store.queries.driver_calls import (
    Processor,
    Processors,
    bind_processor,
    copy_records,
    fetch_rows,
    pg_call,
    pg_driver,
    pg_rows,
    pg_rows_arguments,
    pg_rows_form,
    pg_rows_width,
    positional_insert,
    prepare,
    sqlite_driver_run,
    sqlite_run,
)
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


_ALLOCATE = (
    update(stream_partitions)
    .where(
        stream_partitions.c.org_id == bindparam("b_org_id"),
        stream_partitions.c.stream == bindparam("b_stream"),
        stream_partitions.c.partition == bindparam("b_partition"),
    )
    .values(
        next_offset=stream_partitions.c.next_offset + bindparam("b_count"),
        event_count=stream_partitions.c.event_count + bindparam("b_count"),
        byte_count=stream_partitions.c.byte_count + bindparam("b_size"),
    )
    .returning(stream_partitions.c.next_offset)
)
# PostgreSQL: the same, announcing the reserved range with ``pg_notify`` in the same round
# trip (delivered on commit, dropped on rollback): ``{"o": org, "s": stream, "p": partition,
# "f": first, "l": last}``.
_RANGE = func.json_build_object(
    literal_column("'o'"),
    stream_partitions.c.org_id,
    literal_column("'s'"),
    stream_partitions.c.stream,
    literal_column("'p'"),
    stream_partitions.c.partition,
    literal_column("'f'"),
    stream_partitions.c.next_offset - bindparam("b_count"),
    literal_column("'l'"),
    stream_partitions.c.next_offset - 1,
)
_ALLOCATE_ANNOUNCING = _ALLOCATE.returning(
    func.pg_notify(bindparam("b_channel", type_=Text), cast(_RANGE, Text))
)


async def allocate_offsets(
    conn: AsyncConnection,
    org_id: int,
    stream: str,
    partition: int,
    count: int,
    size: int,
    *,
    announce_on: str | None = None,
) -> int | None:
    """Reserve ``count`` offsets and return the first (None: no such partition). The row
    lock this takes on PostgreSQL is held until commit, so offsets of one partition become
    visible in order; there, ``announce_on`` names a channel to NOTIFY of the range."""
    values = {"b_org_id": org_id, "b_stream": stream, "b_partition": partition}
    values |= {"b_count": count, "b_size": size}
    if conn.dialect.name == "postgresql":
        if announce_on is None:
            rows = await fetch_rows(conn, _ALLOCATE, values)
        else:
            rows = await fetch_rows(conn, _ALLOCATE_ANNOUNCING, values | {"b_channel": announce_on})
        return int(rows[0][0]) - count if rows else None
    if conn.dialect.name == "sqlite":
        sql, names = _sqlite_compiled(conn.dialect)
        rows = await _sqlite(conn, "fetch", sql, tuple(values[name] for name in names))
        following = rows[0][0] if rows else None
    else:
        following = (await conn.execute(_ALLOCATE, values)).scalar_one_or_none()
    return None if following is None else int(following) - count


_SQLITE_ALLOCATE: dict[str, tuple[str, tuple[str, ...]]] = {}


def _sqlite_compiled(dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The allocation's SQL and the names of its positional parameters, in order."""
    found = _SQLITE_ALLOCATE.get(dialect.driver)
    if found is None:
        compiled = _ALLOCATE.compile(dialect=dialect)
        found = _SQLITE_ALLOCATE[dialect.driver] = (
            compiled.string,
            tuple(compiled.positiontup or ()),
        )
    return found


async def _sqlite(conn: AsyncConnection, how: str, sql: str, parameters: Any) -> list[Any]:
    """Run ``sql`` on the transaction's own aiosqlite connection, in one hand-over to its
    thread where SQLAlchemy's adapter takes three or four (cursor, execute, fetch, close):
    on the append path, those hand-overs cost more than the statements. Errors are turned
    into junctionbox's as the database layer would."""
    if how == "many":
        await sqlite_run(conn, lambda sqlite: sqlite.executemany(sql, parameters))
        return []
    return await sqlite_run(conn, lambda sqlite: sqlite.execute(sql, parameters).fetchall())


@dataclass(frozen=True, slots=True)
class Reservation:
    """Offsets to reserve in one partition: ``count`` events of ``size`` bytes in all."""

    stream: str
    partition: int
    count: int
    size: int


EventsAt = Callable[[Sequence[int]], list[StoredEvent]]


async def append_events(
    conn: AsyncConnection,
    org_id: int,
    reservations: Sequence[Reservation],
    events_at: EventsAt,
    *,
    announce_on: str | None = None,
) -> list[StoredEvent] | None:
    """Reserve offsets in each partition (in the order given), insert the events that
    ``events_at`` makes of the first offset of each reservation, and return them; None when a
    partition does not exist (nothing is inserted; the caller rolls back). On PostgreSQL,
    ``announce_on`` names a channel to NOTIFY of each partition's new range (on commit).

    On SQLite the whole of it runs in one call on the driver's thread: each statement through
    the async driver would be a hand-over to that thread and back, which costs more CPU than
    the statements themselves."""
    if conn.dialect.name == "sqlite":
        return await _append_on_sqlite(conn, org_id, reservations, events_at)
    if len(reservations) == 1:
        (r,) = reservations
        first = await allocate_offsets(
            conn, org_id, r.stream, r.partition, r.count, r.size, announce_on=announce_on
        )
        found = None if first is None else [first]
    else:
        found = await _allocate_all_on_postgres(conn, org_id, reservations, announce_on)
    if found is None:
        return None
    stored = events_at(found)
    await insert_events(conn, stored)
    return stored


# PostgreSQL, several partitions in one round trip: the rows are locked in one order (the
# sorted, materialised CTE) whoever appends, so that two writers cannot deadlock, then
# updated. $1 org, $2-$5 the reservations as arrays, $6 the channel to NOTIFY (or NULL).
_ALLOCATE_ALL = """
WITH wanted AS (
    SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])
        AS w(stream, partition, count, size)
), locked AS MATERIALIZED (
    SELECT p.stream, p.partition
    FROM stream_partitions AS p
    JOIN wanted AS w ON p.stream = w.stream AND p.partition = w.partition
    WHERE p.org_id = $1
    ORDER BY p.stream, p.partition
    FOR UPDATE OF p
)
UPDATE stream_partitions AS p
SET next_offset = p.next_offset + w.count,
    event_count = p.event_count + w.count,
    byte_count = p.byte_count + w.size
FROM wanted AS w, locked AS l
WHERE p.org_id = $1 AND p.stream = w.stream AND p.partition = w.partition
    AND l.stream = w.stream AND l.partition = w.partition
RETURNING p.stream, p.partition, p.next_offset - w.count,
    CASE WHEN $6::text IS NOT NULL THEN pg_notify($6::text, json_build_object(
        'o', p.org_id, 's', p.stream, 'p', p.partition,
        'f', p.next_offset - w.count, 'l', p.next_offset - 1)::text) END
"""


async def _allocate_all_on_postgres(
    conn: AsyncConnection,
    org_id: int,
    reservations: Sequence[Reservation],
    announce_on: str | None,
) -> list[int] | None:
    """The first offset of each reservation, in order (None: a partition does not exist)."""
    arguments = (
        org_id,
        [r.stream for r in reservations],
        [r.partition for r in reservations],
        [r.count for r in reservations],
        [r.size for r in reservations],
        announce_on,
    )
    driver = await pg_driver(conn)
    rows = await pg_call(driver.fetch(_ALLOCATE_ALL, *arguments))
    firsts = {(row[0], row[1]): int(row[2]) for row in rows}
    if len(firsts) != len(reservations):
        return None
    return [firsts[(r.stream, r.partition)] for r in reservations]


async def _append_on_sqlite(
    conn: AsyncConnection, org_id: int, reservations: Sequence[Reservation], events_at: EventsAt
) -> list[StoredEvent] | None:
    dialect = conn.dialect
    return await sqlite_run(
        conn, lambda sqlite: _append_in_sqlite(sqlite, dialect, org_id, reservations, events_at)
    )


def _append_in_sqlite(
    sqlite: sqlite3.Connection,
    dialect: Dialect,
    org_id: int,
    reservations: Sequence[Reservation],
    events_at: EventsAt,
) -> list[StoredEvent] | None:
    """``append_events`` on aiosqlite's thread, in the transaction begun there."""
    allocate_sql, names = _sqlite_compiled(dialect)
    insert_sql, processors = _compiled_insert(dialect)
    firsts = []
    for r in reservations:
        values = {"b_org_id": org_id, "b_stream": r.stream, "b_partition": r.partition}
        values |= {"b_count": r.count, "b_size": r.size}
        row = sqlite.execute(allocate_sql, tuple(values[n] for n in names)).fetchone()
        if row is None:
            return None
        firsts.append(int(row[0]) - r.count)
    stored = events_at(firsts)
    rows = [_event_values(event) for event in stored]
    sqlite.executemany(insert_sql, _processed(rows, processors) if processors else rows)
    return stored


# --- appending in a transaction of its own, below SQLAlchemy ---


@dataclass(frozen=True, slots=True)
class TenantAppend:
    """One tenant's part of :func:`append_committed`: its reservations, in order, and
    the events it makes of their first offsets (as for :func:`append_events`)."""

    org_id: int
    reservations: Sequence[Reservation]
    events_at: EventsAt


async def append_committed(
    driver: Any,
    dialect: Dialect,
    appends: Sequence[TenantAppend],
    *,
    announce_on: str | None = None,
) -> list[list[StoredEvent]] | None:
    """What ``append_events`` does for each tenant's part, in one transaction of its own
    run straight on ``driver`` (``Database.driver``'s connection): on SQLite one call on
    aiosqlite's thread (BEGIN IMMEDIATE, the reservations, the inserts, COMMIT); on
    PostgreSQL one statement (:data:`_APPEND_COMMITTED`), at most
    :data:`COMMITTED_AT_MOST` events. The events stored, by part; None when a partition
    does not exist (then nothing is stored).

    A publish's own transaction through SQLAlchemy costs more CPU than its statements
    (begin, commit, and on PostgreSQL two more round trips, or two more hand-overs to
    aiosqlite's thread): this is the group commit's way for small appends."""
    if dialect.name == "sqlite":
        return await sqlite_driver_run(
            driver, lambda sqlite: _committed_in_sqlite(sqlite, dialect, appends)
        )
    return await _committed_on_postgres(driver, dialect, appends, announce_on)


def _committed_in_sqlite(
    sqlite: sqlite3.Connection, dialect: Dialect, appends: Sequence[TenantAppend]
) -> list[list[StoredEvent]] | None:
    sqlite.execute("BEGIN IMMEDIATE")
    try:
        stored = []
        for part in appends:
            events = _append_in_sqlite(
                sqlite, dialect, part.org_id, part.reservations, part.events_at
            )
            if events is None:
                sqlite.execute("ROLLBACK")
                return None
            stored.append(events)
        sqlite.execute("COMMIT")
        return stored
    except BaseException:
        if sqlite.in_transaction:
            sqlite.execute("ROLLBACK")
        raise


# PostgreSQL: the reservations (locked in one order, as _ALLOCATE_ALL does, and updated
# only if every partition exists) and the insert of the events, whose offsets are relative
# to their partition's reservation, in one statement: $1 the channel to NOTIFY (or NULL),
# then the reservations' rows and the events' rows (``driver_calls.pg_rows``: a few as
# scalars, more as one array per column).
_APPEND_COMMITTED = """
WITH wanted AS (
    SELECT * FROM {reservations} AS w(org_id, stream, partition, count, size)
), locked AS MATERIALIZED (
    SELECT p.org_id, p.stream, p.partition
    FROM stream_partitions AS p
    JOIN wanted AS w
        ON p.org_id = w.org_id AND p.stream = w.stream AND p.partition = w.partition
    ORDER BY p.org_id, p.stream, p.partition
    FOR UPDATE OF p
), reserved AS (
    UPDATE stream_partitions AS p
    SET next_offset = p.next_offset + w.count,
        event_count = p.event_count + w.count,
        byte_count = p.byte_count + w.size
    FROM wanted AS w, locked AS l
    WHERE p.org_id = w.org_id AND p.stream = w.stream AND p.partition = w.partition
        AND l.org_id = w.org_id AND l.stream = w.stream AND l.partition = w.partition
        AND (SELECT count(*) FROM locked) = (SELECT count(*) FROM wanted)
    RETURNING p.org_id, p.stream, p.partition, p.next_offset - w.count AS first,
        CASE WHEN $1::text IS NOT NULL THEN pg_notify($1::text, json_build_object(
            'o', p.org_id, 's', p.stream, 'p', p.partition,
            'f', p.next_offset - w.count, 'l', p.next_offset - 1)::text) END
), inserted AS (
    INSERT INTO events ({columns})
    SELECT {placed}
    FROM {events} AS e({columns})
    JOIN reserved AS r
        ON r.org_id = e.org_id AND r.stream = e.stream AND r.partition = e.partition
)
SELECT org_id, stream, partition, first FROM reserved
"""
_RESERVATION_TYPES: Final = ("bigint", "text", "int", "bigint", "bigint")
_COMMITTED_SQL: dict[tuple[str, int, int], str] = {}


def _committed_sql(dialect: Dialect, reservations: int, rows: int) -> str:
    key = (dialect.driver, pg_rows_form(reservations), pg_rows_form(rows))
    found = _COMMITTED_SQL.get(key)
    if found is None:
        types = [events.c[name].type.compile(dialect=dialect) for name in INSERT_COLUMNS]
        placed = ", ".join(
            "r.first + e.log_offset" if name == "log_offset" else f"e.{name}"
            for name in INSERT_COLUMNS
        )
        after = 2 + pg_rows_width(len(_RESERVATION_TYPES), reservations)
        found = _COMMITTED_SQL[key] = _APPEND_COMMITTED.format(
            reservations=pg_rows(_RESERVATION_TYPES, 2, reservations),
            columns=", ".join(INSERT_COLUMNS),
            placed=placed,
            events=pg_rows(types, after, rows),
        )
    return found


async def _committed_on_postgres(
    driver: Any, dialect: Dialect, appends: Sequence[TenantAppend], announce_on: str | None
) -> list[list[StoredEvent]] | None:
    wanted = [(part.org_id, r) for part in appends for r in part.reservations]
    # The rows at offsets relative to their reservation's first (the statement adds it).
    rows = [
        _event_values(event)
        for part in appends
        for event in part.events_at([0] * len(part.reservations))
    ]
    if len(rows) > COMMITTED_AT_MOST:
        raise ValueError(f"at most {COMMITTED_AT_MOST} events are appended this way")
    _, processors = _compiled_insert(dialect)
    reservations = [(org_id, r.stream, r.partition, r.count, r.size) for org_id, r in wanted]
    arguments = (
        announce_on,
        *pg_rows_arguments(reservations, len(_RESERVATION_TYPES)),
        *pg_rows_arguments(_processed(rows, processors) if rows else [], len(INSERT_COLUMNS)),
    )
    sql = _committed_sql(dialect, len(reservations), len(rows))
    found = await pg_call(driver.fetch(sql, *arguments))
    firsts = {(row[0], row[1], row[2]): int(row[3]) for row in found}
    if len(firsts) != len(wanted):
        return None
    return [
        part.events_at([firsts[(part.org_id, r.stream, r.partition)] for r in part.reservations])
        for part in appends
    ]


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


# Above this many rows PostgreSQL gets them by COPY (about twice the rate of executemany);
# below, COPY's extra round trip costs more than it saves.
_COPY_FROM = 64
# The most events ``append_committed`` takes on PostgreSQL: more go by COPY, in a transaction.
COMMITTED_AT_MOST = _COPY_FROM - 1


async def insert_events(conn: AsyncConnection, stored: Sequence[StoredEvent]) -> None:
    """Insert the events' rows at the driver's own pace: one precompiled statement and
    ``executemany`` (or ``COPY`` on PostgreSQL), with column values converted by the same
    bind processors SQLAlchemy would use, but without its per-row parameter handling."""
    insert_sql, processors = _compiled_insert(conn.dialect)
    rows = [_event_values(event) for event in stored]
    if processors:
        rows = _processed(rows, processors)
    if conn.dialect.name == "postgresql" and len(rows) >= _COPY_FROM:
        await _copy(conn, rows)
    elif conn.dialect.name == "sqlite":
        await _sqlite(conn, "many", insert_sql, rows)
    elif conn.dialect.name == "postgresql":
        driver = await pg_driver(conn)
        await pg_call(driver.executemany(insert_sql, rows))
    else:
        await conn.exec_driver_sql(insert_sql, rows)


def _event_values(event: StoredEvent) -> tuple[Any, ...]:
    """The row of ``events`` for ``event``, in ``INSERT_COLUMNS`` order."""
    return (
        event.org_id,
        event.stream,
        event.partition,
        event.offset,
        event.event_id,
        event.source,
        event.type,
        event.subject,
        event.time,
        event.received_at,
        event.partition_key,
        event.data_content_type,
        event.data_schema,
        event.extensions or None,
        event.payload,
        len(event.payload),
    )


INSERT_COLUMNS = (
    "org_id",
    "stream",
    "partition",
    "log_offset",
    "event_id",
    "source",
    "type",
    "subject",
    "event_time",
    "received_at",
    "partition_key",
    "data_content_type",
    "data_schema",
    "extensions",
    "payload",
    "size",
)


def _compiled_insert(dialect: Dialect) -> tuple[str, Processors]:
    return positional_insert(events, INSERT_COLUMNS, dialect, _event_processor)


def _event_processor(name: str, dialect: Dialect) -> Processor | None:
    if isinstance(events.c[name].type, LargeBinary):
        return None  # both drivers take bytes as they are
    return bind_processor(events, name, dialect)


def _processed(rows: list[tuple[Any, ...]], processors: Processors) -> list[tuple[Any, ...]]:
    """The rows with the processors applied, column by column. A column holding one value
    throughout (nulls, or the ``received_at`` that events appended together share) is
    processed once."""
    if not rows:
        return rows
    columns = list(zip(*rows, strict=True))
    for index, processor in processors:
        values = columns[index]
        first = values[0]
        if values.count(first) != len(values):
            columns[index] = tuple(None if v is None else processor(v) for v in values)
        elif first is not None:
            columns[index] = (processor(first),) * len(values)
    return list(zip(*columns, strict=True))


async def _copy(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """``COPY events FROM STDIN`` on the transaction's own asyncpg connection."""
    await copy_records(await pg_driver(conn), "events", rows, INSERT_COLUMNS)


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


@functools.lru_cache(maxsize=16)
def read_after_statement(limit: int) -> Select[Any]:
    """The read of :func:`read_after` for ``limit`` (the dispatcher reads every batch with
    it; see also dispatch.py's ``locked_batch``), built once per limit. The limit is written
    into the statement: as a parameter, PostgreSQL planned the read anew at every execution
    (a generic plan, not knowing the limit, looks dearer than a custom one), about 0.3 ms of
    its CPU each time; the dispatcher reads with two limits."""
    return (
        select(*_EVENT_COLUMNS)
        .where(
            events.c.org_id == bindparam("org_id"),
            events.c.stream == bindparam("stream"),
            events.c.partition == bindparam("partition"),
            events.c.log_offset > bindparam("after"),
        )
        .order_by(events.c.log_offset)
        .limit(literal_column(str(int(limit))))
    )


async def read_after(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, after: int, limit: int
) -> list[StoredEvent]:
    """Events of one partition with offsets greater than ``after``, in offset order.

    At the driver's level (the dispatcher reads every batch with it): the statement is
    compiled once per dialect and its rows get the columns' own result processors, so the
    events are what SQLAlchemy would have made, without its per-statement work and, on
    SQLite, in one hand-over to aiosqlite's thread instead of three or four."""
    parameters = (org_id, stream, partition, after, limit)
    return [event_of(row) for row in await fetch_rows(conn, *read_after_query(*parameters))]


# The columns' names in ``_EVENT_COLUMNS`` order, for reads written out by hand.
EVENT_COLUMN_NAMES = ", ".join(column.name for column in _EVENT_COLUMNS)


def events_of_rows(dialect: Dialect, rows: Iterable[Sequence[Any]]) -> list[StoredEvent]:
    """A driver's rows of ``EVENT_COLUMN_NAMES`` as the events :func:`read_after` makes of
    its own (the columns' result processors, then :func:`event_of`)."""
    prepared = prepare(read_after_statement(1), dialect)
    return [event_of(prepared.row(row)) for row in rows]


def read_after_query(
    org_id: int, stream: str, partition: int, after: int, limit: int
) -> tuple[Any, dict[str, Any]]:
    """:func:`read_after`'s statement and parameters (for ``driver_calls.fetch_together``);
    ``event_of`` makes its rows events."""
    given = {"org_id": org_id, "stream": stream, "partition": partition, "after": after}
    return read_after_statement(limit), given


def event_of(row: Sequence[Any]) -> StoredEvent:
    """A row of ``_EVENT_COLUMNS`` (converted as SQLAlchemy converts it) as a StoredEvent."""
    (
        org_id,
        stream,
        partition,
        offset,
        event_id,
        source,
        type_,
        subject,
        event_time,
        received_at,
        partition_key,
        data_content_type,
        data_schema,
        extensions,
        payload,
    ) = row
    return StoredEvent(
        org_id=org_id,
        stream=stream,
        partition=partition,
        offset=offset,
        event_id=event_id,
        source=source,
        type=type_,
        subject=subject,
        time=event_time,
        received_at=received_at,
        partition_key=partition_key,
        data_content_type=data_content_type,
        data_schema=data_schema,
        extensions=extensions or {},
        payload=bytes(payload),
    )


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
