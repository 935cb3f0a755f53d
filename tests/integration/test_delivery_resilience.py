"""The delivery worker's resilience stack on SQLite and PostgreSQL: circuit breaker, rate
limit, auto-disable and per-destination fairness, against real recording sinks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.integration.delivery_helpers import (
    ORG,
    Recorder,
    add_integration,
    enqueue,
    job,
    log_rows,
    publish,
    reload,
    tenant_services,
)

from junctionbox.domain.circuit_breaker import BreakerConfig
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.queue.jobs import JobState
from junctionbox.services.container import Services
from junctionbox.store.queries.alerts import alerts_of
from junctionbox.store.queries.destination_breakers import (
    BreakerRow,
    breakers_of,
    save_breakers,
)
from junctionbox.testing import Behaviour, RecordingSink


@pytest.fixture
async def other_sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as recording:
        yield recording


@pytest.fixture
async def svc(
    db_url: str, tmp_path: Path, sink: RecordingSink, other_sink: RecordingSink
) -> AsyncIterator[Services]:
    allow = [sink.allowlist_entry, other_sink.allowlist_entry]
    services = await tenant_services(db_url, tmp_path, allow)
    yield services
    await services.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


# ---------------------------------------------------------------- circuit breaker


async def test_the_breaker_opens_holds_requests_without_spending_attempts_and_closes(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/flaky", Behaviour(503), Behaviour(503), Behaviour(200))
    stored = await add_integration(
        svc, sink.url("/flaky"), retryPolicy={"maxRetries": 5, "initialDelay": 1, "maxDelay": 2}
    )
    [job_id] = await enqueue(svc, stored, await publish(svc))
    config = BreakerConfig(failure_threshold=2, success_threshold=1, reset_timeout=0.6)
    worker = DeliveryWorker(svc, node_id="n1", listeners=[recorder], breaker_config=config)

    await worker.run_until_idle(timeout=10)

    _first, second, probe = sink.requests  # nothing went out while the circuit was open
    assert probe.received_at - second.received_at >= 0.55
    delivered = await job(svc, job_id)
    assert (delivered.state, delivered.attempts) == (JobState.DONE, 3)
    rows = await log_rows(svc)
    assert [(r["status"], r["error_category"], r["attempt_count"]) for r in rows] == [
        ("RETRYING", "SERVER_ERROR", 1),
        ("RETRYING", "SERVER_ERROR", 2),
        ("RETRYING", "CIRCUIT_OPEN", 2),  # logged once: no request, no attempt spent
        ("SUCCESS", None, 3),
    ]
    async with svc.db.read() as conn:
        [breaker] = await breakers_of(conn, [ORG])
    assert (breaker.destination, breaker.state) == (f"http://{sink.allowlist_entry}", "CLOSED")
    assert recorder.states() == ["DELIVERED"]


async def test_an_open_circuit_holds_every_job_to_that_destination_only(
    svc: Services, sink: RecordingSink, other_sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/down", Behaviour(500))
    down = await add_integration(
        svc, sink.url("/down"), retryPolicy={"maxRetries": 0, "initialDelay": 1, "maxDelay": 1}
    )
    up = await add_integration(svc, other_sink.url("/up"))
    await enqueue(svc, down, await publish(svc, 2))
    config = BreakerConfig(failure_threshold=2, success_threshold=1, reset_timeout=30)
    worker = DeliveryWorker(
        svc, node_id="n1", listeners=[recorder], breaker_config=config, concurrency=1
    )
    await worker.run_until_idle(timeout=10)
    assert len(sink.requests) == 2  # the circuit is open now

    later = await enqueue(svc, down, await publish(svc, 3))
    await enqueue(svc, up, await publish(svc, 2))
    await worker.run_until_idle(timeout=10, horizon=5)

    assert len(sink.requests) == 2  # nothing more to the open destination ...
    assert len(other_sink.requests) == 2  # ... while another destination is served
    for job_id in later:
        waiting = await job(svc, job_id)
        assert (waiting.state, waiting.attempts) == (JobState.READY, 0)


async def test_a_circuit_opened_by_another_node_holds_this_one(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/shared"))
    opened = datetime.now(UTC)
    row = BreakerRow(ORG, f"http://{sink.allowlist_entry}", "OPEN", 0, 0, opened, opened)
    async with svc.db.write() as conn:
        await save_breakers(conn, [row])
    [job_id] = await enqueue(svc, stored, await publish(svc))
    worker = DeliveryWorker(svc, node_id="n2", listeners=[recorder])
    await worker.run_until_idle(timeout=10, horizon=5)
    assert sink.requests == []
    waiting = await job(svc, job_id)
    assert (waiting.state, waiting.attempts) == (JobState.READY, 0)
    assert waiting.run_at >= opened + timedelta(seconds=59)  # the default reset timeout


# ---------------------------------------------------------------- rate limit


async def test_rate_limited_jobs_wait_without_spending_attempts(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(
        svc,
        sink.url("/limited"),
        rateLimits={"enabled": True, "maxRequests": 2, "windowSeconds": 0.5},
    )
    job_ids = await enqueue(svc, stored, await publish(svc, 5))

    await DeliveryWorker(svc, node_id="n1", listeners=[recorder]).run_until_idle(timeout=10)

    times = sorted(r.received_at for r in sink.requests)
    assert len(times) == 5
    assert times[1] - times[0] < 0.2  # the burst of maxRequests ...
    assert times[2] - times[0] >= 0.2  # ... then one per window / maxRequests (0.25 s)
    assert times[4] - times[0] >= 0.7
    for job_id in job_ids:
        done = await job(svc, job_id)
        assert (done.state, done.attempts) == (JobState.DONE, 1)
    assert [r["status"] for r in await log_rows(svc)] == ["SUCCESS"] * 5


# ---------------------------------------------------------------- auto-disable


async def test_consecutive_final_failures_disable_the_integration_with_an_alert(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/bad", Behaviour(400))
    stored = await add_integration(
        svc,
        sink.url("/bad"),
        disableAfterFailures=2,
        retryPolicy={"maxRetries": 0, "initialDelay": 1, "maxDelay": 1},
    )
    worker = DeliveryWorker(svc, node_id="n1", listeners=[recorder])
    await enqueue(svc, stored, await publish(svc, 2))
    await worker.run_until_idle(timeout=10)

    assert recorder.states() == ["DEAD_LETTERED", "DISABLED"]
    disabled = await reload(svc, stored.id)
    assert not disabled.is_active
    assert disabled.disabled_reason == "2 consecutive failures"
    async with svc.db.read() as conn:
        [alert] = await alerts_of(conn, [ORG])
    assert (alert["kind"], alert["subject_id"]) == ("INTEGRATION_AUTO_DISABLED", stored.id)

    await enqueue(svc, stored, await publish(svc))  # disabled: skipped, nothing sent
    await worker.run_until_idle(timeout=10)
    assert len(sink.requests) == 2
    assert recorder.states() == ["DEAD_LETTERED", "DISABLED", "SKIPPED"]


async def test_a_delivery_resets_the_failure_streak(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/mixed", Behaviour(400), Behaviour(200), Behaviour(400))
    stored = await add_integration(
        svc,
        sink.url("/mixed"),
        disableAfterFailures=2,
        retryPolicy={"maxRetries": 0, "initialDelay": 1, "maxDelay": 1},
    )
    worker = DeliveryWorker(svc, node_id="n1", listeners=[recorder])
    for _ in range(3):  # one at a time, so that the order is the sink's
        await enqueue(svc, stored, await publish(svc))
        await worker.run_until_idle(timeout=10)
    after = await reload(svc, stored.id)
    assert after.is_active
    assert after.consecutive_failures == 1
    assert recorder.states() == ["DEAD_LETTERED", "DEAD_LETTERED", "DELIVERED"]


# ---------------------------------------------------------------- fairness


async def test_a_hanging_destination_does_not_take_every_slot(
    svc: Services, sink: RecordingSink, other_sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/hang", Behaviour.hang())
    hanging = await add_integration(svc, sink.url("/hang"), timeoutMs=60_000)
    fast = await add_integration(svc, other_sink.url("/fast"))
    stuck = await enqueue(svc, hanging, await publish(svc, 8))  # first in line
    await enqueue(svc, fast, await publish(svc, 6))
    worker = DeliveryWorker(
        svc,
        node_id="n1",
        listeners=[recorder],
        concurrency=4,
        destination_concurrency=2,
        grace_seconds=0.1,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await other_sink.wait_for(6, timeout=5)
        async with asyncio.timeout(5):
            while len(recorder.outcomes) < 6:  # noqa: ASYNC110 (a state, no event)
                await asyncio.sleep(0.02)
        assert len(sink.requests) == 2  # the hanging lane's cap
    finally:
        stop.set()
        await running
    assert recorder.states() == ["DELIVERED"] * 6
    for job_id in stuck:  # stopped: given back, no attempt spent
        waiting = await job(svc, job_id)
        assert (waiting.state, waiting.attempts) == (JobState.READY, 0)
