"""Shared set-up of the dispatcher, scheduling and replay tests.

Integrations are stored with the store's own queries (as the integration service does);
events are published over the API, exactly as producers publish them.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import select, update
from tests.support import World

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DeliveryOutcome,
    FinalState,
)
from junctionbox.domain.identity import Entity, Principal, PrincipalKind, Role, TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.outbound import SigningKey, StoredIntegration, parse_integration
from junctionbox.domain.paging import PageRequest
from junctionbox.engine.dispatcher import Dispatcher
from junctionbox.queue.jobs import Job
from junctionbox.queue.store import JobQueue
from junctionbox.services.container import Services
from junctionbox.services.publish import PublishRequest
from junctionbox.store.queries.integrations import (
    insert_integration,
    load_integration,
    save_integration,
)
from junctionbox.store.queries.scheduled_integrations import ScheduledRecord
from junctionbox.store.tables import entities, scheduled_integrations
from junctionbox.store.types import utcnow

EVENTS = "/api/v1/integration/events"
SCHEDULED = "/api/v1/scheduled-integrations"


ADMIN = Principal(PrincipalKind.USER, "usr_tests", Role.ADMIN, None, "root@example.com")
PARENTS = {100: None, 101: 100, 200: None, 201: 200}


async def make_tenants(services: Services) -> None:
    """Organizations 100 and 200 with units 101 and 201, as ``World`` has them, without
    users (no password hashing: these tests publish through the service)."""
    for entity_id, parent_id in PARENTS.items():
        await services.tenancy.create(
            ADMIN, {"name": f"Entity {entity_id}"}, entity_id=entity_id, parent_id=parent_id
        )


def tenant(org: int) -> TenantContext:
    return TenantContext(Entity(org, PARENTS[org], f"Entity {org}"), ADMIN)


async def publish_as(
    services: Services, org: int, events: list[dict[str, Any]], *, stream: str = "orders"
) -> list[dict[str, Any]]:
    """Publish as the publish API does (validation, append, listeners)."""
    response = await services.publisher.publish(
        tenant(org),
        PublishRequest(
            body=orjson.dumps({"events": events}),
            headers={"content-type": "application/json"},
            stream=stream,
        ),
    )
    assert response.status == 201, response.body
    placed: list[dict[str, Any]] = orjson.loads(response.body)["events"]
    return placed


async def add_integration(
    services: Services, owner: int, name: str, **fields: Any
) -> StoredIntegration:
    body = {
        "name": name,
        "eventType": "order.created",
        "targetUrl": "https://hooks.example.com/in",
        **fields,
    }
    now = utcnow()
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with services.db.write() as conn:
        return await insert_integration(
            conn,
            services.secretbox,
            integration_id=new_id("int"),
            org_id=owner,
            integration=parse_integration(body),
            signing_keys=[SigningKey(secret, now)],
            created_by=None,
            now=now,
        )


async def set_active(services: Services, integration_id: str, active: bool) -> StoredIntegration:
    async with services.db.write() as conn:
        current = await load_integration(conn, services.secretbox, integration_id)
        assert current is not None
        return await save_integration(
            conn,
            services.secretbox,
            current,
            dataclasses.replace(current.integration, is_active=active),
            change="ENABLED" if active else "DISABLED",
            actor=None,
            now=utcnow(),
        )


async def set_timezone(services: Services, entity_id: int, zone: str | None) -> None:
    async with services.db.write() as conn:
        await conn.execute(update(entities).where(entities.c.id == entity_id).values(timezone=zone))


async def publish(
    world: World,
    org: int,
    events: list[dict[str, Any]],
    *,
    stream: str = "orders",
    caller: str = "admin",
) -> list[dict[str, Any]]:
    response = await world.client.post(
        f"{EVENTS}/publish?orgId={org}&stream={stream}",
        json={"events": events},
        headers=world.headers[caller],
    )
    assert response.status_code == 201, response.text
    placed: list[dict[str, Any]] = response.json()["events"]
    return placed


def order(n: int, *, total: int = 150, key: str = "k", **fields: Any) -> dict[str, Any]:
    """An ``order.created`` event; one partition key keeps a test's events in order."""
    return {
        "type": "order.created",
        "id": f"ord-{n}",
        "source": "shop",
        "data": {"n": n, "total": total, "customerId": f"c-{n % 2}"},
        "partitionKey": key,
        **fields,
    }


def dispatcher(services: Services, **options: Any) -> Dispatcher:
    return Dispatcher(services, node_id="test-node", **options)


async def delivery_jobs(services: Services) -> list[Job]:
    """Every delivery job, oldest first."""
    page = await services.queue.list(None, PageRequest(1, 500), kind=DELIVERY_JOB_KIND)
    return sorted(page.items, key=lambda j: (j.created_at, j.id))


def payload_of(job: Job) -> DeliveryJob:
    return DeliveryJob.from_payload(job.payload)


async def scheduled_rows(services: Services) -> list[ScheduledRecord]:
    async with services.db.read() as conn:
        rows = await conn.execute(
            select(scheduled_integrations).order_by(
                scheduled_integrations.c.scheduled_for, scheduled_integrations.c.id
            )
        )
        return [
            ScheduledRecord(**{k: row[k] for k in ScheduledRecord.__dataclass_fields__})
            for row in rows.mappings()
        ]


async def finish(services: Services, job_id: str, outcome: DeliveryOutcome) -> None:
    """End a (possibly future) delivery job as the worker does: complete or dead-letter it
    and tell the schedule listener, in one transaction."""
    later = JobQueue(services.db, clock=lambda: utcnow() + timedelta(days=800))
    try:
        claimed = await later.claim(DELIVERY_QUEUE, "test-worker", 1000, 60)
        (target,) = [job for job in claimed if job.id == job_id]
        for other in claimed:
            if other.id != job_id:
                await later.release(other.id, other.lease.token)
        async with services.db.write() as conn:
            if outcome.state is FinalState.DELIVERED:
                assert await later.complete(target.id, target.lease.token, conn=conn)
            else:
                error = outcome.error or outcome.state.value
                assert await later.dead_letter(target.id, target.lease.token, error, conn=conn)
            await services.schedules.on_final(conn, payload_of(target), outcome)
    finally:
        await later.close()
