"""Jobs inserted at the driver's pace (``JobQueue.enqueue``: the dispatcher's batches, the
DLQ's redrives, scheduled occurrences).

Through SQLAlchemy an enqueue was two statements (the INSERT ... ON CONFLICT DO NOTHING
and the look-up of the ids holding the batch's dedupe keys), each with SQLAlchemy's
per-statement and per-row work and, on SQLite, three or four hand-overs to aiosqlite's
thread. Here the INSERT is compiled once per dialect, rows go to the driver as tuples in
column order (converted by the columns' own bind processors), and the look-up only runs
when a row was in fact not inserted (a repeated dedupe key):

* SQLite: one hand-over for the whole of it: multi-row INSERTs, their change count, and
  the look-up if one is needed.
* PostgreSQL: one statement, ``INSERT ... SELECT FROM`` the rows ``... RETURNING id`` (a few
  rows as scalar parameters, more as one array per column: ``driver_calls.pg_rows``), and the
  look-up by ``dedupe_key = ANY(...)`` if fewer ids came back than rows went in.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import JSON, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.store.database import dumps_json
from junctionbox.store.queries.driver_calls import (
    Processor,
    Processors,
    bind_processor,
    pg_call,
    pg_driver,
    pg_rows,
    pg_rows_arguments,
    pg_rows_form,
    positional_insert,
    sqlite_run,
)
from junctionbox.store.tables import jobs

COLUMNS: Final = tuple(column.name for column in jobs.columns)
_KIND: Final = COLUMNS.index("kind")
_DEDUPE_KEY: Final = COLUMNS.index("dedupe_key")
CONFLICT: Final = " ON CONFLICT (kind, dedupe_key) DO NOTHING"
# SQLite: rows per INSERT (19 parameters each, far below its limit of 32766); keys per
# look-up statement.
_ROWS_PER_STATEMENT: Final = 100
_KEYS_PER_LOOKUP: Final = 500
_LOOKUP_SQLITE: Final = "SELECT kind, dedupe_key, id FROM jobs WHERE kind = ? AND dedupe_key IN "
_LOOKUP_PG: Final = (
    "SELECT kind, dedupe_key, id FROM jobs WHERE kind = $1 AND dedupe_key = ANY($2::varchar[])"
)
_MULTI_ROW: dict[tuple[str, int], str] = {}
_INSERT_SQL: dict[tuple[str, bool, int], str] = {}

Row = tuple[Any, ...]
Holders = dict[tuple[str, str], str]


def _processor(name: str, dialect: Dialect) -> Processor | None:
    if isinstance(jobs.c[name].type, JSON):
        return dumps_json  # the engine's own serialiser, as SQLAlchemy's JSON type calls it
    return bind_processor(jobs, name, dialect)


def _compiled(dialect: Dialect) -> tuple[str, Processors]:
    return positional_insert(jobs, COLUMNS, dialect, _processor)


def converted(rows: Sequence[Row], processors: Processors) -> list[Row]:
    """The rows (in ``COLUMNS`` order) with each column's bind processor applied, as
    SQLAlchemy would send them (None stays None). A column holding one object throughout
    (the instants an enqueue shares) is converted once: identity, not equality, as equal
    values may convert differently (``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``)."""
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))
    for index, processor in processors:
        values = columns[index]
        first = values[0]
        if all(value is first for value in values):
            columns[index] = (None if first is None else processor(first),) * len(values)
        else:
            columns[index] = tuple(None if v is None else processor(v) for v in values)
    return list(zip(*columns, strict=True))


async def insert_jobs(
    conn: AsyncConnection, rows: Sequence[Row], *, notify: tuple[str, list[str]] | None = None
) -> Holders | None:
    """Insert ``rows`` (``COLUMNS`` order) unless their (kind, dedupe_key) exists; None when
    every row was inserted, else the id now holding each (kind, dedupe_key) of the rows
    (a row's own, or an older job's). PostgreSQL: ``notify`` (channel, payloads) sends
    ``pg_notify(channel, payload)`` for each payload from the same statement."""
    if not rows:
        return None
    sql, processors = _compiled(conn.dialect)
    values = converted(rows, processors)
    if conn.dialect.name == "sqlite":
        return await sqlite_run(conn, lambda sqlite: _sqlite_insert(sqlite, sql, values))
    return await _pg_insert(conn, values, notify)


def _sqlite_insert(sqlite: sqlite3.Connection, sql: str, values: list[Row]) -> Holders | None:
    inserted = 0
    for start in range(0, len(values), _ROWS_PER_STATEMENT):
        chunk = values[start : start + _ROWS_PER_STATEMENT]
        cursor = sqlite.execute(_multi_row(sql, len(chunk)), list(itertools.chain(*chunk)))
        inserted += cursor.rowcount
    if inserted == len(values):
        return None
    found: Holders = {}
    for kind, keys in _keys_by_kind(values).items():
        for start in range(0, len(keys), _KEYS_PER_LOOKUP):
            some = keys[start : start + _KEYS_PER_LOOKUP]
            marks = "(" + ", ".join("?" * len(some)) + ")"
            rows = sqlite.execute(_LOOKUP_SQLITE + marks, [kind, *some]).fetchall()
            found.update({(k, key): job_id for k, key, job_id in rows})
    return found


def _multi_row(sql: str, rows: int) -> str:
    """The one-row INSERT extended to ``rows`` rows, ignoring conflicting dedupe keys."""
    found = _MULTI_ROW.get((sql, rows))
    if found is None:
        head, _, group = sql.partition(" VALUES ")
        found = _MULTI_ROW[sql, rows] = head + " VALUES " + ", ".join([group] * rows) + CONFLICT
    return found


async def _pg_insert(
    conn: AsyncConnection, values: list[Row], notify: tuple[str, list[str]] | None
) -> Holders | None:
    driver = await pg_driver(conn)
    sql = _insert_sql(conn.dialect, len(values), notifying=notify is not None)
    arguments = pg_rows_arguments(values, len(COLUMNS))
    inserted = await pg_call(driver.fetch(sql, *(notify or ()), *arguments))
    if len(inserted) == len(values):
        return None
    found: Holders = {}
    for kind, keys in _keys_by_kind(values).items():
        rows = await pg_call(driver.fetch(_LOOKUP_PG, kind, keys))
        found.update({(k, key): job_id for k, key, job_id in rows})
    return found


# The NOTIFYs ride on the INSERT: the uncorrelated sub-select in its WHERE is run once,
# before the first row (PostgreSQL runs a plain SELECT in WITH only when it is read).
# Parameters $1 and $2: the channel and the payloads; the rows follow.
_NOTIFYING: Final = (
    "WITH woken AS (SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS q(payload)) "
)
_AFTER_NOTIFYING: Final = " WHERE (SELECT count(*) FROM woken) >= 0"


def _insert_sql(dialect: Dialect, rows: int, *, notifying: bool) -> str:
    """``INSERT INTO jobs (...) SELECT ... FROM`` the rows; ``notifying``, with
    ``_NOTIFYING`` first."""
    key = (dialect.name, notifying, pg_rows_form(rows))
    found = _INSERT_SQL.get(key)
    if found is None:
        found = _INSERT_SQL[key] = "".join(
            [
                _NOTIFYING if notifying else "",
                insert_from_rows(dialect, 3 if notifying else 1, rows),
                _AFTER_NOTIFYING if notifying else "",
                f"{CONFLICT} RETURNING id",
            ]
        )
    return found


def insert_from_rows(dialect: Dialect, first: int, rows: int) -> str:
    """PostgreSQL: ``INSERT INTO jobs (...) SELECT ... FROM`` ``rows`` rows given as
    parameters from number ``first`` on (``driver_calls.pg_rows``: JSON as text, cast
    back; :func:`pg_insert_arguments` gives them), for a statement to finish."""
    types, selected = [], []
    for number, column in enumerate(jobs.columns, start=1):
        if isinstance(column.type, JSON):
            types.append("text")
            selected.append(f"CAST(c{number} AS {column.type.compile(dialect)})")
        else:
            types.append(column.type.compile(dialect))
            selected.append(f"c{number}")
    names = ", ".join(f"c{number}" for number in range(1, len(types) + 1))
    # Only the table's own column names and types go into the text, never a value.
    source = f"{pg_rows(types, first, rows)} AS t({names})"
    return f"INSERT INTO jobs ({', '.join(COLUMNS)}) SELECT {', '.join(selected)} FROM {source}"  # noqa: S608


def pg_insert_arguments(dialect: Dialect, rows: Sequence[Row]) -> list[Any]:
    """The parameters of :func:`insert_from_rows` for ``rows`` (``COLUMNS`` order)."""
    _, processors = _compiled(dialect)
    return pg_rows_arguments(converted(rows, processors), len(COLUMNS))


def _keys_by_kind(values: Sequence[Row]) -> dict[str, list[str]]:
    keys: dict[str, set[str]] = {}
    for row in values:
        if row[_DEDUPE_KEY] is not None:
            keys.setdefault(row[_KIND], set()).add(row[_DEDUPE_KEY])
    return {kind: sorted(found) for kind, found in keys.items()}
