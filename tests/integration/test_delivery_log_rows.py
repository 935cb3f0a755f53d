"""The delivery worker's bulk queries, as the database keeps them.

Delivery log rows written at the driver level store what SQLAlchemy's insert stores:
``log_batches.insert_log_rows`` bypasses SQLAlchemy's per-row parameter handling (a large share of the
worker's CPU per delivery); these tests compare the raw stored values, column by column,
with rows inserted through ``insert(delivery_logs)`` and ``attempt_values``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import insert, select, text

from junctionbox.store.database import Database
from junctionbox.store.queries.delivery_attempts import (
    MAX_LOGGED_BYTES,
    TRUNCATION_MARK,
    AttemptRow,
    attempt_values,
    events_at,
)
from junctionbox.store.queries.log_batches import insert_log_rows
from junctionbox.store.tables import delivery_logs, events

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _full_row(row_id: str) -> AttemptRow:
    return AttemptRow(
        id=row_id,
        org_id=7,
        integration_id="int_1",
        integration_name="n" * 250,  # cut to 200
        delivery_id="msg_1",
        job_id="job_1",
        event_id="evt_1",
        event_type="order.created",
        status="SUCCESS",
        target_url="https://example.com/hook?k=****",
        http_method="POST",
        response_status=200,
        response_time_ms=12,
        attempt_count=1,
        error_message="bad\x00thing",  # NUL replaced
        error_category=None,
        original_payload=b'{"a": 1}',
        request_headers=[("content-type", "application/json"), ("x-a", "1"), ("X-A", "2")],
        request_body=b"x" * (MAX_LOGGED_BYTES + 10),  # capped
        response_headers=[("server", "t")],
        response_body="ok",
        correlation_id="c" * 150,  # cut to 100
        trace_id="0af7651916cd43dd8448eb211c80319c",
        signature="v1,abc",
        trigger_type="EVENT",
        action_name="a",
        action_index=0,
        should_retry=False,
        steps=[{"step": "match", "status": "ok", "detail": {"n": 1}}],
        created_at=T0,
        delivered_at=T0,
    )


def _bare_row(row_id: str) -> AttemptRow:
    """Every nullable column None (JSON columns included)."""
    return replace(
        _full_row(row_id),
        integration_id=None,
        integration_name=None,
        delivery_id=None,
        job_id=None,
        event_id=None,
        event_type=None,
        target_url=None,
        http_method=None,
        response_status=None,
        response_time_ms=None,
        error_message=None,
        original_payload=None,
        request_headers=None,
        request_body=None,
        response_headers=None,
        response_body=None,
        correlation_id=None,
        trace_id=None,
        signature=None,
        action_name=None,
        action_index=None,
        should_retry=True,
        steps=None,
        delivered_at=None,
    )


def _elsewhere_row(row_id: str) -> AttemptRow:
    """Timestamps given in another zone, on a whole second; the request body is the
    payload object itself (no transformation)."""
    zone = timezone(timedelta(hours=-5))
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=zone)
    payload = b'{"same": "bytes \xc3\xa9"}'
    return replace(
        _full_row(row_id),
        created_at=moment,
        delivered_at=moment,
        original_payload=payload,
        request_body=payload,
    )


async def _stored(db: Database, row_id: str) -> dict[str, Any]:
    """The row as the database keeps it (JSON columns as text, no result processing)."""
    columns = ", ".join(
        f"CAST({c.name} AS TEXT) AS {c.name}" if c.name.endswith(("headers", "steps")) else c.name
        for c in delivery_logs.c
    )
    async with db.read() as conn:
        result = await conn.execute(
            text(f"SELECT {columns} FROM delivery_logs WHERE id = :id"),  # noqa: S608 (our columns)
            {"id": row_id},
        )
        found = result.mappings().one()
    return {k: v for k, v in found.items() if k != "id"}


async def test_driver_level_rows_equal_sqlalchemy_rows(db_url: str) -> None:
    db = Database(db_url)
    try:
        for make in (_full_row, _bare_row, _elsewhere_row):
            async with db.write() as conn:
                await insert_log_rows(conn, [make("dlv_fast"), make("dlv_fast2")])
                await conn.execute(insert(delivery_logs), [attempt_values(make("dlv_slow"))])
            fast, slow = await _stored(db, "dlv_fast"), await _stored(db, "dlv_slow")
            assert fast == slow
            assert await _stored(db, "dlv_fast2") == slow
            async with db.write() as conn:
                await conn.execute(delivery_logs.delete())
    finally:
        await db.dispose()


async def test_driver_level_rows_read_back_capped(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.write() as conn:
            await insert_log_rows(conn, [_full_row("dlv_1")])
        async with db.read() as conn:
            row = (
                (await conn.execute(select(delivery_logs).where(delivery_logs.c.id == "dlv_1")))
                .mappings()
                .one()
            )
        assert row["created_at"] == T0
        assert row["delivered_at"] == T0
        assert len(row["integration_name"]) == 200
        assert len(row["correlation_id"]) == 100
        assert row["error_message"] == "bad\ufffdthing"
        assert row["request_body"].endswith(TRUNCATION_MARK)
        assert row["request_headers"] == {
            "content-type": "application/json",
            "x-a": "1",
            "X-A": "2",
        }
        assert row["steps"] == [{"step": "match", "status": "ok", "detail": {"n": 1}}]
        assert row["should_retry"] is False
    finally:
        await db.dispose()


async def test_events_at_finds_exactly_the_positions_asked_across_partitions(db_url: str) -> None:
    """One SELECT per partition (UNION ALL): the same offsets in other partitions, streams
    or tenants are not returned, and trimmed positions are missing."""
    db = Database(db_url)
    try:
        rows = [
            {
                "org_id": org_id,
                "stream": stream,
                "partition": partition,
                "log_offset": offset,
                "event_id": f"e-{org_id}-{stream}-{partition}-{offset}",
                "source": "/t",
                "type": "t.x",
                "received_at": T0,
                "extensions": {},
                "payload": b"{}",
                "size": 2,
            }
            for org_id in (1, 2)
            for stream in ("default", "other")
            for partition in (0, 1, 2)
            for offset in range(5)
        ]
        async with db.write() as conn:
            await conn.execute(insert(events), rows)
        wanted = {
            (1, "default", 0, 1),
            (1, "default", 2, 1),
            (1, "other", 1, 4),
            (2, "default", 0, 3),
        }
        missing = {(1, "default", 1, 99)}
        async with db.read() as conn:
            found = await events_at(conn, wanted | missing)
        assert set(found) == wanted
        for (org_id, stream, partition, offset), event in found.items():
            assert event.event_id == f"e-{org_id}-{stream}-{partition}-{offset}"
    finally:
        await db.dispose()
