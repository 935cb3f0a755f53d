"""Committing plain deliveries: on PostgreSQL one statement of their own
(``store.queries.commit_on_postgres``), everywhere else, and for any other batch, the
transaction's way. Both must record the same thing; the statement writes all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from tests.integration.delivery_helpers import (
    Recorder,
    add_integration,
    enqueue,
    log_rows,
    publish,
    reload,
)
from tests.support import attempt_row

from junctionbox.domain.circuit_breaker import BreakerConfig
from junctionbox.domain.rollups import RollupKey
from junctionbox.engine.delivery_worker import DeliveryWorker
from junctionbox.queue.jobs import JobState, Lease, NewJob
from junctionbox.services.container import Services
from junctionbox.store.queries.commit_on_postgres import commit_delivered
from junctionbox.store.queries.log_batches import log_row_values
from junctionbox.store.tables import delivery_rollups, jobs, outbound_integrations
from junctionbox.testing import RecordingSink

# Columns that differ between two deliveries of the same event by design (ids, instants,
# the signature over the instant, timings in the trace, the sink's Date header).
_PER_ATTEMPT = {
    "id",
    "job_id",
    "delivery_id",
    "event_id",
    "created_at",
    "delivered_at",
    "trace_id",
    "signature",
    "request_headers",
    "response_headers",
    "response_time_ms",
    "steps",
    "integration_id",
    "integration_name",
    "action_name",  # the integration's name, which the first action takes
    "target_url",
}


def worker(svc: Services, *listeners: object) -> DeliveryWorker:
    calm = BreakerConfig(failure_threshold=1000)
    return DeliveryWorker(svc, node_id="n", listeners=listeners, breaker_config=calm)  # type: ignore[arg-type]


async def success_rollups(svc: Services, integration_id: str) -> int:
    query = select(func.coalesce(func.sum(delivery_rollups.c.count), 0)).where(
        delivery_rollups.c.integration_id == integration_id,
        delivery_rollups.c.metric == "status",
        delivery_rollups.c.key == "SUCCESS",
    )
    async with svc.db.read() as conn:
        return int((await conn.execute(query)).scalar_one())


async def set_streak(svc: Services, integration_id: str, failures: int) -> None:
    async with svc.db.write() as conn:
        await conn.execute(
            update(outbound_integrations)
            .where(outbound_integrations.c.id == integration_id)
            .values(consecutive_failures=failures)
        )


@pytest.mark.parametrize("count", [1, 4, 9])
async def test_plain_deliveries_are_recorded_as_a_transaction_records_them(
    svc: Services, sink: RecordingSink, count: int
) -> None:
    # The production listeners are concerned by none of these jobs (no DLQ entry, no
    # schedule): on PostgreSQL they take the one statement. A listener concerned by every
    # job (Recorder) sends the same events to a second integration the transaction's way.
    plain = await add_integration(svc, sink.url("/plain"), name="plain")
    other = await add_integration(svc, sink.url("/other"), name="other")
    await set_streak(svc, plain.id, 3)
    events = await publish(svc, count)
    plain_jobs = await enqueue(svc, plain, events)
    await worker(svc, svc.dlq, svc.schedules).run_until_idle(timeout=20)
    await enqueue(svc, other, events)
    await worker(svc, Recorder()).run_until_idle(timeout=20)

    assert len(sink.requests) == 2 * count
    async with svc.db.read() as conn:
        states = (await conn.execute(select(jobs.c.id, jobs.c.state, jobs.c.lease_token))).all()
    assert {state for _, state, _ in states} == {JobState.DONE.value}
    assert {token for _, _, token in states} == {None}
    fast = {row["event_id"]: row for row in await log_rows(svc, integration_id=plain.id)}
    slow = {row["event_id"]: row for row in await log_rows(svc, integration_id=other.id)}
    assert sorted(row["job_id"] for row in fast.values()) == sorted(plain_jobs)
    assert fast.keys() == slow.keys() == {e.event_id for e in events}
    for event_id, row in fast.items():
        same = {k: v for k, v in row.items() if k not in _PER_ATTEMPT}
        assert same == {k: v for k, v in slow[event_id].items() if k not in _PER_ATTEMPT}
        assert [s["step"] for s in row["steps"]] == [s["step"] for s in slow[event_id]["steps"]]
        assert dict(row["request_headers"]).keys() == dict(slow[event_id]["request_headers"]).keys()
        assert row["delivered_at"] is not None
        assert row["trace_id"]
    assert await success_rollups(svc, plain.id) == count
    assert await success_rollups(svc, other.id) == count
    assert (await reload(svc, plain.id)).consecutive_failures == 0


# ---------------------------------------------------------------- the statement itself


@pytest.fixture
def postgres_only(svc: Services) -> None:
    if svc.db.is_sqlite:
        pytest.skip("PostgreSQL's one-statement commit; SQLite commits in one call on its thread")


async def leased(svc: Services, count: int) -> list[Lease]:
    await svc.queue.enqueue_now([NewJob("delivery", {"n": n}, queue="q") for n in range(count)])
    claimed = await svc.queue.claim("q", "w", count, 30)
    return [Lease(job.id, job.lease_token or "") for job in claimed]


def success_bucket(integration_id: str, now: datetime) -> RollupKey:
    return (
        100,
        integration_id,
        now.replace(minute=0, second=0, microsecond=0),
        "status",
        "SUCCESS",
    )


async def commit(
    svc: Services, leases: list[Lease], integration_id: str, now: datetime, total_ms: int
) -> dict[str, str] | None:
    """The statement for ``leases``: a successful attempt's row each, their rollup."""
    rows = [
        attempt_row(f"dlv_{n}", job_id=lease.job_id, integration_id=integration_id, org_id=100)
        for n, lease in enumerate(leases)
    ]
    counts = {success_bucket(integration_id, now): (len(leases), total_ms)}
    dialect = svc.db.engine.dialect
    async with svc.db.driver() as driver:
        return await commit_delivered(
            driver, dialect, leases, now, log_row_values(dialect, rows), counts
        )


