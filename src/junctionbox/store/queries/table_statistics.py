"""PostgreSQL's planner statistics of junctionbox's tables, and refreshing them.

Until a table has been analysed, PostgreSQL estimates every equality as matching 0.5 % of
its rows, so two indexes that share their leading columns look alike: on a new database
the dispatcher's read of one partition after an offset (a primary-key range) was planned
on ``(org_id, stream, received_at)`` instead, filtering every event of the stream (3 ms a
read at 32,000 events, growing with the log). Autovacuum analyses a table once it changed
by a tenth, but visits each database only once a ``autovacuum_naptime`` (a minute by
default): a log that grows from nothing in that minute is read with the wrong plan.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Not worth a look below this many rows: a small table is read whichever way.
MIN_ROWS: Final = 1_000
_LOCK_KEY: Final = 0x4A42_5354  # "JBST": one node analyses at a time
# ANALYZE run by hand does not pause as autovacuum's does: analysing the log, the queue and
# 30,000 delivery logs took a core for 0.5 s at once, and on a busy node every delivery
# waited behind it. A pause of 2 ms every 20 cost units (a page found in shared buffers
# costs 1) spreads the same work over four to six times as long; autovacuum pauses as
# long every 200.
THROTTLE: Final = {"vacuum_cost_delay": "2ms", "vacuum_cost_limit": "20"}
# ANALYZE samples 300 rows per unit of the statistics target (30,000 at PostgreSQL's 100):
# the statistics that keep a new log off the wrong index (row counts, a few distinct values,
# coarse histograms) need a tenth of that, and it costs a tenth. Even throttled, the full
# sample of the log, the queue and the delivery logs fell in a latency benchmark's window
# as a second of p99 three to five times the rest. Autovacuum's own ANALYZE, once a table
# changed by a tenth, brings the full statistics later.
SAMPLE: Final = {"default_statistics_target": "10"}

_STALE = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables AS s
    JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND pg_has_role(c.relowner, 'MEMBER')  -- ANALYZE skips, with a warning, the others
      AND s.n_live_tup >= :at_least
      AND (c.reltuples < 0 OR s.n_live_tup >= 2 * c.reltuples)
    ORDER BY s.relname
    """
)


async def stale_tables(conn: AsyncConnection, at_least: int = MIN_ROWS) -> list[str]:
    """Tables of at least ``at_least`` rows never analysed, or twice as large as when last
    analysed: a growing table is analysed each time it doubles, and autovacuum keeps up
    with the rest (tables that change more than they grow, such as the queue's)."""
    rows = await conn.execute(_STALE, {"at_least": at_least})
    return [str(row[0]) for row in rows]


async def analyze(conn: AsyncConnection, tables: list[str]) -> bool:
    """ANALYZE ``tables`` in the caller's transaction, pausing as autovacuum does, on a small
    sample (``SAMPLE``); False (nothing done) when another node is analysing now."""
    locked = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    if not locked.scalar_one():
        return False
    for setting, value in (THROTTLE | SAMPLE).items():
        await conn.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": value}
        )
    dialect = conn.dialect
    names = ", ".join(dialect.identifier_preparer.quote(name) for name in tables)
    await conn.execute(text(f"ANALYZE {names}"))
    return True
