"""The delivery worker's commit on PostgreSQL for a batch of plain deliveries, in ONE
statement run in a transaction of its own (see :mod:`junctionbox.engine.delivery_commit`).

Through a transaction a batch was six round trips (BEGIN, the jobs' transition, the log
rows, the rollups, the streaks, COMMIT), each with its share of CPU on both sides, and each
a turn of the event loop on a publish's way to its delivery. For a batch in which every
attempt delivered and nothing else is to be written (no next action, no listener concerned,
no breaker changed, no claim), the statement below does it all, with data-modifying CTEs:

1. the batch's jobs, locked in id order, if every lease is still current;
2. only then (each part is conditioned on it): the jobs done, the log rows inserted, the
   rollups added (keys in a fixed order, as ``rollups.add_rollups``), the streaks of the
   integrations reset where they are not zero (locked in id order);

and returns the jobs it moved: all of them, or none when some lease was lost meanwhile, in
which case nothing at all was written and the caller takes the transaction's way, which
knows how to leave a lost job out. A single statement is atomic, so nothing else ever sees
a job done without its log row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, Dialect, String

from junctionbox.domain.rollups import RollupKey
from junctionbox.queue.jobs import Lease
from junctionbox.store.queries.driver_calls import (
    pg_call,
    pg_rows,
    pg_rows_arguments,
    pg_rows_form,
    pg_rows_width,
)
from junctionbox.store.queries.log_batches import COLUMNS as LOG_COLUMNS
from junctionbox.store.tables import delivery_logs, delivery_rollups

# A worker's commits gather a few outcomes at a moderate load: up to four rows go as scalars
# (driver_calls.pg_rows; with arrays this statement was planned anew every time, 0.5-0.7 ms
# of PostgreSQL's CPU). The pool's most recently used connections keep their plans.
_AT_MOST: Final = 4
_ROLLUP_COLUMNS: Final = tuple(column.name for column in delivery_rollups.columns)
_ROLLUP_KEY: Final = ("org_id", "integration_id", "bucket_start", "metric", "key")

# $1 the instant; then the leases', the log rows' and the rollups' rows (driver_calls.pg_rows).
_STATEMENT: Final = """
WITH v AS MATERIALIZED (
    SELECT * FROM {leases} AS v(id, token)
), ours AS MATERIALIZED (
    SELECT jobs.id FROM jobs JOIN v ON jobs.id = v.id AND jobs.lease_token = v.token
    WHERE jobs.state = 'running'
    ORDER BY jobs.id
    FOR UPDATE OF jobs
), whole AS MATERIALIZED (
    SELECT count(*) = (SELECT count(*) FROM v) AS ok FROM ours
), moved AS (
    UPDATE jobs SET state = 'done', finished_at = $1::timestamptz, updated_at = $1::timestamptz,
        lease_token = NULL, leased_until = NULL
    FROM ours WHERE jobs.id = ours.id AND (SELECT ok FROM whole)
    RETURNING jobs.id, jobs.queue
), l AS MATERIALIZED (
    SELECT * FROM {logs} AS l({log_columns})
), logged AS (
    INSERT INTO delivery_logs ({log_columns})
    SELECT {log_values} FROM l
    WHERE (SELECT ok FROM whole)
), counted AS (
    INSERT INTO delivery_rollups ({rollup_columns})
    SELECT * FROM {rollups} AS r({rollup_columns})
    WHERE (SELECT ok FROM whole)
    ON CONFLICT ({rollup_key}) DO UPDATE SET
        count = delivery_rollups.count + excluded.count,
        total_ms = delivery_rollups.total_ms + excluded.total_ms
), reset AS (
    UPDATE outbound_integrations SET consecutive_failures = 0
    WHERE id IN (
        SELECT id FROM outbound_integrations
        WHERE id IN (SELECT integration_id FROM l) AND consecutive_failures != 0
        ORDER BY id
        FOR UPDATE
    ) AND (SELECT ok FROM whole)
)
SELECT id, queue FROM moved
"""
_TEXTS: dict[tuple[str, int, int, int], str] = {}


def _parameter_type(column: Column[Any], dialect: Dialect) -> str:
    """A parameter's type: JSON goes as text (cast in the statement), strings as text (so
    that an over-long value fails rather than being cut by a cast), others as compiled."""
    if isinstance(column.type, JSON | String):
        return "text"
    return str(column.type.compile(dialect=dialect))


def _statement(dialect: Dialect, leases: int, logs: int, rollups: int) -> str:
    key = (
        dialect.driver,
        pg_rows_form(leases, at_most=_AT_MOST),
        pg_rows_form(logs, at_most=_AT_MOST),
        pg_rows_form(rollups, at_most=_AT_MOST),
    )
    found = _TEXTS.get(key)
    if found is not None:
        return found
    log_types = [_parameter_type(column, dialect) for column in delivery_logs.columns]
    rollup_types = [_parameter_type(column, dialect) for column in delivery_rollups.columns]
    log_values = ", ".join(
        f"CAST({column.name} AS {column.type.compile(dialect=dialect)})"
        if isinstance(column.type, JSON)
        else column.name
        for column in delivery_logs.columns
    )
    at = 2
    lease_rows = pg_rows(["text", "text"], at, leases, at_most=_AT_MOST)
    at += pg_rows_width(2, leases, at_most=_AT_MOST)
    log_rows = pg_rows(log_types, at, logs, at_most=_AT_MOST)
    at += pg_rows_width(len(log_types), logs, at_most=_AT_MOST)
    found = _TEXTS[key] = _STATEMENT.format(
        leases=lease_rows,
        log_columns=", ".join(LOG_COLUMNS),
        log_values=log_values,
        logs=log_rows,
        rollup_columns=", ".join(_ROLLUP_COLUMNS),
        rollups=pg_rows(rollup_types, at, rollups, at_most=_AT_MOST),
        rollup_key=", ".join(_ROLLUP_KEY),
    )
    return found


async def commit_delivered(
    driver: Any,
    dialect: Dialect,
    leases: Sequence[Lease],
    now: datetime,
    log_rows: Sequence[tuple[Any, ...]],
    rollups: Mapping[RollupKey, tuple[int, int]],
) -> dict[str, str] | None:
    """Run the statement on ``driver`` (an asyncpg connection outside any transaction):
    {job id: queue} of the jobs done, or None when some lease was no longer ours and nothing
    was written. ``log_rows`` as ``log_batches.log_row_values`` makes them."""
    counts = [(*key, count, total) for key, (count, total) in sorted(rollups.items())]
    arguments = (
        now,
        *pg_rows_arguments([(lease.job_id, lease.token) for lease in leases], 2, at_most=_AT_MOST),
        *pg_rows_arguments(log_rows, len(LOG_COLUMNS), at_most=_AT_MOST),
        *pg_rows_arguments(counts, len(_ROLLUP_COLUMNS), at_most=_AT_MOST),
    )
    sql = _statement(dialect, len(leases), len(log_rows), len(counts))
    rows = await pg_call(driver.fetch(sql, *arguments))
    if len(rows) != len(leases):
        return None
    return {row[0]: row[1] for row in rows}
