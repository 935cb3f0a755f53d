"""Delivery-log rows written at the driver level (``store.queries.log_batches``, the inbound
proxy's batches) read back exactly as rows written through SQLAlchemy
(``insert(delivery_logs)`` with ``attempt_values``), on both databases and every path (PostgreSQL's executemany and COPY,
SQLite's multi-row statements and their remainder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects import sqlite

from junctionbox.store.database import Database
from junctionbox.store.queries.delivery_attempts import AttemptRow, attempt_values
from junctionbox.store.queries.log_batches import insert_log_rows
from junctionbox.store.tables import delivery_logs
from junctionbox.store.types import UTCDateTime, sqlite_utc_text

STARTED = datetime(2026, 12, 5, 3, 0, 0, 123456, tzinfo=UTC)


def _row(index: int, **changes: Any) -> AttemptRow:
    row = AttemptRow(
        id=f"dlg_{index:026d}",
        org_id=100,
        integration_id="inb_01JAAAAAAAAAAAAAAAAAAAAAAA",
        integration_name="Appointment booking",
        delivery_id=f"req_{index:026d}",
        job_id=None,
        event_id=None,
        event_type="appointment-booking",
        status="SUCCESS" if index % 3 else "FAILED",
        target_url="http://127.0.0.1:9/book?a=1",
        http_method="POST",
        response_status=200 if index % 3 else 404,
        response_time_ms=index,
        attempt_count=1 + index % 2,
        error_message=None if index % 3 else "not found",
        error_category=None if index % 3 else "CLIENT_ERROR",
        original_payload=b'{"patientId": "p-1"}',
        request_headers=[("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")],
        request_body='{"patient": {"id": "p-1"}}\x00',
        response_headers=[("Content-Type", "application/json")],
        response_body=b'{"ok": true}' if index % 2 else None,
        correlation_id=f"corr-{index}",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        signature=None,
        trigger_type="API",
        action_name=None,
        action_index=None,
        should_retry=bool(index % 2),
        steps=None,
        created_at=STARTED + timedelta(microseconds=index),
        delivered_at=None if index % 3 == 0 else STARTED + timedelta(seconds=1, microseconds=7),
        direction="INBOUND",
    )
    return replace(row, **changes)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


async def _read(db: Database) -> dict[str, dict[str, Any]]:
    async with db.read() as conn:
        found = (await conn.execute(select(delivery_logs))).mappings().all()
    return {row["id"]: dict(row) for row in found}


@pytest.mark.parametrize("count", [1, 20, 250])
async def test_rows_read_back_as_written_through_sqlalchemy(db: Database, count: int) -> None:
    rows = [_row(i) for i in range(count)]
    async with db.write() as conn:
        await insert_log_rows(conn, rows)
    reference = [replace(row, id=row.id.replace("dlg_", "ref_")) for row in rows]
    async with db.write() as conn:
        await conn.execute(insert(delivery_logs), [attempt_values(row) for row in reference])
    stored = await _read(db)
    assert len(stored) == 2 * count
    for row in rows:
        ours = stored[row.id]
        theirs = stored[row.id.replace("dlg_", "ref_")]
        assert {**ours, "id": None} == {**theirs, "id": None}
    first = stored[rows[0].id]
    assert first["request_body"] == '{"patient": {"id": "p-1"}}\ufffd'  # NUL replaced
    assert first["request_headers"] == {"content-type": "application/json", "x-a": "1, 2"}
    assert first["created_at"] == STARTED
    assert first["delivered_at"] is None


async def test_overlong_texts_are_cut_to_their_columns(db: Database) -> None:
    """A caller's 128-character request id (the edge accepts them) in a 40-character
    column: PostgreSQL would refuse the row, and with it the whole batch."""
    rows = [
        _row(0, delivery_id="r" * 128, integration_name="n" * 300, trace_id="t" * 80),
        _row(1),
    ]
    async with db.write() as conn:
        await insert_log_rows(conn, rows)
    stored = await _read(db)
    assert stored[rows[0].id]["delivery_id"] == "r" * 40
    assert stored[rows[0].id]["integration_name"] == "n" * 200
    assert stored[rows[0].id]["trace_id"] == "t" * 64
    assert rows[1].id in stored


def test_sqlite_timestamps_are_sqlalchemys() -> None:
    dialect = sqlite.dialect()
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    other_zone = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone()
    for moment in (STARTED, datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), other_zone):
        assert sqlite_utc_text(moment) == processor(moment)
