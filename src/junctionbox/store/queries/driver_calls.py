"""Calls straight to the database driver (below SQLAlchemy), with the driver's errors turned
into junctionbox's as the database layer turns SQLAlchemy's: the hot inserts (events, log
rows) skip SQLAlchemy's per-row work but must fail the same way."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
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
    (SQLAlchemy's adapter takes three or four per statement), sqlite3's errors translated."""
    raw = await conn.get_raw_connection()
    return await sqlite_driver_run(raw.driver_connection, work)


async def sqlite_driver_run(driver: Any, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(sqlite3 connection)`` on the thread of ``driver`` (an aiosqlite connection),
    in one hand-over, sqlite3's errors translated. aiosqlite runs every call on its thread
    through ``_execute`` and keeps the sqlite3 connection as ``_conn``."""
    return await sqlite_call(driver._execute(lambda: work(driver._conn)))


async def pg_driver(conn: AsyncConnection) -> Any:
    """The transaction's asyncpg connection, its transaction begun: SQLAlchemy's adapter
    sends ``BEGIN`` only with its first statement, and a statement sent to the driver
    before that would run (and commit) on its own."""
    raw = await conn.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    if adapter._transaction is None and adapter.isolation_level != "autocommit":
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                try:
                    await adapter._start_transaction()
                except Exception as exc:  # the adapter's own errors: BEGIN failed
                    raise ServiceUnavailableError("database unavailable") from exc
    return raw.driver_connection


async def pg_call(call: Awaitable[T]) -> T:
    """``call``'s result (a call on an asyncpg connection), asyncpg's errors translated as
    the database layer translates SQLAlchemy's (``database.translate_error``)."""
    import asyncpg  # only ever imported on PostgreSQL

    try:
        return await call
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise ConflictError("conflicts with an existing resource") from exc
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        raise ServiceUnavailableError("database unavailable") from exc
    except asyncpg.PostgresError as exc:
        name = type(exc).__name__
        if "Connection" in name or "CannotConnect" in name or "Interface" in name:
            raise ServiceUnavailableError("database unavailable") from exc
        raise JunctionboxError() from exc


# A few rows go to PostgreSQL as a VALUES list of scalar parameters, more as one array per
# column (``unnest``: one text for any number of rows). asyncpg encodes an array parameter
# several times slower than a scalar (a one-row insert of 19 one-element arrays cost 65 us of
# the client's CPU against 38 as scalars, and about 45 us more of PostgreSQL's), and with
# array parameters PostgreSQL judges every custom plan cheaper than the generic one (it
# knows the arrays' lengths), so it plans such a statement anew at every execution. But each
# row count is a text of its own, and each text is planned five times on each pooled
# connection before PostgreSQL may keep its plan: up to four forms of the publish's append
# made its p99 at 1,000 single publishes a second 8-19 ms against 6-7. So by default only a
# single row (the common single publish and dispatch) goes as scalars; a caller may allow
# more (``at_most``).


def pg_rows(types: Sequence[str], first: int, count: int, *, at_most: int = 1) -> str:
    """``count`` rows of columns of ``types`` (PostgreSQL type names) from the parameters
    numbered from ``first``, as a FROM item to alias (``... AS t(a, b)``): ``(VALUES
    ($1::t1, $2::t2), ...)`` for ``at_most`` rows or fewer, else ``unnest($1::t1[],
    $2::t2[])``. :func:`pg_rows_arguments` gives the parameters."""
    if 0 < count <= at_most:
        numbers = iter(range(first, first + count * len(types)))
        rows = (", ".join(f"${next(numbers)}::{kind}" for kind in types) for _ in range(count))
        return "(VALUES " + ", ".join(f"({row})" for row in rows) + ")"
    return "unnest(" + ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, first)) + ")"


def pg_rows_arguments(rows: Sequence[Sequence[Any]], width: int, *, at_most: int = 1) -> list[Any]:
    """The parameters of :func:`pg_rows` for ``rows`` (each of ``width`` values)."""
    if 0 < len(rows) <= at_most:
        return [value for row in rows for value in row]
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def pg_rows_width(width: int, count: int, *, at_most: int = 1) -> int:
    """How many parameters :func:`pg_rows` takes for ``count`` rows of ``width`` columns."""
    return width * count if 0 < count <= at_most else width


