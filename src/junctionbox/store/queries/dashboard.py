"""The console dashboard's one read that no rollup holds: events received since a time.

Counted per stream so that each count is a range of the ``(org_id, stream, received_at)``
index (an index-only count on PostgreSQL), never a scan of the tenant's whole log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.tables import event_streams, events


async def events_since(conn: AsyncConnection, org_ids: Sequence[int], since: datetime) -> int:
    streams = (
        await conn.execute(
            select(event_streams.c.org_id, event_streams.c.name).where(
                event_streams.c.org_id.in_(list(org_ids))
            )
        )
    ).all()
    total = 0
    for org_id, stream in streams:
        query = (
            select(func.count())
            .select_from(events)
            .where(
                events.c.org_id == org_id,
                events.c.stream == stream,
                events.c.received_at >= since,
            )
        )
        total += int((await conn.execute(query)).scalar_one())
    return total
