"""Migration 0011: PostgreSQL analyses no body, header or trace column, and still analyses
the columns that queries filter on; the downgrade restores the default."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from junctionbox.store import migrate
from junctionbox.store.database import Database

_TARGETS = text(
    "SELECT c.relname || '.' || a.attname, a.attstattarget FROM pg_attribute AS a"
    " JOIN pg_class AS c ON c.oid = a.attrelid"
    " WHERE c.relname IN ('delivery_logs', 'events', 'jobs', 'scheduled_job_logs')"
    " AND c.relnamespace = to_regnamespace(current_schema())"
    " AND a.attnum > 0 AND NOT a.attisdropped"
)
_UNANALYSED = {
    "delivery_logs.request_body",
    "delivery_logs.response_body",
    "delivery_logs.request_headers",
    "delivery_logs.response_headers",
    "delivery_logs.original_payload",
    "delivery_logs.signature",
    "delivery_logs.steps",
    "events.payload",
    "events.extensions",
    "jobs.payload",
    "scheduled_job_logs.data_fetched",
    "scheduled_job_logs.transformed_payload",
    "scheduled_job_logs.http_request",
    "scheduled_job_logs.curl_command",
    "scheduled_job_logs.response_headers",
    "scheduled_job_logs.response_body",
    "scheduled_job_logs.error_context",
}


async def _targets(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        return {str(name): int(target) for name, target in await conn.execute(_TARGETS)}


async def _analysed_columns(db: Database) -> set[str]:
    async with db.write() as conn:
        await conn.execute(
            text(
                "INSERT INTO delivery_logs (id, org_id, direction, status, attempt_count,"
                " trigger_type, should_retry, created_at, request_body, response_body)"
                " SELECT 'dl_' || n, 1, 'OUTBOUND', 'SUCCESS', 1, 'EVENT', false, now(),"
                " repeat('x', 1024), 'ok' FROM generate_series(1, 200) AS n"
            )
        )
        await conn.execute(text("ANALYZE delivery_logs"))
    async with db.read() as conn:
        rows = await conn.execute(
            text("SELECT attname FROM pg_stats WHERE tablename = 'delivery_logs'")
        )
        return {f"delivery_logs.{row[0]}" for row in rows}


async def test_0011_on_postgresql(fresh_pg_database: str) -> None:
    db = Database(fresh_pg_database)
    try:
        await migrate.upgrade(db, "0010")
        assert set((await _targets(db)).values()) == {-1}
        await migrate.upgrade(db, "0011")
        targets = await _targets(db)
        assert {name for name, target in targets.items() if target == 0} == _UNANALYSED
        assert {target for name, target in targets.items() if name not in _UNANALYSED} == {-1}
        analysed = await _analysed_columns(db)
        assert {"delivery_logs.status", "delivery_logs.created_at", "delivery_logs.org_id"} <= (
            analysed
        )
        assert not analysed & _UNANALYSED
        await migrate.downgrade(db, "0010")
        assert set((await _targets(db)).values()) == {-1}
    finally:
        await db.dispose()


async def test_0011_changes_nothing_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    try:
        await migrate.upgrade(db, "0011")
        assert await migrate.current_revision(db) == "0011"
        await migrate.downgrade(db, "0010")
        assert await migrate.current_revision(db) == "0010"
    finally:
        await db.dispose()