def pg_rows_form(count: int, *, at_most: int = 1) -> int:
    """What the text of :func:`pg_rows` depends on (a cache key): the row count up to
    ``at_most``, else 0."""
    return count if count <= at_most else 0


def result_processors(columns: Sequence[Any], dialect: Dialect) -> Processors:
    """By position, the converters SQLAlchemy would apply to these columns' values as the
    driver returns them (timestamps, JSON, ...)."""
    return tuple(
        (index, processor)
        for index, column in enumerate(columns)
        if (processor := column.type.dialect_impl(dialect).result_processor(dialect, None))
        is not None
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A SQLAlchemy statement compiled for one dialect, to run straight on the driver: its
    text, its positional parameters' names (with the values of those the compiler added
    itself, such as SQLite's ``OFFSET``) and converters, and its result columns'."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]
    binds: Processors
    results: Processors

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        values = [given[name] if name in given else self.fixed[name] for name in self.names]
        for index, processor in self.binds:
            if values[index] is not None:
                values[index] = processor(values[index])
        return tuple(values)

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if not self.results:
            return tuple(row)
        values = list(row)
        for index, processor in self.results:
            values[index] = processor(values[index])
        return tuple(values)


_PREPARED: dict[tuple[int, str, str], tuple[Any, Prepared]] = {}


def prepare(statement: Any, dialect: Dialect) -> Prepared:
    """``statement`` (a module-level constant: it is cached by identity) compiled for
    ``dialect``, once."""
    key = (id(statement), dialect.name, dialect.driver)
    found = _PREPARED.get(key)
    if found is None or found[0] is not statement:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            (index, processor)
            for index, name in enumerate(names)
            if (
                processor := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            )
            is not None
        )
        selected = getattr(statement, "selected_columns", ())
        prepared = Prepared(
            compiled.string,
            names,
            {name: compiled.params[name] for name in names},
            binds,
            result_processors(list(selected), dialect),
        )
        found = _PREPARED[key] = (statement, prepared)
    return found[1]


async def fetch_rows(
    conn: AsyncConnection, statement: Any, given: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` (a SELECT, or DML with RETURNING) run straight on the
    transaction's driver connection, converted as SQLAlchemy would convert them."""
    prepared = prepare(statement, conn.dialect)
    parameters = prepared.parameters(given)
    if conn.dialect.name == "sqlite":
        rows: Sequence[Any] = await sqlite_run(
            conn, lambda sqlite: sqlite.execute(prepared.sql, parameters).fetchall()
        )
    elif conn.dialect.name == "postgresql":
        driver = await pg_driver(conn)
        rows = await pg_call(driver.fetch(prepared.sql, *parameters))
    else:
        rows = (await conn.exec_driver_sql(prepared.sql, parameters)).all()
    return [prepared.row(row) for row in rows]


async def execute_counting(conn: AsyncConnection, statement: Any, given: Mapping[str, Any]) -> int:
    """Run ``statement`` (DML) straight on the transaction's driver connection; the number
    of rows it changed."""
    prepared = prepare(statement, conn.dialect)
    parameters = prepared.parameters(given)
    if conn.dialect.name == "sqlite":
        return await sqlite_run(
            conn, lambda sqlite: sqlite.execute(prepared.sql, parameters).rowcount
        )
    if conn.dialect.name == "postgresql":
        driver = await pg_driver(conn)
        status: str = await pg_call(driver.execute(prepared.sql, *parameters))
        return int(status.rsplit(" ", 1)[-1])  # "UPDATE 1"
    return int((await conn.exec_driver_sql(prepared.sql, parameters)).rowcount)


async def fetch_together(
    conn: AsyncConnection, queries: Sequence[tuple[Any, Mapping[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each (statement, parameters), in order, as :func:`fetch_rows` gives
    them; on SQLite all in one hand-over to aiosqlite's thread."""
    if conn.dialect.name != "sqlite":
        return [await fetch_rows(conn, statement, given) for statement, given in queries]
    prepared = [(prepare(statement, conn.dialect), given) for statement, given in queries]
    work = [(p.sql, p.parameters(given)) for p, given in prepared]

    def run(sqlite: sqlite3.Connection) -> list[list[Any]]:
        return [sqlite.execute(sql, parameters).fetchall() for sql, parameters in work]

    found = await sqlite_run(conn, run)
    return [[p.row(row) for row in rows] for (p, _), rows in zip(prepared, found, strict=True)]
