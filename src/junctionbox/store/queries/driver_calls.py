"""Calls straight to the database driver (below SQLAlchemy), with the driver's errors turned
into junctionbox's as the database layer turns SQLAlchemy's: the hot inserts (events, log
rows) skip SQLAlchemy's per-row work but must fail the same way."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Dialect, Table, bindparam, insert

from junctionbox.errors import ConflictError, JunctionboxError, ServiceUnavailableError

T = TypeVar("T")
Processor = Callable[[Any], Any]
Processors = tuple[tuple[int, Processor], ...]
_COMPILED: dict[tuple[str, str, str], tuple[str, Processors]] = {}


def positional_insert(
    table: Table,
    columns: Sequence[str],
    dialect: Dialect,
    processor_for: Callable[[str, Dialect], Processor | None],
) -> tuple[str, Processors]:
    """The driver-level INSERT of ``columns`` into ``table`` (positional parameters, in
    that order) and, by position, the converters ``processor_for`` gives the columns that
    need one: compiled once per table and dialect."""
    key = (table.name, dialect.name, dialect.driver)
    found = _COMPILED.get(key)
    if found is None:
        statement = insert(table).values({name: bindparam(name) for name in columns})
        compiled = statement.compile(dialect=dialect)
        if tuple(compiled.positiontup or ()) != tuple(columns):
            raise AssertionError(f"unexpected parameter order {compiled.positiontup}")
        processors = tuple(
            (index, processor)
            for index, name in enumerate(columns)
            if (processor := processor_for(name, dialect)) is not None
        )
        found = _COMPILED[key] = (compiled.string, processors)
    return found


def bind_processor(table: Table, name: str, dialect: Dialect) -> Processor | None:
    """The column's own bind processor in ``dialect`` (what SQLAlchemy would apply)."""
    processor: Processor | None = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    return processor


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
