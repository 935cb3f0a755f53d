"""Delivery-log rows inserted at the driver's pace: every writer of ``delivery_logs`` (the
delivery worker's commits, the inbound proxy's batches and failures, the webhook receiver).

SQLAlchemy's ``executemany`` converts every parameter of every row on its way to the
driver: about 25 µs of CPU per 32-column row (measured, on both databases), more than the
database's own work. Here the INSERT is compiled once per dialect and the rows go to the
driver as tuples in column order; only the columns whose type converts values (timestamps,
JSON, booleans) are converted, to what SQLAlchemy would have sent. SQLite gets a whole
batch in one hand-over to aiosqlite's thread, as multi-row INSERTs; PostgreSQL a binary
``COPY`` (a plain ``executemany`` for a few rows).

Values are capped as every delivery-log row is (``delivery_attempts.attempt_values``), and
every text is cut to its column's length: one row too long for PostgreSQL would otherwise
fail the whole batch.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import JSON, Dialect, String
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.database import dumps_json
from junctionbox.store.queries.delivery_attempts import (
    MAX_LOGGED_URL_BYTES,
    AttemptRow,
    cap_headers,
    cap_text,
)
from junctionbox.store.queries.driver_calls import (
    Processor,
    Processors,
    bind_processor,
    copy_records,
    pg_driver,
    positional_insert,
    sqlite_run,
)
from junctionbox.store.tables import delivery_logs
from junctionbox.store.types import UTCDateTime, sqlite_utc_text

COLUMNS: Final = tuple(column.name for column in delivery_logs.columns)
_FIELDS: Final = operator.attrgetter(*COLUMNS)  # an AttemptRow's values, in column order
_AT: Final = {name: index for index, name in enumerate(COLUMNS)}
# attempt_values' caps: bodies and errors 64 KiB, the URL 8 KiB, headers 64 KiB.
_TEXTS: Final = tuple(
    _AT[name] for name in ("original_payload", "request_body", "response_body", "error_message")
)
_ORIGINAL_PAYLOAD: Final = _AT["original_payload"]
_REQUEST_BODY: Final = _AT["request_body"]
_URL: Final = _AT["target_url"]
_JSON: Final = frozenset(
    index for index, column in enumerate(delivery_logs.columns) if isinstance(column.type, JSON)
)
_HEADERS: Final = (_AT["request_headers"], _AT["response_headers"])
_LENGTHS: Final = tuple(
    (index, column.type.length)
    for index, column in enumerate(delivery_logs.columns)
    if isinstance(column.type, String) and column.type.length
)
# Below this many rows PostgreSQL gets an executemany: COPY's extra round trip costs more.
_COPY_FROM: Final = 16
# SQLite: rows per INSERT statement (32 parameters each, far below its limit). One
# statement per many rows is one step of the driver, which releases the GIL once, where
# ``executemany`` releases and takes it back for every row.
_ROWS_PER_STATEMENT: Final = 100

_MULTI_ROW: dict[tuple[str, int], str] = {}


def _processor(name: str, dialect: Dialect) -> Processor | None:
    column_type = delivery_logs.c[name].type
    if isinstance(column_type, JSON):
        return dumps_json  # the engine's own serialiser, without SQLAlchemy's wrapping
    if isinstance(column_type, UTCDateTime) and dialect.name == "sqlite":
        return sqlite_utc_text
    return bind_processor(delivery_logs, name, dialect)


def _compiled(dialect: Dialect) -> tuple[str, Processors]:
    """The driver-level INSERT of every column (``COLUMNS`` order) and its converters."""
    return positional_insert(delivery_logs, COLUMNS, dialect, _processor)


def row_values(row: AttemptRow, processors: Processors) -> tuple[Any, ...]:
    """The row's column values in ``COLUMNS`` order, capped and converted."""
    values = list(_FIELDS(row))
    # Without a transformation the request body is the event's payload itself: capped (and
    # decoded) once.
    same = values[_REQUEST_BODY] is values[_ORIGINAL_PAYLOAD]
    for index in _TEXTS:
        if not (same and index == _REQUEST_BODY):
            values[index] = cap_text(values[index])
    if same:
        values[_REQUEST_BODY] = values[_ORIGINAL_PAYLOAD]
    values[_URL] = cap_text(values[_URL], MAX_LOGGED_URL_BYTES)
    for index in _HEADERS:
        values[index] = cap_headers(values[index])
    for index, length in _LENGTHS:
        value = values[index]
        if value is not None and len(value) > length:
            values[index] = value[:length]
    for index, processor in processors:
        value = values[index]
        # JSON columns store None as JSON null, as SQLAlchemy's JSON type does by default.
        if value is not None or index in _JSON:
            values[index] = processor(value)
    return tuple(values)


async def insert_log_rows(conn: AsyncConnection, rows: Sequence[AttemptRow]) -> None:
    """Insert ``rows`` into ``delivery_logs`` in the transaction of ``conn``."""
    if not rows:
        return
    sql, processors = _compiled(conn.dialect)
    values = [row_values(row, processors) for row in rows]
    if conn.dialect.name == "sqlite":
        # One hand-over to aiosqlite's thread for the whole batch.
        await sqlite_run(conn, lambda sqlite: _sqlite_insert(sqlite, sql, values))
    elif conn.dialect.name == "postgresql" and len(values) >= _COPY_FROM:
        # pg_driver: the COPY must run inside the caller's transaction, even as its first
        # statement (SQLAlchemy begins it lazily, with its own first statement).
        await _copy(await pg_driver(conn), values)
    else:
        await conn.exec_driver_sql(sql, values)


def log_row_values(dialect: Dialect, rows: Sequence[AttemptRow]) -> list[tuple[Any, ...]]:
    """The rows' values as :func:`insert_log_rows` sends them (for
    :func:`insert_on_sqlite`, in a caller's own call on aiosqlite's thread)."""
    _, processors = _compiled(dialect)
    return [row_values(row, processors) for row in rows]


def insert_on_sqlite(
    sqlite: sqlite3.Connection, dialect: Dialect, values: list[tuple[Any, ...]]
) -> None:
    """Insert rows made by :func:`log_row_values`, on aiosqlite's thread."""
    if values:
        _sqlite_insert(sqlite, _compiled(dialect)[0], values)


def _sqlite_insert(sqlite: sqlite3.Connection, sql: str, values: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(values), _ROWS_PER_STATEMENT):
        chunk = values[start : start + _ROWS_PER_STATEMENT]
        sqlite.execute(_multi_row(sql, len(chunk)), list(itertools.chain.from_iterable(chunk)))


def _multi_row(sql: str, rows: int) -> str:
    """``sql`` (one row's INSERT) extended to ``rows`` rows; at most
    ``_ROWS_PER_STATEMENT`` texts per statement are ever made."""
    found = _MULTI_ROW.get((sql, rows))
    if found is None:
        head, _, group = sql.partition(" VALUES ")
        found = _MULTI_ROW[sql, rows] = head + " VALUES " + ", ".join([group] * rows)
    return found


async def _copy(driver: Any, values: list[tuple[Any, ...]]) -> None:
    """``COPY delivery_logs FROM STDIN`` on the transaction's asyncpg connection."""
    await copy_records(driver, "delivery_logs", values, COLUMNS)
