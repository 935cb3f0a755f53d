"""Calls straight to the database driver (below SQLAlchemy), with the driver's errors turned
into junctionbox's as the database layer turns SQLAlchemy's: the hot inserts (events, log
rows) skip SQLAlchemy's per-row work but must fail the same way."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Dialect, Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def sqlite_run(conn: AsyncConnection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(sqlite3 connection)`` on the transaction's aiosqlite thread, in one hand-over
    (SQLAlchemy's adapter takes three or four per statement), sqlite3's errors translated.
    aiosqlite runs every call on its thread through ``_execute`` and keeps the sqlite3
    connection as ``_conn``."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    return await sqlite_call(driver._execute(lambda: work(driver._conn)))


async def pg_driver(conn: AsyncConnection) -> Any:
    """The transaction's asyncpg connection, its transaction begun: SQLAlchemy's adapter
    sends BEGIN lazily, with its first statement, so a statement sent straight to the
    driver before that would run outside the transaction."""
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        await pg_call(adapter._start_transaction())
    return raw.driver_connection


async def pg_call(call: Awaitable[T]) -> T:
    """``call``'s result (a call on an asyncpg connection), asyncpg's errors translated as
    the database layer translates SQLAlchemy's."""
    import asyncpg  # only ever imported on PostgreSQL

    try:
        return await call
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise ConflictError("conflicts with an existing resource") from exc
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        raise ServiceUnavailableError("database unavailable") from exc
    except asyncpg.PostgresError as exc:
        raise JunctionboxError() from exc


def result_processors(columns: Sequence[Any], dialect: Dialect) -> Processors:
    """By position, the converters SQLAlchemy would apply to these columns' values as the
    driver returns them (timestamps, JSON, ...)."""
    return tuple(
        (index, processor)
        for index, column in enumerate(columns)
        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
        is not None
    )
