"""The queue's pure parts: job values, claim arguments, lease arithmetic, wake-up flags."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from junctionbox.domain.ids import has_prefix
from junctionbox.queue.jobs import (
    MAX_CLAIM,
    MAX_ERROR_CHARS,
    ClaimRequest,
    Job,
    JobState,
    Lease,
    NewJob,
    age_seconds,
    clip_error,
    lease_deadline,
    new_job_ids,
)
from junctionbox.queue.notify import Wakeups
from junctionbox.store.pg_listener import asyncpg_dsn

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _job(**changes: object) -> Job:
    job = Job(
        id="job_01J0000000000000000000000A",
        org_id=100,
        kind="delivery",
        queue="default",
        state=JobState.RUNNING,
        priority=0,
        payload={},
        attempts=1,
        max_attempts=3,
        run_at=NOW,
        ordering_key=None,
        dedupe_key=None,
        lease_token="tok",
        lease_owner="w1",
        leased_until=NOW + timedelta(seconds=30),
        last_error=None,
        finished_at=None,
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- NewJob


def test_new_job_defaults() -> None:
    job = NewJob("delivery", {"a": 1})
    assert (job.queue, job.priority, job.max_attempts, job.run_at) == ("default", 0, 5, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": ""},
        {"kind": "k" * 65},
        {"queue": ""},
        {"ordering_key": ""},
        {"dedupe_key": "d" * 201},
        {"max_attempts": 0},
        {"run_at": datetime(2030, 1, 1)},  # naive
    ],
)
def test_new_job_rejects_values_the_table_cannot_hold(changes: dict[str, object]) -> None:
    values: dict[str, object] = {"kind": "delivery", "payload": {}, **changes}
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        NewJob(**values)  # type: ignore[arg-type]


def test_new_job_accepts_keys_up_to_the_column_width() -> None:
    job = NewJob("k" * 64, {}, ordering_key="o" * 200, dedupe_key="d" * 200, run_at=NOW)
    assert job.run_at == NOW


# ---------------------------------------------------------------- claims and leases


@pytest.mark.parametrize(
    ("limit", "lease", "kinds"),
    [
        (0, 30.0, None),
        (MAX_CLAIM + 1, 30.0, None),
        (1, 0.0, None),
        (1, -1.0, None),
        (1, math.nan, None),
        (1, math.inf, None),
        (1, 30.0, ()),
    ],
)
def test_claim_request_rejects_bad_arguments(
    limit: int, lease: float, kinds: tuple[str, ...] | None
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ClaimRequest("default", "w1", limit, lease, kinds)


def test_claim_request_needs_an_owner_that_fits() -> None:
    with pytest.raises(ValueError, match="owner"):
        ClaimRequest("default", "", 1, 30.0)
    with pytest.raises(ValueError, match="owner"):
        ClaimRequest("default", "o" * 101, 1, 30.0)
    assert ClaimRequest("default", "w1", MAX_CLAIM, 0.5, ("a",)).limit == MAX_CLAIM


def test_lease_deadline_adds_the_lease() -> None:
    assert lease_deadline(NOW, 1.5) == NOW + timedelta(seconds=1.5)
    with pytest.raises(ValueError, match="lease_seconds"):
        lease_deadline(NOW, 0)


def test_a_running_job_hands_out_its_lease() -> None:
    assert _job().lease == Lease("job_01J0000000000000000000000A", "tok")


@pytest.mark.parametrize(
    "changes", [{"state": JobState.READY, "lease_token": None}, {"lease_token": None}]
)
def test_a_job_without_a_current_lease_has_none_to_hand_out(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not leased"):
        _ = _job(**changes).lease


def test_exhausted_on_the_last_allowed_attempt() -> None:
    assert not _job(attempts=2, max_attempts=3).exhausted
    assert _job(attempts=3, max_attempts=3).exhausted


def test_lease_expired_only_after_leased_until() -> None:
    job = _job()
    assert not job.lease_expired(NOW + timedelta(seconds=30))
    assert job.lease_expired(NOW + timedelta(seconds=30, microseconds=1))
    assert not _job(leased_until=None).lease_expired(NOW)


# ---------------------------------------------------------------- small helpers


def test_new_job_ids_are_ascending_unique_job_ids() -> None:
    ids = new_job_ids(200)
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
    assert all(has_prefix(i, "job") for i in ids)


def test_clip_error_keeps_short_errors_and_clips_long_ones() -> None:
    assert clip_error("boom") == "boom"
    clipped = clip_error("x" * (MAX_ERROR_CHARS + 10))
    assert len(clipped) == MAX_ERROR_CHARS
    assert clipped.endswith("…")


def test_age_is_never_negative() -> None:
    assert age_seconds(NOW, NOW + timedelta(seconds=2.5)) == 2.5
    assert age_seconds(NOW + timedelta(seconds=1), NOW) == 0.0


def test_asyncpg_dsn_drops_the_sqlalchemy_driver() -> None:
    dsn = asyncpg_dsn("postgresql+asyncpg://jb:s3cret@db:5432/junctionbox")
    assert dsn == "postgresql://jb:s3cret@db:5432/junctionbox"


# ---------------------------------------------------------------- wake-up flags


async def test_a_signal_before_the_wait_is_not_lost() -> None:
    wakeups = Wakeups()
    wakeups.signal(["deliveries"])
    assert await wakeups.wait("deliveries", 5)
    assert not await wakeups.wait("deliveries", 0.01)  # consumed


async def test_a_signal_wakes_every_waiter_of_its_queue_and_the_any_queue_waiters() -> None:
    wakeups = Wakeups()
    waiters = [asyncio.create_task(wakeups.wait(q, 5)) for q in ("a", "a", None)]
    other = asyncio.create_task(wakeups.wait("b", 0.05))
    await asyncio.sleep(0)
    wakeups.signal(["a"])
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await other is False


async def test_signal_all_wakes_every_queue() -> None:
    wakeups = Wakeups()
    waiters = [asyncio.create_task(wakeups.wait(q, 5)) for q in ("a", "b", None)]
    await asyncio.sleep(0)
    wakeups.signal_all()
    assert await asyncio.gather(*waiters) == [True, True, True]
