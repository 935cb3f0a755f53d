"""Streams of the event log: configuration, reading, metrics, consumer groups, retention.

Consumer groups follow Kafka: a group's committed offset for a partition is the next offset
it will read. Groups whose names start with ``$`` belong to junctionbox itself (the outbound
dispatcher is ``$dispatcher``); retention never deletes an event such a group has not read
yet, so an acknowledged event cannot expire before it has been dispatched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import StoredEvent
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.errors import ConflictError, NotFoundError, ValidationError
from junctionbox.services import audit
from junctionbox.store.database import Database
from junctionbox.store.queries import consumer_offsets as offsets
from junctionbox.store.queries import events as queries
from junctionbox.store.queries.consumer_offsets import GroupPosition
from junctionbox.store.queries.events import EventFilter, PartitionRecord, StreamRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

# Events a retention transaction deletes at most (a few tens of ms of one writer on SQLite).
TRIM_BATCH: Final = 5_000

SYSTEM_GROUP_PREFIX = "$"
# Every event must be dispatched before retention may remove it: a partition this group has
# not read yet keeps all of its events.
DISPATCHER_GROUP = "$dispatcher"
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_PARTITIONS = 1024


@dataclass(frozen=True)
class StreamInfo:
    stream: StreamRecord
    partitions: list[PartitionRecord]

    @property
    def event_count(self) -> int:
        return sum(p.event_count for p in self.partitions)

    @property
    def byte_count(self) -> int:
        return sum(p.byte_count for p in self.partitions)


@dataclass(frozen=True)
class StreamMetrics:
    info: StreamInfo
    events_last_minute: int
    events_last_hour: int
    groups: list[GroupPosition]


@dataclass(frozen=True)
class StreamSettings:
    partition_count: int
    retention_seconds: int | None = None
    retention_bytes: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class RetentionReport:
    streams: int = 0
    events: int = 0
    bytes: int = 0


class StreamService:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    # --- streams ---

    async def all(self, tenant: TenantContext) -> list[StreamInfo]:
        async with self.db.read() as conn:
            streams = await queries.list_streams(conn, tenant.org_id)
            return [
                StreamInfo(s, await queries.partitions(conn, s.org_id, s.name)) for s in streams
            ]

    async def get(self, tenant: TenantContext, name: str) -> StreamInfo:
        async with self.db.read() as conn:
            return await self._info(conn, tenant.org_id, name)

    async def configure(
        self, tenant: TenantContext, name: str, wanted: StreamSettings
    ) -> tuple[StreamInfo, bool]:
        """Create the stream or change it; partitions may only be added (keys would move)."""
        async with self.db.write() as conn:
            before = await queries.get_stream(conn, tenant.org_id, name)
            now = self.clock()
            values = _settings_values(wanted)
            if before is None:
                await queries.create_stream(
                    conn,
                    {
                        "org_id": tenant.org_id,
                        "name": name,
                        **values,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
            else:
                _check_growth(before, wanted)
                await queries.update_stream(
                    conn, tenant.org_id, name, {**values, "updated_at": now}
                )
                await queries.add_partitions(
                    conn, tenant.org_id, name, before.partition_count, wanted.partition_count
                )
            after = await self._info(conn, tenant.org_id, name)
            await audit.record(
                conn,
                tenant.principal,
                "stream.create" if before is None else "stream.update",
                "event_stream",
                name,
                org_id=tenant.org_id,
                before=_audit_view(before),
                after=_audit_view(after.stream),
            )
            return after, before is None

    async def delete(self, tenant: TenantContext, name: str) -> int:
        async with self.db.write() as conn:
            before = await queries.get_stream(conn, tenant.org_id, name)
            if before is None:
                raise NotFoundError(f"stream {name!r} not found")
            removed = await queries.delete_stream(conn, tenant.org_id, name)
            await audit.record(
                conn,
                tenant.principal,
                "stream.delete",
                "event_stream",
                name,
                org_id=tenant.org_id,
                before={**(_audit_view(before) or {}), "events": removed},
            )
            return removed

    async def read(
        self, tenant: TenantContext, where: EventFilter, page: PageRequest, *, by_time: bool
    ) -> tuple[StreamInfo, Page[StoredEvent]]:
        """The stream and one page of its events that match ``where``."""
        if where.org_id != tenant.org_id:
            raise NotFoundError("stream not found")
        async with self.db.read() as conn:
            info = await self._info(conn, tenant.org_id, where.stream)
            found = await queries.read(
                conn, where, limit=page.limit, skip=page.offset, by_time=by_time
            )
            total = await queries.count(conn, where)
        return info, Page(found, total, page)

    async def metrics(self, tenant: TenantContext, name: str | None = None) -> list[StreamMetrics]:
        now = self.clock()
        async with self.db.read() as conn:
            names = (
                [name]
                if name
                else [s.name for s in await queries.list_streams(conn, tenant.org_id)]
            )
            found = []
            for stream in names:
                info = await self._info(conn, tenant.org_id, stream)
                minute = await queries.received_since(
                    conn, tenant.org_id, stream, now - timedelta(minutes=1)
                )
                hour = await queries.received_since(
                    conn, tenant.org_id, stream, now - timedelta(hours=1)
                )
                groups = await offsets.positions(conn, tenant.org_id, stream=stream)
                found.append(StreamMetrics(info, minute, hour, groups))
            return found

    # --- consumer groups ---

    async def groups(self, tenant: TenantContext, group: str | None = None) -> list[GroupPosition]:
        async with self.db.read() as conn:
            return await offsets.positions(conn, tenant.org_id, group=group)

    async def group_read(
        self, tenant: TenantContext, group: str, stream: str, limit: int
    ) -> tuple[list[StoredEvent], dict[int, int]]:
        """Up to ``limit`` events after the group's committed offsets (earliest retained for
        partitions it never committed), and the offsets to commit once they are processed."""
        _check_group(group)
        async with self.db.read() as conn:
            info = await self._info(conn, tenant.org_id, stream)
            committed = {
                p.partition: p.committed_offset
                for p in await offsets.positions(conn, tenant.org_id, group=group, stream=stream)
            }
            found: list[StoredEvent] = []
            following: dict[int, int] = {}
            for part in info.partitions:
                start = max(committed.get(part.partition, part.first_offset), part.first_offset)
                batch = await queries.read_after(
                    conn, tenant.org_id, stream, part.partition, start - 1, limit - len(found)
                )
                found.extend(batch)
                following[part.partition] = batch[-1].offset + 1 if batch else start
                if len(found) >= limit:
                    break
            return found, following

    async def group_commit(
        self, tenant: TenantContext, group: str, stream: str, positions: dict[int, int]
    ) -> list[GroupPosition]:
        _check_group(group)
        async with self.db.write() as conn:
            info = await self._info(conn, tenant.org_id, stream)
            ends = {p.partition: p.next_offset for p in info.partitions}
            for partition, offset in positions.items():
                if partition not in ends:
                    raise ValidationError(f"stream {stream!r} has no partition {partition}")
                if not 0 <= offset <= ends[partition]:
                    raise ValidationError(
                        f"offset {offset} is outside partition {partition} (0..{ends[partition]})"
                    )
            await offsets.commit(conn, tenant.org_id, group, stream, positions, self.clock())
            return await offsets.positions(conn, tenant.org_id, group=group, stream=stream)

    async def group_seek(
        self, tenant: TenantContext, group: str, stream: str, to: str | datetime
    ) -> list[GroupPosition]:
        """Move the group to ``earliest``, ``latest`` or the first event at a time."""
        async with self.db.read() as conn:
            info = await self._info(conn, tenant.org_id, stream)
            positions = {}
            for part in info.partitions:
                if isinstance(to, datetime):
                    at = await offsets.first_offset_at(
                        conn, tenant.org_id, stream, part.partition, to
                    )
                    positions[part.partition] = part.next_offset if at is None else at
                elif to == "earliest":
                    positions[part.partition] = part.first_offset
                elif to == "latest":
                    positions[part.partition] = part.next_offset
                else:
                    raise ValidationError("seek to earliest, latest or a time")
        return await self.group_commit(tenant, group, stream, positions)

    async def group_delete(self, tenant: TenantContext, group: str, stream: str | None) -> None:
        _check_group(group)
        async with self.db.write() as conn:
            if not await offsets.forget(conn, tenant.org_id, group, stream):
                raise NotFoundError(f"consumer group {group!r} not found")

    # --- retention ---

    async def enforce_retention(self) -> RetentionReport:
        """Trim every stream with a retention setting, partition by partition, at most
        ``TRIM_BATCH`` events per transaction: a retention shortened on a large log would
        otherwise delete millions of events in one transaction (holding SQLite's write lock,
        and every publish behind it, for as long)."""
        async with self.db.read() as conn:
            streams = await queries.streams_with_retention(conn)
        report = RetentionReport()
        for stream in streams:
            for partition in range(stream.partition_count):
                removed, size = await self._trim_partition(stream, partition)
                if removed:
                    report = RetentionReport(
                        report.streams + 1, report.events + removed, report.bytes + size
                    )
        if report.events:
            log.info("retention removed %d events (%d bytes)", report.events, report.bytes)
        return report

    async def _trim_partition(self, stream: StreamRecord, partition: int) -> tuple[int, int]:
        removed = size = 0
        more = True
        while more:
            async with self.db.write() as conn:
                batch, freed, more = await self._trim(conn, stream, partition)
            removed, size = removed + batch, size + freed
        return removed, size

    async def _trim(
        self, conn: AsyncConnection, stream: StreamRecord, partition: int
    ) -> tuple[int, int, bool]:
        """One batch of a partition's trim: (events, bytes) removed, and whether more are
        due."""
        org_id, name = stream.org_id, stream.name
        parts = {p.partition: p for p in await queries.partitions(conn, org_id, name)}
        part = parts.get(partition)
        if part is None:
            return 0, 0, False
        if await offsets.committed_offset(conn, org_id, DISPATCHER_GROUP, name, partition) is None:
            return 0, 0, False
        below = part.first_offset
        if stream.retention_seconds is not None:
            cutoff = self.clock() - timedelta(seconds=stream.retention_seconds)
            first_kept = await offsets.first_offset_at(conn, org_id, name, partition, cutoff)
            below = max(below, part.next_offset if first_kept is None else first_kept)
        if stream.retention_bytes is not None and part.byte_count > stream.retention_bytes:
            excess = part.byte_count - stream.retention_bytes
            below = max(below, await queries.offset_freeing(conn, org_id, name, partition, excess))
        floor = await offsets.protected_floor(conn, org_id, name, partition, SYSTEM_GROUP_PREFIX)
        if floor is not None:
            below = min(below, floor)
        if below <= part.first_offset:
            return 0, 0, False
        batch_below = min(below, part.first_offset + TRIM_BATCH)
        removed, size = await queries.trim(conn, org_id, name, partition, batch_below)
        return removed, size, batch_below < below

    async def _info(self, conn: AsyncConnection, org_id: int, name: str) -> StreamInfo:
        stream = await queries.get_stream(conn, org_id, name)
        if stream is None:
            raise NotFoundError(f"stream {name!r} not found")
        return StreamInfo(stream, await queries.partitions(conn, org_id, name))


def _settings_values(wanted: StreamSettings) -> dict[str, Any]:
    if not 1 <= wanted.partition_count <= MAX_PARTITIONS:
        raise ValidationError(f"partitionCount must be 1-{MAX_PARTITIONS}")
    return {
        "partition_count": wanted.partition_count,
        "retention_seconds": wanted.retention_seconds,
        "retention_bytes": wanted.retention_bytes,
        "description": wanted.description,
    }


def _check_growth(before: StreamRecord, wanted: StreamSettings) -> None:
    if wanted.partition_count < before.partition_count:
        raise ConflictError(
            f"stream {before.name!r} has {before.partition_count} partitions; partitions can be "
            "added but not removed (their events and offsets would be lost)"
        )


def _check_group(group: str) -> None:
    if not _GROUP.match(group):
        raise ValidationError(
            "consumer group names are 1-100 letters, digits, '.', '_' or '-' "
            "(names starting with '$' are reserved for junctionbox)"
        )


def _audit_view(stream: StreamRecord | None) -> dict[str, Any] | None:
    if stream is None:
        return None
    return {
        "name": stream.name,
        "partitionCount": stream.partition_count,
        "retentionSeconds": stream.retention_seconds,
        "retentionBytes": stream.retention_bytes,
        "description": stream.description,
    }
