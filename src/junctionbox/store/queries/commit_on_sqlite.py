"""The delivery worker's commit on SQLite: the statements that follow its jobs' transitions
(rollups, the auto-disable streaks of integrations that delivered), as plain ``sqlite3``
calls for the commit's one hand-over to aiosqlite's thread (see
:mod:`junctionbox.engine.delivery_commit`).

Each is the SQLAlchemy Core statement of :mod:`junctionbox.store.queries.rollups` and
:mod:`junctionbox.store.queries.integrations`, compiled once per dialect, its values
converted by the columns' own bind processors: the same SQL and the same values, without
SQLAlchemy's per-statement work and the three or four hand-overs to the driver's thread
each statement costs through the async driver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping
from typing import Any

from sqlalchemy import Dialect, bindparam, update
from sqlalchemy.dialects import sqlite as sqlite_dialect

from junctionbox.domain.rollups import RollupKey
from junctionbox.store.queries.driver_calls import bind_processor
from junctionbox.store.tables import delivery_rollups, outbound_integrations

_KEY = ("org_id", "integration_id", "bucket_start", "metric", "key")
_COMPILED: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}


def _compiled(
    name: str, statement: Callable[[], Any], dialect: Dialect
) -> tuple[str, tuple[str, ...]]:
    """``statement()``'s SQL for ``dialect`` and its positional parameters' names, made
    once (building the statement costs as much as running it)."""
    key = (name, dialect.driver)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement().compile(dialect=dialect)
        found = _COMPILED[key] = (compiled.string, tuple(compiled.positiontup or ()))
    return found


def _rollups_upsert() -> Any:
    """``rollups.add_rollups``'s statement on SQLite."""
    statement = sqlite_dialect.insert(delivery_rollups)
    return statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "count": delivery_rollups.c.count + statement.excluded["count"],
            "total_ms": delivery_rollups.c.total_ms + statement.excluded["total_ms"],
        },
    )


def add_rollups_on_sqlite(
    sqlite: sqlite3.Connection, dialect: Dialect, counts: Mapping[RollupKey, tuple[int, int]]
) -> None:
    """``rollups.add_rollups`` on aiosqlite's thread: keys in a fixed order, one upsert."""
    if not counts:
        return
    sql, names = _compiled("rollups", _rollups_upsert, dialect)
    if names != (*_KEY, "count", "total_ms"):
        raise AssertionError(f"unexpected parameter order {names}")
    moment = bind_processor(delivery_rollups, "bucket_start", dialect)
    rows = [
        (org_id, integration_id, moment(start) if moment else start, metric, key, count, total)
        for (org_id, integration_id, start, metric, key), (count, total) in sorted(counts.items())
    ]
    sqlite.executemany(sql, rows)


def _streak_reset() -> Any:
    """``integrations.record_outcome``'s statement for a delivery."""
    table = outbound_integrations
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.consecutive_failures != 0)
        .values(consecutive_failures=0)
    )


def reset_streaks_on_sqlite(
    sqlite: sqlite3.Connection, dialect: Dialect, integration_ids: Collection[str]
) -> None:
    """``record_outcome(failed=False)`` for each integration (in id order)."""
    if not integration_ids:
        return
    sql, names = _compiled("streaks", _streak_reset, dialect)
    values: dict[str, Any] = {"consecutive_failures": 0, "consecutive_failures_1": 0}
    for integration_id in sorted(integration_ids):
        values["b_id"] = integration_id
        sqlite.execute(sql, tuple(values[name] for name in names))
