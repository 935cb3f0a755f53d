"""Shared set-up of the DLQ tests: integrations, delivery jobs, outcomes and log rows.

Entries are created the way production creates them: through ``DlqService.on_final`` in a
write transaction, as the delivery worker calls it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from junctionbox.domain.delivery import (
    DeliveryJob,
    DeliveryOutcome,
    EventRef,
    FinalState,
    Trigger,
    message_id,
)
from junctionbox.domain.ids import new_id
from junctionbox.domain.outbound import parse_integration
from junctionbox.queue.jobs import Job
from junctionbox.services.container import Services
from junctionbox.services.dlq import DlqService
from junctionbox.store.queries import dlq as dlq_queries
from junctionbox.store.queries.dlq import DlqRecord
from junctionbox.store.queries.integrations import insert_integration
from junctionbox.store.tables import delivery_logs, dlq_entries, outbound_integrations
from junctionbox.store.types import utcnow

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def use_clock(services: Services, clock: Clock, **options: Any) -> DlqService:
    """Give the services a DLQ on ``clock`` (the API and the worker use ``services.dlq``)."""
    services.dlq = DlqService(services.db, services.queue, clock=clock, **options)
    return services.dlq


async def make_integration(
    services: Services, org_id: int, name: str = "hook", *, active: bool = True
) -> str:
    integration = parse_integration(
        {
            "name": name,
            "eventType": "order.*",
            "targetUrl": f"https://example.com/{name}",
            "isActive": active,
        }
    )
    integration_id = new_id("int")
    async with services.db.write() as conn:
        await insert_integration(
            conn,
            services.secretbox,
            integration_id=integration_id,
            org_id=org_id,
            integration=integration,
            signing_keys=[],
            created_by=None,
            now=utcnow(),
        )
    return integration_id


async def set_active(services: Services, integration_id: str, active: bool) -> None:
    async with services.db.write() as conn:
        await conn.execute(
            update(outbound_integrations)
            .where(outbound_integrations.c.id == integration_id)
            .values(is_active=active)
        )


async def delete_integration(services: Services, integration_id: str) -> None:
    async with services.db.write() as conn:
        await conn.execute(
            delete(outbound_integrations).where(outbound_integrations.c.id == integration_id)
        )


def delivery_job(
    org_id: int,
    integration_id: str,
    event_id: str = "evt-1",
    event_type: str = "order.created",
    **options: Any,
) -> DeliveryJob:
    return DeliveryJob(
        org_id=org_id,
        integration_id=integration_id,
        message_id=message_id(org_id, "shop", event_id, integration_id, 0),
        event=EventRef("default", 0, 7),
        event_id=event_id,
        event_type=event_type,
        correlation_id="corr-1",
        **options,
    )


def outcome(state: FinalState = FinalState.DEAD_LETTERED, **options: Any) -> DeliveryOutcome:
    values: dict[str, Any] = {
        "attempts": 4,
        "error": "HTTP 503 Service Unavailable",
        "error_category": "SERVER_ERROR",
        "response_status": 503,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "target_url": "https://example.com/hook",
        "http_method": "POST",
        "integration_name": "hook",
        "original_payload": '{"orderId": 42}',
        **options,
    }
    return DeliveryOutcome(state=state, **values)


async def final(services: Services, job: DeliveryJob, result: DeliveryOutcome) -> None:
    """What the delivery worker does when a job ends for good."""
    async with services.db.write() as conn:
        await services.dlq.on_final(conn, job, result)


async def dead_letter(
    services: Services, job: DeliveryJob, result: DeliveryOutcome | None = None
) -> DlqRecord:
    await final(services, job, result or outcome())
    entry = await entry_of(services, job.message_id)
    assert entry is not None
    return entry


async def entry_of(services: Services, delivery_id: str) -> DlqRecord | None:
    async with services.db.read() as conn:
        row = (
            (
                await conn.execute(
                    select(dlq_entries.c.id).where(dlq_entries.c.delivery_id == delivery_id)
                )
            )
            .scalars()
            .first()
        )
        return await dlq_queries.get_entry(conn, row) if row else None


async def entry(services: Services, entry_id: str) -> DlqRecord | None:
    async with services.db.read() as conn:
        return await dlq_queries.get_entry(conn, entry_id)


async def force(services: Services, entry_id: str, **values: Any) -> None:
    """Set columns directly (a state the test needs, reached some other way)."""
    async with services.db.write() as conn:
        await conn.execute(update(dlq_entries).where(dlq_entries.c.id == entry_id).values(**values))


async def redrive_of(services: Services, job_id: str) -> tuple[Job, DeliveryJob]:
    job = await services.queue.get(job_id)
    assert job is not None
    return job, DeliveryJob.from_payload(job.payload)


async def add_log(
    services: Services,
    job: DeliveryJob,
    *,
    status: str = "FAILED",
    trigger: Trigger = Trigger.EVENT,
    created_at: datetime,
    **values: Any,
) -> str:
    log_id = new_id("dlv")
    row = {
        "id": log_id,
        "org_id": job.org_id,
        "integration_id": job.integration_id,
        "integration_name": "hook",
        "direction": "OUTBOUND",
        "delivery_id": job.message_id,
        "event_id": job.event_id,
        "event_type": job.event_type,
        "status": status,
        "attempt_count": 1,
        "trigger_type": trigger.value,
        "should_retry": False,
        "created_at": created_at,
        **values,
    }
    async with services.db.write() as conn:
        await conn.execute(insert(delivery_logs).values(**row))
    return log_id


async def log_status(services: Services, log_id: str) -> str:
    async with services.db.read() as conn:
        query = select(delivery_logs.c.status).where(delivery_logs.c.id == log_id)
        return str((await conn.execute(query)).scalar_one())
