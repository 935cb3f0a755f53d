"""What the outbound dispatcher reads and writes besides jobs: its position per partition,
the integrations it matches against, and the tenant chain of an event.

The dispatcher is a system reader of every tenant's log (the ``$dispatcher`` consumer
group), so :func:`lagging_partitions` spans tenants; every other function takes the tenant.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Dialect,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from junctionbox.domain.events import StoredEvent
from junctionbox.store.queries.driver_calls import execute_counting, fetch_rows, fetch_together
from junctionbox.store.queries.events import (
    event_of,
    insert_ignoring_conflicts,
    read_after_query,
    read_after_statement,
)
from junctionbox.store.tables import (
    consumer_offsets,
    entities,
    outbound_integrations,
    stream_partitions,
)


@dataclass(frozen=True, slots=True)
class PartitionPosition:
    """A partition's bounds and the group's committed offset (None: never committed)."""

    org_id: int
    stream: str
    partition: int
    first_offset: int
    next_offset: int
    committed: int | None

    @property
    def start(self) -> int:
        """The next offset to dispatch: committed, or the first retained one."""
        if self.committed is None:
            return self.first_offset
        return max(self.committed, self.first_offset)

    @property
    def lag(self) -> int:
        return max(0, self.next_offset - self.start)


def _positions(group: str) -> Select[Any]:
    joined = stream_partitions.outerjoin(
        consumer_offsets,
        and_(
            consumer_offsets.c.org_id == stream_partitions.c.org_id,
            consumer_offsets.c.stream == stream_partitions.c.stream,
            consumer_offsets.c.partition == stream_partitions.c.partition,
            consumer_offsets.c.group_name == group,
        ),
    )
    return select(
        stream_partitions.c.org_id,
        stream_partitions.c.stream,
        stream_partitions.c.partition,
        stream_partitions.c.first_offset,
        stream_partitions.c.next_offset,
        consumer_offsets.c.committed_offset.label("committed"),
    ).select_from(joined)


async def lagging_partitions(conn: AsyncConnection, group: str) -> list[PartitionPosition]:
    """Every tenant's partitions with events the group has not committed yet."""
    query = _positions(group).where(
        stream_partitions.c.next_offset > stream_partitions.c.first_offset,
        (consumer_offsets.c.committed_offset.is_(None))
        | (consumer_offsets.c.committed_offset < stream_partitions.c.next_offset),
    )
    return [PartitionPosition(**row) for row in (await conn.execute(query)).mappings()]


async def unprotected_partitions(conn: AsyncConnection, group: str) -> list[PartitionPosition]:
    """Partitions the group has no committed row for (retention does not wait for it)."""
    query = _positions(group).where(consumer_offsets.c.org_id.is_(None))
    return [PartitionPosition(**row) for row in (await conn.execute(query)).mappings()]


async def position(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, group: str
) -> PartitionPosition | None:
    query = _positions(group).where(
        stream_partitions.c.org_id == org_id,
        stream_partitions.c.stream == stream,
        stream_partitions.c.partition == partition,
    )
    row = (await conn.execute(query)).mappings().first()
    return PartitionPosition(**row) if row else None


async def protect(
    conn: AsyncConnection, group: str, partitions: Sequence[PartitionPosition], now: datetime
) -> None:
    """Give the group a committed row at each partition's start (if it has none), so
    retention keeps what the group has not read."""
    if not partitions:
        return
    rows = [
        {
            "org_id": p.org_id,
            "group_name": group,
            "stream": p.stream,
            "partition": p.partition,
            "committed_offset": p.start,
            "updated_at": now,
        }
        for p in partitions
    ]
    await conn.execute(insert_ignoring_conflicts(conn, consumer_offsets), rows)


# The dispatcher runs these on every batch: built once (with bind parameters), they skip
# SQLAlchemy's per-call construction of the expression and of its cache key.
_ADVANCE = (
    update(consumer_offsets)
    .where(
        consumer_offsets.c.org_id == bindparam("b_org_id"),
        consumer_offsets.c.group_name == bindparam("b_group"),
        consumer_offsets.c.stream == bindparam("b_stream"),
        consumer_offsets.c.partition == bindparam("b_partition"),
        consumer_offsets.c.committed_offset == bindparam("b_expected"),
    )
    .values(committed_offset=bindparam("b_new_offset"), updated_at=bindparam("b_now"))
)


