"""The DLQ as a delivery listener and its worker, on SQLite and PostgreSQL.

Time runs on an injected clock; the delivery worker is played by calling ``on_final`` with
the redrive job read back from the queue, as the real worker would run it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook
from tests.integration.dlq_helpers import (
    Clock,
    add_log,
    dead_letter,
    delete_integration,
    delivery_job,
    entry,
    entry_of,
    final,
    force,
    log_status,
    make_integration,
    outcome,
    redrive_of,
    set_active,
    use_clock,
)
from tests.support import make_settings

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    DlqStatus,
    EventRef,
    FinalState,
    Trigger,
    message_id,
)
from junctionbox.domain.events import DEFAULT_SOURCE, EventDraft
from junctionbox.domain.ids import new_id
from junctionbox.domain.outbound import SigningKey, parse_integration
from junctionbox.domain.signing import generate_secret
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.engine.dlq_worker import DlqWorker
from junctionbox.queue.jobs import JobState, NewJob
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.services.dlq import ALERT_KIND, redrive_key
from junctionbox.store.queries.alerts import alerts_of
from junctionbox.store.queries.integrations import insert_integration
from junctionbox.store.tables import delivery_logs, dlq_entries, jobs
from junctionbox.store.types import utcnow
from junctionbox.testing import Behaviour, RecordingSink

ORG, UNIT = 100, 101


@pytest.fixture
async def org(services: Services) -> Services:
    """The services with organization 100 and its unit 101."""
    for entity_id, parent in ((ORG, None), (UNIT, ORG)):
        await services.tenancy.create(
            None, {"name": f"e{entity_id}"}, entity_id=entity_id, parent_id=parent
        )
    return services


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def worker(org: Services, clock: Clock) -> DlqWorker:
    use_clock(org, clock)
    return DlqWorker(org, node_id="node-1", clock=clock)


async def _jobs(services: Services) -> list[tuple[str, dict[str, object]]]:
    async with services.db.read() as conn:
        rows = await conn.execute(select(jobs.c.dedupe_key, jobs.c.payload).order_by(jobs.c.id))
        return [(row.dedupe_key, row.payload) for row in rows]


# --- entries are created by the final failure ---


async def test_a_final_failure_becomes_a_pending_entry(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    job = delivery_job(UNIT, integration)
    created = await dead_letter(org, job)
    assert created.status == DlqStatus.PENDING_RETRY
    assert created.org_id == UNIT
    assert created.delivery_id == job.message_id
    assert (created.event_id, created.event_type) == ("evt-1", "order.created")
    assert created.job == job.to_payload()
    assert (created.attempt_count, created.max_retries, created.delivery_attempts) == (0, 3, 4)
    assert created.last_error == "HTTP 503 Service Unavailable"
    assert created.error_category == "SERVER_ERROR"
    assert created.original_payload == '{"orderId": 42}'
    assert created.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert created.integration_name == "hook"
    assert (created.target_url, created.http_method) == ("https://example.com/hook", "POST")
    assert created.next_retry_at is not None
    delay = (created.next_retry_at - clock.now).total_seconds()
    assert 1.0 <= delay <= 1.2  # backoff(0) = 1 s + up to 20 % jitter


async def test_only_failures_are_dead_lettered_and_once_per_delivery(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    for state in (FinalState.DELIVERED, FinalState.SKIPPED):
        await final(org, delivery_job(ORG, integration, f"evt-{state}"), outcome(state))
    gone = delivery_job(ORG, integration, "evt-gone")
    disabled = await dead_letter(org, gone, outcome(FinalState.DISABLED, error="HTTP 410"))
    assert disabled.status == DlqStatus.PENDING_RETRY
    # The same delivery failing again (a replay) refreshes its entry.
    await force(org, disabled.id, status=DlqStatus.ABANDONED.value, attempt_count=3)
    clock.advance(60)
    again = await dead_letter(org, gone, outcome(error="HTTP 500", attempts=2))
    assert again.id == disabled.id
    assert (again.status, again.attempt_count, again.delivery_attempts) == ("PENDING_RETRY", 0, 2)
    assert again.last_error == "HTTP 500"
    async with org.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(dlq_entries))).scalar() == 1


# --- the redrive's outcome ---


async def test_a_delivered_redrive_removes_the_entry(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    job = delivery_job(ORG, integration)
    created = await dead_letter(org, job)
    clock.advance(2)
    assert await worker.run_once() == 1
    ((key, payload),) = await _jobs(org)
    assert key == redrive_key(created.id, 1)
    redrive = DeliveryJob.from_payload(payload)
    assert redrive.message_id == job.message_id  # the same webhook-id
    assert (redrive.trigger, redrive.dlq_entry_id) == (Trigger.DLQ_RETRY, created.id)
    assert (await entry(org, created.id)).status == DlqStatus.RETRYING  # type: ignore[union-attr]
    await final(org, redrive, outcome(FinalState.DELIVERED, attempts=1, error=None))
    assert await entry(org, created.id) is None


async def test_failed_redrives_back_off_then_abandon_with_an_alert(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG, "crm")
    job = delivery_job(ORG, integration)
    created = await dead_letter(org, job)
    expected_delays = {1: (2.0, 2.4), 2: (4.0, 4.8)}  # min(1 s * 2^n, 5 s) + jitter
    for retry in (1, 2, 3):
        clock.advance(10)
        assert await worker.run_once() == 1
        job_id = await _job_id(org, redrive_key(created.id, retry))
        record, redrive = await redrive_of(org, job_id)
        assert record.max_attempts == 1
        assert record.dedupe_key == redrive_key(created.id, retry)
        last = await add_log(
            org, redrive, trigger=Trigger.DLQ_RETRY, created_at=clock.now, job_id=job_id
        )
        renamed = outcome(attempts=1, error=f"HTTP 502 #{retry}", integration_name="crm")
        await final(org, redrive, renamed)
        current = await entry(org, created.id)
        assert current is not None
        assert current.attempt_count == retry
        assert current.last_error == f"HTTP 502 #{retry}"
        if retry in expected_delays:
            assert current.status == DlqStatus.PENDING_RETRY
            low, high = expected_delays[retry]
            assert current.next_retry_at is not None
            assert low <= (current.next_retry_at - clock.now).total_seconds() <= high
            assert await log_status(org, last) == "FAILED"
    assert current.status == DlqStatus.ABANDONED
    assert current.next_retry_at is None
    assert await log_status(org, last) == "ABANDONED"
    async with org.db.read() as conn:
        alerts = await alerts_of(conn, [ORG])
    assert [(a["kind"], a["subject_id"]) for a in alerts] == [(ALERT_KIND, created.id)]
    assert "crm" in alerts[0]["message"]  # the name the last attempt saw
    assert current.integration_name == "crm"
    clock.advance(3600)
    assert await worker.run_once() == 0  # abandoned entries are not retried automatically


async def test_a_skipped_redrive_waits_or_is_abandoned(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    kept = await make_integration(org, ORG, "kept")
    dropped = await make_integration(org, ORG, "dropped")
    entries = {}
    for name, integration in (("kept", kept), ("dropped", dropped)):
        entries[name] = (await dead_letter(org, delivery_job(ORG, integration, name))).id
    clock.advance(5)
    assert await worker.run_once() == 2
    payloads = {p["integrationId"]: p for _, p in await _jobs(org)}
    await set_active(org, kept, False)
    await delete_integration(org, dropped)
    for integration in (kept, dropped):
        redrive = DeliveryJob.from_payload(payloads[integration])
        await final(org, redrive, outcome(FinalState.SKIPPED, attempts=0, error=None))
    waiting = await entry(org, entries["kept"])
    assert waiting is not None
    assert (waiting.status, waiting.attempt_count) == (DlqStatus.PENDING_RETRY, 0)
    abandoned = await entry(org, entries["dropped"])
    assert abandoned is not None
    assert abandoned.status == DlqStatus.ABANDONED
    assert abandoned.last_error == "the integration was deleted"


# --- the worker ---


async def _many(
    services: Services, integration: str, count: int, prefix: str, clock: Clock
) -> list[str]:
    """``count`` entries, a millisecond apart (entries of one instant have no order: their
    ids are random within a millisecond)."""
    async with services.db.write() as conn:
        for n in range(count):
            job = delivery_job(ORG, integration, f"{prefix}-{n:03}")
            await services.dlq.on_final(conn, job, outcome())
            clock.advance(0.001)
    async with services.db.read() as conn:
        rows = await conn.execute(
            select(dlq_entries.c.id).where(dlq_entries.c.event_id.startswith(prefix))
        )
        return [row.id for row in rows]


async def test_a_cycle_redrives_at_most_50_due_entries_oldest_first(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    await _many(org, integration, 55, "due", clock)
    clock.advance(10)
    await _many(org, integration, 2, "later", clock)  # due at now + ~1 s
    assert await worker.run_once() == 50
    redriven = {p["eventId"] for _, p in await _jobs(org)}
    assert redriven == {f"due-{n:03}" for n in range(50)}
    assert all(p["trigger"] == "DLQ_RETRY" for _, p in await _jobs(org))
    assert await worker.run_once() == 5
    assert await worker.run_once() == 0
    clock.advance(2)
    assert await worker.run_once() == 2


async def test_entries_of_inactive_integrations_wait_and_orphans_are_abandoned(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    paused = await make_integration(org, ORG, "paused")
    deleted = await make_integration(org, ORG, "deleted")
    waiting = await dead_letter(org, delivery_job(ORG, paused, "p"))
    orphan = await dead_letter(org, delivery_job(ORG, deleted, "d"))
    await set_active(org, paused, False)
    await delete_integration(org, deleted)
    clock.advance(10)
    assert await worker.run_once() == 0
    assert (await entry(org, waiting.id)).status == DlqStatus.PENDING_RETRY  # type: ignore[union-attr]
    gone = await entry(org, orphan.id)
    assert gone is not None
    assert (gone.status, gone.last_error) == (DlqStatus.ABANDONED, "the integration was deleted")
    await set_active(org, paused, True)  # re-enabling resumes the retries
    assert await worker.run_once() == 1


async def test_two_workers_never_redrive_the_same_entry(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    created = await _many(org, integration, 60, "c", clock)
    clock.advance(10)
    other = DlqWorker(org, node_id="node-2", clock=clock)
    counts = await asyncio.gather(worker.run_once(), other.run_once(), worker.run_once())
    assert sum(counts) == 60
    keys = [key for key, _ in await _jobs(org)]
    assert sorted(keys) == sorted(redrive_key(entry_id, 1) for entry_id in created)
    async with org.db.read() as conn:
        statuses = (await conn.execute(select(dlq_entries.c.status).distinct())).scalars().all()
    assert statuses == [DlqStatus.RETRYING.value]


async def test_a_lost_redrive_is_counted_as_failed(
    org: Services, worker: DlqWorker, clock: Clock
) -> None:
    integration = await make_integration(org, ORG)
    lost = await dead_letter(org, delivery_job(ORG, integration, "lost"))
    alive = await dead_letter(org, delivery_job(ORG, integration, "alive"))
    clock.advance(5)
    assert await worker.run_once() == 2
    job_ids = {p["eventId"]: key for key, p in await _jobs(org)}
    lost_job = await _job_id(org, job_ids["lost"])
    assert await org.queue.cancel(lost_job)  # the redrive ends without telling the DLQ
    clock.advance(60)
    assert await worker.run_once() == 0
    assert (await entry(org, lost.id)).status == DlqStatus.RETRYING  # type: ignore[union-attr]
    clock.advance(org.dlq.stuck_after.total_seconds())
    assert await worker.run_once() == 0  # reconciled now, due again after its backoff
    reconciled = await entry(org, lost.id)
    assert reconciled is not None
    assert (reconciled.status, reconciled.attempt_count) == (DlqStatus.PENDING_RETRY, 1)
    assert "job is cancelled" in (reconciled.last_error or "")
    still = await entry(org, alive.id)  # its job is still ready: left alone
    assert still is not None
    assert still.status == DlqStatus.RETRYING
    clock.advance(5)
    assert await worker.run_once() == 1
    assert redrive_key(lost.id, 2) in {key for key, _ in await _jobs(org)}


async def _job_id(services: Services, dedupe_key: str) -> str:
    async with services.db.read() as conn:
        query = select(jobs.c.id).where(
            jobs.c.kind == DELIVERY_JOB_KIND,
            jobs.c.queue == DELIVERY_QUEUE,
            jobs.c.dedupe_key == dedupe_key,
            jobs.c.state == JobState.READY.value,
        )
        return str((await conn.execute(query)).scalar_one())


async def test_the_loop_survives_a_failed_cycle_and_stops_on_request(
    org: Services, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    dlq = use_clock(org, clock)
    integration = await make_integration(org, ORG)
    created = await dead_letter(org, delivery_job(ORG, integration))
    clock.advance(5)
    calls: list[int] = []
    redriven = asyncio.Event()
    real = dlq.redrive_due

    async def flaky(**options: object) -> list[object]:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        result = await real(**options)  # type: ignore[arg-type]
        redriven.set()
        return list(result)

    monkeypatch.setattr(dlq, "redrive_due", flaky)
    loop = DlqWorker(org, node_id="n", clock=clock, poll_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(redriven.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert task.exception() is None
    assert (await entry(org, created.id)).status == DlqStatus.RETRYING  # type: ignore[union-attr]


async def test_without_automatic_retries_entries_wait_for_an_operator(
    org: Services, clock: Clock
) -> None:
    use_clock(org, clock, max_retries=0)
    worker = DlqWorker(org, node_id="n", clock=clock)
    integration = await make_integration(org, ORG)
    created = await dead_letter(org, delivery_job(ORG, integration))
    assert (created.status, created.next_retry_at) == (DlqStatus.ABANDONED, None)
    clock.advance(3600)
    assert await worker.run_once() == 0
    async with org.db.read() as conn:
        tenant_alerts = await alerts_of(conn, [ORG])
    assert tenant_alerts == []  # nothing was retried, nothing was given up


# --- end to end, with the real delivery worker and a recording sink ---


async def test_a_redrive_reaches_the_endpoint_with_the_same_webhook_id(
    db_url: str, tmp_path: Path
) -> None:
    async with RecordingSink() as sink:
        settings = make_settings(db_url, tmp_path, ssrf_allowlist=sink.allowlist_entry)
        svc = build_services(settings)
        try:
            await svc.tenancy.create(None, {"name": "org"}, entity_id=ORG, parent_id=None)
            secret = generate_secret()
            integration = await _signed_integration(svc, sink.url("/hook"), secret)
            sink.on("/hook", Behaviour(status=500), Behaviour(status=200))
            job = await _publish_and_enqueue(svc, integration)
            deliveries = DeliveryWorker(svc, node_id="worker", listeners=[svc.dlq])
            await deliveries.run_until_idle(timeout=10)
            failed = await entry_of(svc, job.message_id)
            assert failed is not None
            assert (failed.status, failed.last_error is not None) == ("PENDING_RETRY", True)

            later = Clock(utcnow() + timedelta(seconds=10))
            assert await DlqWorker(svc, node_id="dlq", clock=later).run_once() == 1
            await deliveries.run_until_idle(timeout=10)

            first, second = sink.requests_to("/hook")
            assert second.header("webhook-id") == first.header("webhook-id") == job.message_id
            assert int(second.header("webhook-timestamp") or 0) >= int(
                first.header("webhook-timestamp") or 0
            )
            Webhook(secret).verify(second.body, dict(second.headers))  # signed afresh
            assert await entry_of(svc, job.message_id) is None  # delivered: gone from the DLQ
            async with svc.db.read() as conn:
                rows = await conn.execute(
                    select(delivery_logs.c.trigger_type, delivery_logs.c.status)
                    .where(delivery_logs.c.delivery_id == job.message_id)
                    .order_by(delivery_logs.c.created_at)
                )
                assert [tuple(row) for row in rows] == [
                    ("EVENT", "FAILED"),
                    ("DLQ_RETRY", "SUCCESS"),
                ]
        finally:
            await svc.close()


async def _signed_integration(svc: Services, url: str, secret: str) -> str:
    body = {
        "name": "hook",
        "eventType": "order.*",
        "targetUrl": url,
        "retryPolicy": {"maxRetries": 0},
    }
    integration_id = new_id("int")
    async with svc.db.write() as conn:
        await insert_integration(
            conn,
            svc.secretbox,
            integration_id=integration_id,
            org_id=ORG,
            integration=parse_integration(body),
            signing_keys=[SigningKey(secret, utcnow())],
            created_by=None,
            now=utcnow(),
        )
    return integration_id


async def _publish_and_enqueue(svc: Services, integration_id: str) -> DeliveryJob:
    draft = EventDraft(
        type="order.created",
        payload=b'{"orderId": 42}',
        value={"orderId": 42},
        has_value=True,
        data_content_type="application/json",
    )
    (appended,) = await svc.event_log.append(ORG, [draft])
    job = DeliveryJob(
        org_id=ORG,
        integration_id=integration_id,
        message_id=message_id(ORG, DEFAULT_SOURCE, appended.event_id, integration_id, 0),
        event=EventRef(appended.stream, appended.partition, appended.offset),
        event_id=appended.event_id,
        event_type="order.created",
    )
    new = NewJob(
        DELIVERY_JOB_KIND,
        job.to_payload(),
        queue=DELIVERY_QUEUE,
        org_id=ORG,
        max_attempts=1,
        dedupe_key=f"dlv:{job.message_id}",
    )
    await svc.queue.enqueue_now([new])
    return job
