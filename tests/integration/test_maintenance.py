"""The scheduler's housekeeping: finished queue jobs and old delivery-log rows are purged
after their retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select
from tests.support import attempt_row

from junctionbox.engine.maintenance import Maintenance
from junctionbox.queue.jobs import NewJob
from junctionbox.services.container import Services
from junctionbox.store.queries.log_batches import insert_log_rows
from junctionbox.store.tables import delivery_logs, entities
from junctionbox.store.types import utcnow

QUEUE = "housekeeping-test"


async def _jobs_in_each_state(services: Services) -> dict[str, str]:
    """A done, a dead, a running and a ready job (their ids, by state), finished now."""
    queue = services.queue
    ids = await queue.enqueue_now([NewJob("delivery", {"n": n}, queue=QUEUE) for n in range(4)])
    done, dead, running = await queue.claim(QUEUE, "worker-1", 3, 30)
    assert await queue.complete(done.id, done.lease.token)
    assert await queue.dead_letter(dead.id, dead.lease.token, "failed for good")
    [ready] = [i for i in ids if i not in {done.id, dead.id, running.id}]
    return {"done": done.id, "dead": dead.id, "running": running.id, "ready": ready}


async def _left(services: Services, ids: dict[str, str]) -> set[str]:
    return {state for state, job_id in ids.items() if await services.queue.get(job_id)}


def _maintenance(
    services: Services,
    retention: timedelta | None,
    hours_later: float,
    log_retention: timedelta | None = None,
) -> Maintenance:
    later = utcnow() + timedelta(hours=hours_later)
    return Maintenance(
        services.db,
        services.streams,
        services.publisher,
        services.queue,
        job_retention=retention,
        log_retention=log_retention,
        clock=lambda: later,
    )


async def test_finished_jobs_are_purged_once_their_retention_has_passed(
    services: Services,
) -> None:
    ids = await _jobs_in_each_state(services)

    await _maintenance(services, timedelta(hours=24), hours_later=23).run_once()
    assert await _left(services, ids) == {"done", "dead", "running", "ready"}

    await _maintenance(services, timedelta(hours=24), hours_later=25).run_once()
    assert await _left(services, ids) == {"dead", "running", "ready"}  # dead: the DLQ's


async def test_finished_jobs_are_kept_without_a_retention(services: Services) -> None:
    ids = await _jobs_in_each_state(services)

    await _maintenance(services, None, hours_later=24 * 365).run_once()
    assert await _left(services, ids) == {"done", "dead", "running", "ready"}


async def _log_ids(services: Services) -> set[str]:
    async with services.db.read() as conn:
        return set((await conn.execute(select(delivery_logs.c.id))).scalars())


async def test_delivery_logs_older_than_their_retention_are_purged_for_every_tenant(
    services: Services,
) -> None:
    now = utcnow()
    async with services.db.write() as conn:
        for org_id in (501, 502):
            row = {"id": org_id, "name": f"org {org_id}", "tags": []}
            await conn.execute(insert(entities).values(**row, created_at=now, updated_at=now))
        await insert_log_rows(
            conn,
            [
                attempt_row("dlv_old_a", org_id=501, created_at=now - timedelta(days=40)),
                attempt_row("dlv_old_b", org_id=502, created_at=now - timedelta(days=31)),
                attempt_row("dlv_new_a", org_id=501, created_at=now - timedelta(days=29)),
            ],
        )

    await _maintenance(services, None, hours_later=0).run_once()  # no log retention set
    assert await _log_ids(services) == {"dlv_old_a", "dlv_old_b", "dlv_new_a"}

    await _maintenance(services, None, 0, log_retention=timedelta(days=30)).run_once()
    assert await _log_ids(services) == {"dlv_new_a"}
