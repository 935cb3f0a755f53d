"""The delivery worker's reads for a batch of claimed jobs at the driver's level: the
integrations' change stamps and the events at the jobs' log positions (what
``delivery_attempts.integration_stamps`` and ``events_at`` read through SQLAlchemy).

Every batch the worker claims is prepared by these two reads: through SQLAlchemy each costs
more CPU than the database's own work (and on SQLite three or four hand-overs to the
driver's thread). Here SQLite runs both in ONE call on aiosqlite's thread; PostgreSQL gets
one statement each (the events' one a primary-key search per partition). Values come back as
SQLAlchemy's column types return them (aware UTC datetimes, parsed JSON, booleans, bytes).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Collection
from typing import Final

from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import StoredEvent
from junctionbox.store.database import dumps_json
from junctionbox.store.queries.delivery_attempts import IntegrationStamp, Position
from junctionbox.store.queries.driver_calls import pg_call, pg_driver
from junctionbox.store.queries.driver_calls import sqlite_run as on_sqlite
from junctionbox.store.queries.events import EVENT_COLUMN_NAMES, events_of_rows
from junctionbox.store.types import sqlite_utc_moment

_SQLITE_STAMPS: Final = (
    "SELECT id, version, updated_at, is_active FROM outbound_integrations"
    " WHERE id IN (SELECT value FROM json_each(?))"
)
_PG_STAMPS: Final = (
    "SELECT id, version, updated_at, is_active FROM outbound_integrations"
    " WHERE id = ANY($1::text[])"
)
# One partition's events: a search of the primary key per offset.
_SQLITE_EVENTS: Final = (
    f"SELECT {EVENT_COLUMN_NAMES} FROM events WHERE org_id = ? AND stream = ? AND partition = ?"  # noqa: S608 (constants)
    " AND log_offset IN (SELECT value FROM json_each(?))"
)
# PostgreSQL: one SELECT per partition, a primary-key search with ``= ANY``, joined by UNION
# ALL: one round trip. A join to the positions unnested was planned with the
# (org_id, stream, received_at) index while the table had no statistics yet (a fresh
# database), scanning the stream for every batch: bench/deliver.py's full PostgreSQL run fell
# from about 3,000 to 1,500 deliveries/s with it.
_PG_PARTITION_EVENTS: Final = (
    f"SELECT {EVENT_COLUMN_NAMES} FROM events WHERE org_id = ${{}} AND stream = ${{}}"  # noqa: S608 (constants)
    " AND partition = ${} AND log_offset = ANY(${}::bigint[])"
)


@functools.lru_cache(maxsize=32)
def _pg_events_sql(partitions: int) -> str:
    """The read of ``partitions`` partitions' events (a statement per count, cached)."""
    return " UNION ALL ".join(
        _PG_PARTITION_EVENTS.format(*range(4 * i + 1, 4 * i + 5)) for i in range(partitions)
    )


Stamps = dict[str, IntegrationStamp]
Events = dict[Position, StoredEvent]


async def stamps_and_events(
    conn: AsyncConnection, integration_ids: Collection[str], positions: Collection[Position]
) -> tuple[Stamps, Events]:
    """The integrations' (version, updated_at, is_active) (missing ids were deleted) and
    the events at these log positions (positions trimmed away are missing)."""
    ids = sorted(set(integration_ids))
    ordered = sorted(set(positions))
    if conn.dialect.name == "sqlite":
        dialect = conn.dialect
        return await on_sqlite(conn, lambda sqlite: _on_sqlite(sqlite, dialect, ids, ordered))
    driver = await pg_driver(conn)
    stamps: Stamps = {}
    if ids:
        for row in await pg_call(driver.fetch(_PG_STAMPS, ids)):
            stamps[row[0]] = (row[1], row[2], bool(row[3]))
    found: Events = {}
    if ordered:
        groups = _by_partition(ordered)
        arguments = [
            value
            for (org_id, stream, partition), offsets in groups.items()
            for value in (org_id, stream, partition, offsets)
        ]
        rows = await pg_call(driver.fetch(_pg_events_sql(len(groups)), *arguments))
        found = _by_position(events_of_rows(conn.dialect, rows))
    return stamps, found


def _by_partition(positions: list[Position]) -> dict[tuple[int, str, int], list[int]]:
    by_partition: dict[tuple[int, str, int], list[int]] = {}
    for org_id, stream, partition, offset in positions:
        by_partition.setdefault((org_id, stream, partition), []).append(offset)
    return by_partition


def _on_sqlite(
    sqlite: sqlite3.Connection, dialect: Dialect, ids: list[str], positions: list[Position]
) -> tuple[Stamps, Events]:
    stamps: Stamps = {}
    if ids:
        for integration_id, version, updated_at, is_active in sqlite.execute(
            _SQLITE_STAMPS, (dumps_json(ids),)
        ):
            moment = sqlite_utc_moment(updated_at)
            if moment is not None:  # NOT NULL
                stamps[integration_id] = (version, moment, bool(is_active))
    rows = []
    for (org_id, stream, partition), offsets in _by_partition(positions).items():
        values = (org_id, stream, partition, dumps_json(offsets))
        rows += sqlite.execute(_SQLITE_EVENTS, values).fetchall()
    return stamps, _by_position(events_of_rows(dialect, rows))


def _by_position(found: list[StoredEvent]) -> Events:
    return {(e.org_id, e.stream, e.partition, e.offset): e for e in found}
