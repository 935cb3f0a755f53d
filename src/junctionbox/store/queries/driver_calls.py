"""Calls straight to the database driver (below SQLAlchemy), with the driver's errors turned
into junctionbox's as the database layer turns SQLAlchemy's: the hot inserts (events, log
rows) skip SQLAlchemy's per-row work but must fail the same way."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from junctionbox.errors import ConflictError, JunctionboxError, ServiceUnavailableError

T = TypeVar("T")


async def sqlite_call(call: Awaitable[T]) -> T:
    """``call``'s result (a call on aiosqlite's connection), sqlite3's errors translated."""
    try:
        return await call
    except sqlite3.IntegrityError as exc:
        raise ConflictError("conflicts with an existing resource") from exc
    except sqlite3.OperationalError as exc:
        raise ServiceUnavailableError("database unavailable") from exc
    except sqlite3.Error as exc:
        raise JunctionboxError() from exc


async def copy_records(
    driver: Any, table: str, records: list[tuple[Any, ...]], columns: Sequence[str]
) -> None:
    """``COPY table FROM STDIN`` (binary) on an asyncpg connection, asyncpg's errors
    translated (a unique violation is what a concurrent writer's earlier row causes)."""
    import asyncpg  # only ever imported on PostgreSQL

    try:
        await driver.copy_records_to_table(table, records=records, columns=list(columns))
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise ConflictError("conflicts with an existing resource") from exc
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        raise ServiceUnavailableError("database unavailable") from exc
