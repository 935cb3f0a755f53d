"""The scheduler's housekeeping: finished queue jobs are purged after their retention."""

from __future__ import annotations

from datetime import timedelta

from junctionbox.engine.maintenance import Maintenance
from junctionbox.queue.jobs import NewJob
from junctionbox.services.container import Services
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
    services: Services, retention: timedelta | None, hours_later: float
) -> Maintenance:
    later = utcnow() + timedelta(hours=hours_later)
    return Maintenance(
        services.streams,
        services.publisher,
        services.queue,
        job_retention=retention,
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