async def advance(
    conn: AsyncConnection,
    group: str,
    org_id: int,
    stream: str,
    partition: int,
    expected: int | None,
    new_offset: int,
    now: datetime,
) -> bool:
    """Move the group's offset from ``expected`` (None: no row yet) to ``new_offset`` if
    nobody moved it meanwhile (compare-and-set); False means the caller's work is stale and
    must be rolled back."""
    if expected is None:
        statement = insert_ignoring_conflicts(conn, consumer_offsets).values(
            org_id=org_id,
            group_name=group,
            stream=stream,
            partition=partition,
            committed_offset=new_offset,
            updated_at=now,
        )
        return (await conn.execute(statement)).rowcount == 1
    parameters = {
        "b_org_id": org_id,
        "b_group": group,
        "b_stream": stream,
        "b_partition": partition,
        "b_expected": expected,
        "b_new_offset": new_offset,
        "b_now": now,
    }
    return await execute_counting(conn, _ADVANCE, parameters) == 1


def lock_key(*parts: object) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (a collision only makes two
    partitions take turns)."""
    text_key = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text_key, digest_size=8).digest(), "big", signed=True)


async def lock_partition(
    conn: AsyncConnection, key: int, owners: Collection[int]
) -> tuple[bool, dict[int, Stamp] | None]:
    """Take the partition's advisory lock until this transaction ends, if free (PostgreSQL:
    ``pg_try_advisory_xact_lock``; SQLite has one writer at a time, so a write transaction
    is already exclusive: True). On PostgreSQL the same statement reads the stamps of
    ``owners`` (every one of them, as :func:`read_batch` gives them) and makes the
    transaction's commit not wait for the WAL flush (``SET LOCAL synchronous_commit =
    off``, as ``Database.write(durable=False)`` would, a round trip saved: the dispatcher's
    work is redone after a crash, with the same dedupe keys); elsewhere (and without
    owners) the stamps are None."""
    if conn.dialect.name != "postgresql":
        return True, None
    if not owners:
        ((locked, _),) = await fetch_rows(conn, _LOCK, {"key": key})
        return bool(locked), None
    rows = await fetch_rows(conn, _LOCK_WITH_STAMPS, {"key": key, "org_ids": list(owners)})
    if not rows[0][0]:
        return False, None
    return True, _every_owner(owners, (row[2:] for row in rows if row[2] is not None))


_NOT_DURABLE = func.set_config("synchronous_commit", "off", True)
_LOCK = select(
    func.pg_try_advisory_xact_lock(bindparam("key", type_=BigInteger), type_=Boolean),
    _NOT_DURABLE,
)


# --- integrations and tenants ---


Stamp = tuple[int, int, int, datetime | None]
NO_INTEGRATIONS: Final[Stamp] = (0, 0, 0, None)


def _stamps(owners: ColumnElement[bool]) -> Select[Any]:
    return (
        select(
            outbound_integrations.c.org_id,
            func.count(),
            func.coalesce(func.sum(outbound_integrations.c.version), 0),
            func.coalesce(func.sum(case((outbound_integrations.c.is_active, 1), else_=0)), 0),
            func.max(outbound_integrations.c.updated_at),
        )
        .where(owners)
        .group_by(outbound_integrations.c.org_id)
    )


def stamps_sql(dialect: Dialect, owners_parameter: str) -> str:
    """PostgreSQL: the text of :func:`integration_stamps`'s aggregate for the owners given
    as the bigint array parameter ``owners_parameter`` (such as ``$2``), for a statement
    written at the driver's level: the same aggregate, so the same stamps."""
    owners = outbound_integrations.c.org_id == func.any(
        literal_column(f"{owners_parameter}::bigint[]")
    )
    compiled = _stamps(owners).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


# One text for any number of owners (the dispatcher checks every batch's owners, at the
# driver's level): an array on PostgreSQL, a JSON array read by json_each on SQLite.
_STAMPS_PG = _stamps(
    outbound_integrations.c.org_id == func.any(bindparam("org_ids", type_=ARRAY(BigInteger)))
)
_STAMPS_SQLITE = _stamps(
    outbound_integrations.c.org_id.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam("org_ids")))
    )
)


