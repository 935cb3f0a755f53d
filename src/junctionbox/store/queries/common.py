"""Helpers shared by the query modules."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.paging import PageRequest

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
