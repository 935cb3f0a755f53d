"""Committed positions of consumer groups, per (tenant, group, stream, partition)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.queries.events import insert_ignoring_conflicts
from junctionbox.store.tables import consumer_offsets, events, stream_partitions


@dataclass(frozen=True)
class GroupPosition:
    group_name: str
    stream: str
    partition: int
    committed_offset: int
    next_offset: int
    updated_at: datetime

    @property
    def lag(self) -> int:
        return max(0, self.next_offset - self.committed_offset)


async def positions(
    conn: AsyncConnection, org_id: int, *, group: str | None = None, stream: str | None = None
) -> list[GroupPosition]:
    """Committed offsets joined with each partition's end, for lag."""
    joined = consumer_offsets.join(
        stream_partitions,
        and_(
            stream_partitions.c.org_id == consumer_offsets.c.org_id,
            stream_partitions.c.stream == consumer_offsets.c.stream,
            stream_partitions.c.partition == consumer_offsets.c.partition,
        ),
    )
    query = (
        select(
            consumer_offsets.c.group_name,
            consumer_offsets.c.stream,
            consumer_offsets.c.partition,
            consumer_offsets.c.committed_offset,
            stream_partitions.c.next_offset,
            consumer_offsets.c.updated_at,
        )
        .select_from(joined)
        .where(consumer_offsets.c.org_id == org_id)
        .order_by(
            consumer_offsets.c.group_name, consumer_offsets.c.stream, consumer_offsets.c.partition
        )
    )
    if group is not None:
        query = query.where(consumer_offsets.c.group_name == group)
    if stream is not None:
        query = query.where(consumer_offsets.c.stream == stream)
    return [GroupPosition(**row) for row in (await conn.execute(query)).mappings()]


async def commit(
    conn: AsyncConnection,
    org_id: int,
    group: str,
    stream: str,
    offsets: dict[int, int],
    now: datetime,
) -> None:
    """Set the next offset to read for each partition (creating rows as needed)."""
    rows = [
        {
            "org_id": org_id,
            "group_name": group,
            "stream": stream,
            "partition": partition,
            "committed_offset": offset,
            "updated_at": now,
        }
        for partition, offset in offsets.items()
    ]
    await conn.execute(insert_ignoring_conflicts(conn, consumer_offsets), rows)
    for partition, offset in offsets.items():
        await conn.execute(
            update(consumer_offsets)
            .where(
                consumer_offsets.c.org_id == org_id,
                consumer_offsets.c.group_name == group,
                consumer_offsets.c.stream == stream,
                consumer_offsets.c.partition == partition,
            )
            .values(committed_offset=offset, updated_at=now)
        )


async def forget(conn: AsyncConnection, org_id: int, group: str, stream: str | None) -> int:
    statement = delete(consumer_offsets).where(
        consumer_offsets.c.org_id == org_id, consumer_offsets.c.group_name == group
    )
    if stream is not None:
        statement = statement.where(consumer_offsets.c.stream == stream)
    return int((await conn.execute(statement)).rowcount or 0)


async def committed_offset(
    conn: AsyncConnection, org_id: int, group: str, stream: str, partition: int
) -> int | None:
    """The group's committed offset on one partition, None when it has none yet."""
    query = select(consumer_offsets.c.committed_offset).where(
        consumer_offsets.c.org_id == org_id,
        consumer_offsets.c.group_name == group,
        consumer_offsets.c.stream == stream,
        consumer_offsets.c.partition == partition,
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)


async def protected_floor(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, prefix: str
) -> int | None:
    """The lowest committed offset among system groups (names starting with ``prefix``)."""
    query = select(func.min(consumer_offsets.c.committed_offset)).where(
        consumer_offsets.c.org_id == org_id,
        consumer_offsets.c.stream == stream,
        consumer_offsets.c.partition == partition,
        consumer_offsets.c.group_name.startswith(prefix, autoescape=True),
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)


async def first_offset_at(
    conn: AsyncConnection, org_id: int, stream: str, partition: int, since: datetime
) -> int | None:
    """The first offset of a partition received at or after ``since``."""
    query = select(func.min(events.c.log_offset)).where(
        events.c.org_id == org_id,
        events.c.stream == stream,
        events.c.partition == partition,
        events.c.received_at >= since,
    )
    value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else int(value)