@pytest.mark.usefixtures("postgres_only")
async def test_the_statement_writes_nothing_when_a_lease_was_lost(
    svc: Services, sink: RecordingSink
) -> None:
    plain = await add_integration(svc, sink.url("/plain"))
    await set_streak(svc, plain.id, 2)
    leases = await leased(svc, 3)
    async with svc.db.write() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == leases[1].job_id).values(lease_token="someone-else")
        )
    assert await commit(svc, leases, plain.id, datetime.now(UTC), 9) is None
    assert await log_rows(svc) == []
    assert await success_rollups(svc, plain.id) == 0
    assert (await reload(svc, plain.id)).consecutive_failures == 2
    for lease in (leases[0], leases[2]):
        job = await svc.queue.get(lease.job_id)
        assert job is not None
        assert job.state is JobState.RUNNING


@pytest.mark.usefixtures("postgres_only")
@pytest.mark.parametrize("count", [1, 5])
async def test_the_statement_writes_everything_when_every_lease_is_ours(
    svc: Services, sink: RecordingSink, count: int
) -> None:
    plain = await add_integration(svc, sink.url("/plain"))
    await set_streak(svc, plain.id, 2)
    leases = await leased(svc, count)
    now = datetime.now(UTC)
    bucket = success_bucket(plain.id, now)
    async with svc.db.write() as conn:  # an earlier batch's counts: added to, not replaced
        await conn.execute(
            delivery_rollups.insert().values(
                dict(
                    zip(
                        ("org_id", "integration_id", "bucket_start", "metric", "key"),
                        bucket,
                        strict=True,
                    )
                )
                | {"count": 5, "total_ms": 50}
            )
        )
    moved = await commit(svc, leases, plain.id, now, 7)
    assert moved == {lease.job_id: "q" for lease in leases}
    assert sorted(row["job_id"] for row in await log_rows(svc)) == sorted(moved)
    assert await success_rollups(svc, plain.id) == 5 + count
    assert (await reload(svc, plain.id)).consecutive_failures == 0
    for lease in leases:
        job = await svc.queue.get(lease.job_id)
        assert job is not None
        assert job.state is JobState.DONE
        assert job.finished_at == now
        assert job.lease_token is None