# At least one row: (held, the setting, stamp columns), the stamps joined only when the lock
# was taken.
# MATERIALIZED: the lock is tried exactly once (inlined, the planner would call it in the
# join's filter, once per stamp row).
_HELD = (
    select(
        func.pg_try_advisory_xact_lock(bindparam("key", type_=BigInteger), type_=Boolean).label(
            "held"
        ),
        _NOT_DURABLE.label("not_durable"),
    )
    .cte("held")
    .prefix_with("MATERIALIZED")
)
_STAMPED = _STAMPS_PG.subquery("stamped")
_LOCK_WITH_STAMPS = select(_HELD.c.held, _HELD.c.not_durable, *_STAMPED.c).select_from(
    _HELD.outerjoin(_STAMPED, _HELD.c.held)
)


# PostgreSQL, the dispatcher's hot path (its cursor known), in ONE statement: the lock, the
# owners' stamps (one array per column), the batch and, if it has events, the group's offset
# moved past it (compare-and-set from the cursor): three round trips fewer than apart. The
# batch is read only once the lock is held; moving the offset before the jobs are inserted
# changes nothing another transaction could see (they commit together). At least one row:
# the batch's rows, or one without an event.
_LOCKED: Final = select(_HELD.c.held).scalar_subquery()
_OWNER_STAMPS = _STAMPS_PG.subquery("owner_stamps")
_STAMP_TYPES: Final[tuple[TypeEngine[Any], ...]] = (
    *(BigInteger() for _ in range(4)),
    DateTime(timezone=True),
)
_STAMP_ARRAYS = (
    select(
        *(
            func.array_agg(column, type_=ARRAY(kind)).label(f"stamps_{index}")
            for index, (column, kind) in enumerate(zip(_OWNER_STAMPS.c, _STAMP_TYPES, strict=True))
        )
    )
    .where(_LOCKED)
    .cte("stamped")
)


@functools.lru_cache(maxsize=16)
def _locked_batch(limit: int) -> Select[Any]:
    """The statement for batches of ``limit`` (written into it, as in
    ``events.read_after_statement``), built once per limit."""
    batch = read_after_statement(limit).where(_LOCKED).cte("batch").prefix_with("MATERIALIZED")
    moved = (
        _ADVANCE.values(
            committed_offset=select(func.max(batch.c.log_offset) + 1).scalar_subquery(),
            updated_at=bindparam("b_now"),
        )
        .where(select(batch.c.log_offset).exists())
        .returning(consumer_offsets.c.committed_offset)
        .cte("moved")
    )
    return (
        select(
            _HELD.c.held,
            _HELD.c.not_durable,
            select(func.count()).select_from(moved).scalar_subquery().label("moved"),
            *_STAMP_ARRAYS.c,
            *batch.c,
        )
        .select_from(
            _HELD.join(_STAMP_ARRAYS, literal_column("true")).outerjoin(
                batch, literal_column("true")
            )
        )
        .order_by(batch.c.log_offset)
    )


_FIRST_STAMP_COLUMN: Final = 3
_FIRST_EVENT_COLUMN: Final = _FIRST_STAMP_COLUMN + len(_STAMP_TYPES)


@dataclass(frozen=True, slots=True)
class LockedBatch:
    """What :func:`lock_and_read` found: whether the lock was taken (nothing else is then),
    the stamps of the owners (None without owners), the events, and whether the group's
    offset moved past them (False with events: someone moved it first; roll back)."""

    locked: bool
    stamps: dict[int, Stamp] | None = None
    events: list[StoredEvent] = field(default_factory=list)
    moved: bool = False


async def lock_and_read(
    conn: AsyncConnection,
    key: int,
    owners: Collection[int],
    group: str,
    position: tuple[int, str, int],
    cursor: int,
    limit: int,
    now: datetime,
) -> LockedBatch:
    """PostgreSQL: :func:`lock_partition`, the events of ``position`` (org, stream,
    partition) from offset ``cursor`` on (at most ``limit``, as :func:`read_batch` reads
    them) and :func:`advance` of ``group`` from ``cursor`` past them, in one statement."""
    org_id, stream, partition = position
    given = {
        "key": key,
        "org_ids": list(owners),
        "org_id": org_id,
        "stream": stream,
        "partition": partition,
        "after": cursor - 1,
        "b_org_id": org_id,
        "b_group": group,
        "b_stream": stream,
        "b_partition": partition,
        "b_expected": cursor,
        "b_now": now,
    }
    rows = await fetch_rows(conn, _locked_batch(limit), given)
    first = rows[0]
    if not first[0]:
        return LockedBatch(False)
    stamps = None
    if owners:
        columns = (value or [] for value in first[_FIRST_STAMP_COLUMN:_FIRST_EVENT_COLUMN])
        stamps = _every_owner(owners, zip(*columns, strict=True))
    events = [event_of(row[_FIRST_EVENT_COLUMN:]) for row in rows if row[_FIRST_EVENT_COLUMN]]
    return LockedBatch(True, stamps, events, bool(first[2]))


