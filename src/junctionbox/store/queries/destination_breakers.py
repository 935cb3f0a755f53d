"""Circuit breakers per (tenant, destination origin), shared by every worker node."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.tables import destination_breakers

_CHUNK = 400  # bound parameters per look-up (two per key)


@dataclass(frozen=True)
class BreakerRow:
    org_id: int
    destination: str
    state: str  # CLOSED | OPEN | HALF_OPEN
    failures: int
    successes: int
    opened_at: datetime | None
    updated_at: datetime


async def load_breakers(
    conn: AsyncConnection, keys: Collection[tuple[int, str]]
) -> list[BreakerRow]:
    """The stored rows of ``keys`` ((org_id, destination) pairs); missing keys are CLOSED."""
    table = destination_breakers
    ordered = sorted(set(keys))
    rows: list[BreakerRow] = []
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(table).where(tuple_(table.c.org_id, table.c.destination).in_(chunk))
        rows += [BreakerRow(**dict(row)) for row in (await conn.execute(query)).mappings()]
    return rows


async def save_breakers(conn: AsyncConnection, rows: Sequence[BreakerRow]) -> None:
    """Insert or overwrite rows, in key order (two nodes saving the same keys lock them in
    the same order, so they cannot deadlock)."""
    if not rows:
        return
    dialect_insert = sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert
    statement = dialect_insert(destination_breakers)
    statement = statement.on_conflict_do_update(
        index_elements=["org_id", "destination"],
        set_={
            "state": statement.excluded.state,
            "failures": statement.excluded.failures,
            "successes": statement.excluded.successes,
            "opened_at": statement.excluded.opened_at,
            "updated_at": statement.excluded.updated_at,
        },
    )
    values = [
        {
            "org_id": row.org_id,
            "destination": row.destination,
            "state": row.state,
            "failures": row.failures,
            "successes": row.successes,
            "opened_at": row.opened_at,
            "updated_at": row.updated_at,
        }
        for row in sorted(rows, key=lambda r: (r.org_id, r.destination))
    ]
    await conn.execute(statement, values)


async def breakers_of(conn: AsyncConnection, org_ids: Collection[int]) -> list[BreakerRow]:
    """Every stored breaker of the tenants (for operators and the console)."""
    table = destination_breakers
    query = (
        select(table)
        .where(table.c.org_id.in_(list(org_ids)))
        .order_by(table.c.org_id, table.c.destination)
    )
    return [BreakerRow(**dict(row)) for row in (await conn.execute(query)).mappings()]
