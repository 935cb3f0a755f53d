"""New delivery jobs handed from the dispatcher to the delivery worker of the same process.

Without it an event's job takes two write transactions before it runs: the dispatcher's
(which inserts it ready) and the worker's claim (which leases it), each waiting its turn for
the write lock (on SQLite, behind every publish and every recorded delivery of the
process), then a read of the event the dispatcher had just read. With it, when the worker
has room and no backlog to work through, the dispatcher inserts the batch's immediate jobs
already leased to that worker (``JobQueue.enqueue_leased``: running, first attempt, the
worker's lease) in its own transaction, and once that has committed hands them over with
their events and integrations' stamps: one write transaction less per delivery, no wait for
a claim, and usually no read at all before the attempt.

What does not change: the jobs are rows in the queue like any other, fenced by their lease;
if the process dies, their leases expire and they run again (same ``webhook-id``). Only jobs
due now without an ordering key are handed over (a FIFO key's order is the claim's to keep),
and only while the worker's last claim came back short: with a backlog in the queue, new
jobs queue behind it instead of overtaking it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from junctionbox.domain.delivery import DELIVERY_JOB_KIND, DELIVERY_QUEUE
from junctionbox.domain.events import StoredEvent
from junctionbox.queue.jobs import Job, NewJob
from junctionbox.store.queries.delivery_attempts import IntegrationStamp, Position


@dataclass(frozen=True)
class Known:
    """What the dispatcher read for the jobs it hands over, in its committed transaction:
    their events by log position, and their integrations' (version, updated_at, is_active).
    The worker needs no read of its own for jobs whose integration it has cached at that
    stamp (see ``DeliveryLoader.prepare``)."""

    events: Mapping[Position, StoredEvent] = field(default_factory=dict)
    stamps: Mapping[str, IntegrationStamp] = field(default_factory=dict)


NOTHING_KNOWN: Final = Known()


def merged(known: Sequence[Known]) -> Known:
    """One :class:`Known` of several hand-overs (later ones win: read later)."""
    if not known:
        return NOTHING_KNOWN
    if len(known) == 1:
        return known[0]
    events: dict[Position, StoredEvent] = {}
    stamps: dict[str, IntegrationStamp] = {}
    for each in known:
        events.update(each.events)
        stamps.update(each.stamps)
    return Known(events, stamps)


class JobHandoff(Protocol):
    """The worker's side, as the dispatcher sees it."""

    @property
    def owner(self) -> str:
        """The lease owner to insert the jobs under."""
        ...

    @property
    def lease_seconds(self) -> float: ...

    def reserve(self, wanted: int) -> int:
        """Room for up to ``wanted`` jobs, held until :meth:`take` (0: none now)."""
        ...

    def take(self, jobs: Sequence[Job], known: Known, reserved: int) -> None:
        """The jobs leased in a committed transaction (none if it failed), what the
        dispatcher read for them, and the room :meth:`reserve` held, given back."""
        ...


def can_hand_over(job: NewJob) -> bool:
    """A delivery job the worker may take without a claim: due now, no ordering key."""
    return (
        job.kind == DELIVERY_JOB_KIND
        and job.queue == DELIVERY_QUEUE
        and job.run_at is None
        and job.ordering_key is None
    )