async def integration_stamps(conn: AsyncConnection, org_ids: Collection[int]) -> dict[int, Stamp]:
    """Per owner: how many integrations, the sum of their versions, how many are active, and
    the latest change. Any create, update, restore, enable/disable (by a user or the engine)
    or delete changes it, even when the nodes' clocks disagree (versions only grow)."""
    return _stamps_of(await fetch_rows(conn, *_stamps_query(conn, org_ids)))


def _stamps_query(conn: AsyncConnection, org_ids: Collection[int]) -> tuple[Any, dict[str, Any]]:
    owners = [int(org_id) for org_id in org_ids]
    if conn.dialect.name == "sqlite":
        return _STAMPS_SQLITE, {"org_ids": orjson.dumps(owners).decode()}
    return _STAMPS_PG, {"org_ids": owners}


def _every_owner(owners: Collection[int], rows: Iterable[Sequence[Any]]) -> dict[int, Stamp]:
    """The stamp of every owner: from its row, else ``NO_INTEGRATIONS`` (no row: none)."""
    return dict.fromkeys(owners, NO_INTEGRATIONS) | _stamps_of(rows)


def _stamps_of(rows: Iterable[Sequence[Any]]) -> dict[int, Stamp]:
    found: dict[int, Stamp] = {}
    for org_id, count, versions, active, changed in rows:
        found[int(org_id)] = (int(count), int(versions), int(active), _aware(changed))
    return found


async def read_batch(
    conn: AsyncConnection,
    org_id: int,
    stream: str,
    partition: int,
    after: int,
    limit: int,
    owners: Collection[int],
) -> tuple[list[StoredEvent], dict[int, Stamp] | None]:
    """The dispatcher's read: ``events.read_after``, and on SQLite the stamps of ``owners``
    (every one of them: an owner without integrations has ``NO_INTEGRATIONS``) in the same
    hand-over to aiosqlite's thread. Elsewhere the stamps are None: the catalog reads them
    when it needs them, only for a batch with events (a query of its own either way)."""
    read = read_after_query(org_id, stream, partition, after, limit)
    if conn.dialect.name != "sqlite" or not owners:
        return [event_of(row) for row in await fetch_rows(conn, *read)], None
    rows, stamp_rows = await fetch_together(conn, [read, _stamps_query(conn, owners)])
    stamps = _every_owner(owners, stamp_rows)
    return [event_of(row) for row in rows], stamps


async def active_integration_rows(
    conn: AsyncConnection, org_ids: Collection[int]
) -> list[RowMapping]:
    """The active integrations of these owners, oldest first, without their sealed secrets
    (matching never needs a credential)."""
    table = outbound_integrations
    query = (
        select(
            table.c.id,
            table.c.org_id,
            table.c.version,
            table.c.config,
            table.c.consecutive_failures,
            table.c.disabled_reason,
            table.c.disabled_at,
            table.c.created_by,
            table.c.created_at,
            table.c.updated_at,
        )
        .where(table.c.org_id.in_(list(org_ids)), table.c.is_active.is_(True))
        .order_by(table.c.id)
    )
    return list((await conn.execute(query)).mappings().all())


async def integration_state(
    conn: AsyncConnection, integration_id: str, org_ids: Collection[int]
) -> bool | None:
    """Whether an integration of one of ``org_ids`` is active; None if there is none."""
    table = outbound_integrations
    query = select(table.c.is_active).where(
        table.c.id == integration_id, table.c.org_id.in_(list(org_ids))
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else bool(value)


@dataclass(frozen=True, slots=True)
class EntityLink:
    id: int
    parent_id: int | None
    timezone: str | None


async def entity_links(conn: AsyncConnection, entity_ids: Collection[int]) -> dict[int, EntityLink]:
    query = select(entities.c.id, entities.c.parent_id, entities.c.timezone).where(
        entities.c.id.in_(list(entity_ids))
    )
    return {
        int(row.id): EntityLink(int(row.id), row.parent_id, row.timezone)
        for row in (await conn.execute(query)).all()
    }


def _aware(value: datetime | None) -> datetime | None:
    # func.max() loses the column type on SQLite (a naive or textual value comes back).
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
