"""The worker's driver-level reads (``worker_reads``) return exactly what the SQLAlchemy
reads (``integration_stamps``, ``events_at``) return, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from junctionbox.store.database import Database
from junctionbox.store.queries.delivery_attempts import events_at, integration_stamps
from junctionbox.store.queries.worker_reads import stamps_and_events
from junctionbox.store.tables import entities, events, outbound_integrations

A, B = 9001, 9002  # tenants of their own (the migrations seed others)
T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
STAMPS = {"created_at": T0, "updated_at": T0}


def _event(org_id: int, stream: str, partition: int, offset: int) -> dict[str, object]:
    odd = offset % 2 == 1
    return {
        "org_id": org_id,
        "stream": stream,
        "partition": partition,
        "log_offset": offset,
        "event_id": f"e-{org_id}-{stream}-{partition}-{offset}",
        "source": "/t",
        "type": "t.x",
        "subject": "s" if odd else None,
        "event_time": T0 - timedelta(microseconds=offset) if odd else None,
        "received_at": T0 + timedelta(seconds=offset),
        "partition_key": "k" if odd else None,
        "data_content_type": "application/json",
        "data_schema": None,
        "extensions": {"traceparent": "00-x", "n": offset} if odd else None,
        "payload": b'{"a": "\\u00e9"}',
        "size": 14,
    }


def _integration(n: int, active: bool) -> dict[str, object]:
    return {
        "id": f"int_{n}",
        "org_id": A,
        "name": f"i{n}",
        "event_type": "t.*",
        "is_active": active,
        "version": n + 1,
        "config": {},
        "consecutive_failures": 0,
        "created_at": T0,
        "updated_at": T0 + timedelta(microseconds=n),
    }


async def test_driver_reads_equal_sqlalchemys(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(entities),
                [{"id": org, "name": f"o{org}", "tags": [], **STAMPS} for org in (A, B)],
            )
            await conn.execute(
                insert(events),
                [
                    _event(org_id, stream, partition, offset)
                    for org_id in (A, B)
                    for stream in ("default", "other")
                    for partition in (0, 1)
                    for offset in range(4)
                ],
            )
            await conn.execute(
                insert(outbound_integrations), [_integration(n, n % 2 == 0) for n in range(3)]
            )
        ids = {"int_0", "int_1", "int_2", "int_gone"}
        positions = {
            (A, "default", 0, 1),
            (A, "default", 0, 2),
            (A, "other", 1, 3),
            (B, "default", 1, 0),
            (A, "default", 1, 99),  # trimmed away
        }
        async with db.read() as conn:
            stamps, found = await stamps_and_events(conn, ids, positions)
            assert stamps == await integration_stamps(conn, ids)
            assert found == await events_at(conn, positions)
        assert set(stamps) == {"int_0", "int_1", "int_2"}
        assert len(found) == 4
        assert found[(A, "other", 1, 3)].extensions == {"traceparent": "00-x", "n": 3}
        assert found[(A, "default", 0, 2)].time is None
        async with db.read() as conn:
            assert await stamps_and_events(conn, set(), set()) == ({}, {})
    finally:
        await db.dispose()
