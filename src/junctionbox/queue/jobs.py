"""Jobs of the durable queue as pure values: what is enqueued, what a claim hands out, and the
small rules that need no database (validation, lease deadlines, ids in enqueue order).

Attempts are counted by claims: a claim (including the re-claim of a job whose lease expired)
makes ``attempts`` one larger, a ``release`` gives the attempt back. ``max_attempts`` is the
ceiling the worker's retry policy works under; the queue itself only enforces it for jobs whose
lease expired on their last attempt (they are dead-lettered instead of re-claimed, so a job
that crashes its worker every time cannot loop forever).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from junctionbox.domain.ids import new_id_of

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 5
MAX_CLAIM = 1000
# Errors are kept for people to read, not as logs: a whole HTML error page is not useful.
MAX_ERROR_CHARS = 4000
_NAME_CHARS = 64  # kind and queue columns
_KEY_CHARS = 200  # ordering_key and dedupe_key columns
_OWNER_CHARS = 100  # lease_owner column


class JobState(StrEnum):
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"
    CANCELLED = "cancelled"


# Purge removes these after the retention period; dead jobs stay for the dead-letter queue.
PURGEABLE_STATES = (JobState.DONE, JobState.CANCELLED)


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. ``run_at`` None means now; keys are global strings, so callers
    namespace them (``int_…:customer-42``)."""

    kind: str
    payload: Mapping[str, Any]
    queue: str = DEFAULT_QUEUE
    org_id: int | None = None
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ordering_key: str | None = None
    dedupe_key: str | None = None

    def __post_init__(self) -> None:
        _check_text("kind", self.kind, _NAME_CHARS)
        _check_text("queue", self.queue, _NAME_CHARS)
        for name in ("ordering_key", "dedupe_key"):
            value = getattr(self, name)
            if value is not None:
                _check_text(name, value, _KEY_CHARS)
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")


@dataclass(frozen=True)
class Lease:
    """Proof of a claim: only the holder of the current token may finish the job."""

    job_id: str
    token: str


@dataclass(slots=True)
class Job:
    """A claimed or listed job. Treat as immutable; not frozen because a claim makes one
    per job (a frozen dataclass of 19 fields costs about 3 µs to build)."""

    id: str
    org_id: int | None
    kind: str
    queue: str
    state: JobState
    priority: int
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: datetime
    ordering_key: str | None
    dedupe_key: str | None
    lease_token: str | None
    lease_owner: str | None
    leased_until: datetime | None
    last_error: str | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def lease(self) -> Lease:
        if self.state is not JobState.RUNNING or self.lease_token is None:
            raise ValueError(f"job {self.id} is not leased")
        return Lease(self.id, self.lease_token)

    @property
    def exhausted(self) -> bool:
        """Whether this claim was the last one allowed: a failure now means dead-letter."""
        return self.attempts >= self.max_attempts

    def lease_expired(self, now: datetime) -> bool:
        return self.leased_until is not None and self.leased_until < now


@dataclass(frozen=True)
class ClaimRequest:
    """The validated arguments of one claim."""

    queue: str
    owner: str
    limit: int
    lease_seconds: float
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_text("queue", self.queue, _NAME_CHARS)
        _check_text("owner", self.owner, _OWNER_CHARS)
        if not 1 <= self.limit <= MAX_CLAIM:
            raise ValueError(f"limit must be between 1 and {MAX_CLAIM}")
        lease_duration(self.lease_seconds)
        if self.kinds is not None and not self.kinds:
            raise ValueError("kinds, when given, must name at least one kind")


def lease_duration(seconds: float) -> timedelta:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError("lease_seconds must be a positive number")
    return timedelta(seconds=seconds)


def lease_deadline(now: datetime, lease_seconds: float) -> datetime:
    return now + lease_duration(lease_seconds)


def new_job_ids(count: int) -> list[str]:
    """``count`` job ids in ascending order: ids made in the same millisecond are random
    among themselves, and sorting keeps a batch's FIFO order (created_at, id) equal to the
    order the caller listed the jobs in. Unique is enough for a job id (time-sortable by
    its milliseconds; tenants are kept apart by every query, not by ids being unguessable):
    entropy from the module generator (seeded from os.urandom) spares a system call per
    job, as delivery-log ids do."""
    return sorted(new_id_of("job", random.getrandbits(80)) for _ in range(count))


def clip_error(error: str) -> str:
    if len(error) <= MAX_ERROR_CHARS:
        return error
    return error[: MAX_ERROR_CHARS - 1] + "…"


def age_seconds(since: datetime, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds())


def _check_text(name: str, value: str, limit: int) -> None:
    if not value or len(value) > limit:
        raise ValueError(f"{name} must be 1 to {limit} characters")
