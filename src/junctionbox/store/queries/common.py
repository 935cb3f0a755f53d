"""Helpers shared by the query modules."""

from __future__ import annotations

from typing import Any, Final, TypeVar

from sqlalchemy import Select, Table, delete, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest
from junctionbox.store.database import Database

R = TypeVar("R")


def record_of(cls: type[R], row: Any) -> R:
    """A frozen record dataclass built from the row's columns of the same names."""
    return cls(**{name: row[name] for name in cls.__dataclass_fields__})  # type: ignore[attr-defined]


async def fetch_page(
    conn: AsyncConnection, query: Select[Any], page: PageRequest, *order_by: Any
) -> tuple[list[Any], int]:
    """Rows of one page and the total count of the unpaged query."""
    total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = await conn.execute(query.order_by(*order_by).limit(page.limit).offset(page.offset))
    return list(rows.mappings()), int(total)


# Rows one housekeeping delete removes at most: each is a short write transaction, so that
# an expiry sweep after a busy day does not hold SQLite's one writer (and every publish
# behind it) for seconds.
PURGE_BATCH: Final = 5_000


async def delete_some(conn: AsyncConnection, table: Table, where: Any, limit: int) -> int:
    """Delete at most ``limit`` rows of ``table`` matching ``where``; how many were deleted.
    The rows are picked by their physical address (SQLite's rowid, PostgreSQL's ctid),
    whatever the table's key."""
    postgres = conn.dialect.name == "postgresql"
    address: Any = literal_column("ctid" if postgres else "rowid")
    picked = select(address).select_from(table).where(where).limit(limit)
    if postgres:
        chosen = address == func.any(func.array(picked.scalar_subquery()))
    else:
        chosen = address.in_(picked.scalar_subquery())
    # ``where`` again: a row changed meanwhile (PostgreSQL re-reads it) is left alone.
    statement = delete(table).where(chosen, where)
    return int((await conn.execute(statement)).rowcount or 0)


async def purge(db: Database, table: Table, where: Any) -> int:
    """Delete every row of ``table`` matching ``where``, ``PURGE_BATCH`` rows per write
    transaction; how many were deleted."""
    total = 0
    while True:
        async with db.write() as conn:
            deleted = await delete_some(conn, table, where, PURGE_BATCH)
        total += deleted
        if deleted < PURGE_BATCH:
            return total
