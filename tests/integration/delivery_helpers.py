"""Shared set-up of the delivery worker tests: a tenant, integrations pointing at real
recording sinks, events in the log and delivery jobs as the dispatcher would enqueue them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.support import make_settings

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DeliveryOutcome,
    EventRef,
    FinalState,
    Trigger,
    message_id,
)
from junctionbox.domain.events import DEFAULT_SOURCE, EventDraft
from junctionbox.domain.ids import new_id
from junctionbox.domain.outbound import SigningKey, StoredIntegration, parse_integration
from junctionbox.domain.signing import generate_secret
from junctionbox.queue.jobs import Job, NewJob
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.store.queries.integrations import insert_integration, load_integration
from junctionbox.store.tables import delivery_logs
from junctionbox.store.types import utcnow

ORG, UNIT, OTHER_ORG = 100, 101, 200


async def tenant_services(
    db_url: str, tmp_path: Path, allow: Sequence[str], **settings: Any
) -> Services:
    """Services whose SSRF guard lets ``allow`` (sinks' host:port) through, with
    organization 100 (unit 101) and organization 200."""
    services = build_services(
        make_settings(db_url, tmp_path, ssrf_allowlist=",".join(allow), **settings)
    )
    for entity_id, parent in ((ORG, None), (UNIT, ORG), (OTHER_ORG, None)):
        await services.tenancy.create(
            None, {"name": f"e{entity_id}"}, entity_id=entity_id, parent_id=parent
        )
    return services


async def add_integration(
    services: Services, url: str, *, org_id: int = ORG, **fields: Any
) -> StoredIntegration:
    body: dict[str, Any] = {
        "name": fields.pop("name", new_id("hook")),
        "eventType": "order.*",
        "targetUrl": url,
        "retryPolicy": {"maxRetries": 2, "initialDelay": 1, "maxDelay": 5},
        **fields,
    }
    integration = parse_integration(body)
    async with services.db.write() as conn:
        return await insert_integration(
            conn,
            services.secretbox,
            integration_id=new_id("int"),
            org_id=org_id,
            integration=integration,
            signing_keys=[SigningKey(generate_secret(), utcnow())],
            created_by=None,
            now=utcnow(),
        )


async def reload(services: Services, integration_id: str) -> StoredIntegration:
    async with services.db.read() as conn:
        stored = await load_integration(conn, services.secretbox, integration_id)
    assert stored is not None
    return stored


@dataclass(frozen=True)
class Published:
    org_id: int
    event_id: str
    ref: EventRef
    payload: bytes


async def publish(
    services: Services, count: int = 1, *, org_id: int = ORG, payload: bytes | None = None
) -> list[Published]:
    drafts = [
        EventDraft(
            type="order.created",
            payload=payload if payload is not None else b'{"n": %d}' % n,
            value=None,
            has_value=True,
            data_content_type="application/json",
        )
        for n in range(count)
    ]
    results = await services.event_log.append(org_id, drafts)
    return [
        Published(org_id, r.event_id, EventRef(r.stream, r.partition, r.offset), d.payload)
        for r, d in zip(results, drafts, strict=True)
    ]


def delivery_of(
    stored: StoredIntegration, event: Published, *, action: int = 0, **changes: Any
) -> DeliveryJob:
    msg = message_id(event.org_id, DEFAULT_SOURCE, event.event_id, stored.id, action)
    return DeliveryJob(
        org_id=event.org_id,
        integration_id=stored.id,
        message_id=msg,
        event=event.ref,
        event_id=event.event_id,
        event_type="order.created",
        action_index=action,
        trigger=changes.pop("trigger", Trigger.EVENT),
        integration_version=stored.version,
        **changes,
    )


async def enqueue(
    services: Services,
    stored: StoredIntegration,
    events: Sequence[Published],
    *,
    max_attempts: int | None = None,
    **changes: Any,
) -> list[str]:
    """One delivery job per event, as the dispatcher enqueues them."""
    attempts = max_attempts or stored.integration.retry_policy.max_retries + 1
    jobs = []
    for event in events:
        delivery = delivery_of(stored, event, **changes)
        jobs.append(
            NewJob(
                DELIVERY_JOB_KIND,
                delivery.to_payload(),
                queue=DELIVERY_QUEUE,
                org_id=event.org_id,
                max_attempts=attempts,
                dedupe_key=f"dlv:{delivery.message_id}",
            )
        )
    async with services.db.write() as conn:
        return await services.queue.enqueue(conn, jobs)


@dataclass
class Recorder:
    """A delivery listener that remembers what it was told (and proves it ran inside the
    worker's transaction by reading there)."""

    outcomes: list[tuple[DeliveryJob, DeliveryOutcome]] = field(default_factory=list)

    def concerns(self, job: DeliveryJob, state: FinalState) -> bool:
        return True

    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None:
        await conn.execute(select(1))
        self.outcomes.append((job, outcome))

    def states(self) -> list[str]:
        return sorted(outcome.state.value for _, outcome in self.outcomes)

    def of(self, message: str) -> DeliveryOutcome:
        [found] = [o for job, o in self.outcomes if job.message_id == message]
        return found


async def log_rows(services: Services, **where: Any) -> list[RowMapping]:
    query = select(delivery_logs).order_by(delivery_logs.c.created_at, delivery_logs.c.id)
    for name, value in where.items():
        query = query.where(delivery_logs.c[name] == value)
    async with services.db.read() as conn:
        return list((await conn.execute(query)).mappings().all())


async def job(services: Services, job_id: str) -> Job:
    found = await services.queue.get(job_id)
    assert found is not None
    return found


def headers_of(row: Mapping[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in (row["request_headers"] or {}).items()}
