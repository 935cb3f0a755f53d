"""Loading what a batch of claimed delivery jobs needs, in one read transaction.

For each job: its payload as a :class:`DeliveryJob`, the integration (parsed configuration
with opened credentials, cached until its change stamp moves), the action, the event from
the log and the destination origin (the key of fairness and of the circuit breaker). A job
that cannot run gets a :class:`Problem` saying how it ends instead: skipped (integration
deleted, inactive, not the tenant's, or the action no longer exists) or failed for good
(the event is no longer in the log, the payload or the integration cannot be read).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import DeliveryJob
from junctionbox.domain.events import StoredEvent
from junctionbox.domain.outbound import Action, StoredIntegration
from junctionbox.domain.secretbox import SecretBox
from junctionbox.engine.handoff import NOTHING_KNOWN, Known
from junctionbox.queue.jobs import Job
from junctionbox.services.breakers import Breakers, origin_of
from junctionbox.store.database import Database
from junctionbox.store.queries.delivery_attempts import IntegrationStamp, Position, parents_of
from junctionbox.store.queries.integrations import load_integration
from junctionbox.store.queries.worker_reads import stamps_and_events
from junctionbox.store.sqlite_inline import SMALL_BATCH

log = logging.getLogger(__name__)

_MAX_CACHED = 10_000


class ProblemKind(StrEnum):
    SKIP = "SKIP"  # nothing to deliver any more: the job completes, no attempt is logged
    FAIL = "FAIL"  # cannot be delivered: logged as failed and dead-lettered


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    message: str
    category: str


@dataclass(slots=True, eq=False)
class Ready:
    """Everything a runnable delivery needs. (Values made per delivery are not frozen: a
    frozen dataclass sets each field through ``object.__setattr__``; treat as immutable.)"""

    delivery: DeliveryJob
    stored: StoredIntegration
    action: Action
    event: StoredEvent
    destination: str  # ``scheme://host:port`` of the action's target

    @property
    def breaker_key(self) -> tuple[int, str]:
        """Breakers are per (integration owner, destination origin)."""
        return (self.stored.org_id, self.destination)


@dataclass(slots=True, eq=False)
class Prepared:
    """A claimed job, ``ready`` to run, or with the ``problem`` that ends it (and whatever
    could be found for that problem's log row)."""

    job: Job
    delivery: DeliveryJob | None
    ready: Ready | None = None
    problem: Problem | None = None
    stored: StoredIntegration | None = None
    action: Action | None = None

    @property
    def destination(self) -> str | None:
        return self.ready.destination if self.ready is not None else None


class DeliveryLoader:
    """Prepares claimed jobs; keeps parsed integrations and tenants' parents cached."""

    def __init__(self, db: Database, secretbox: SecretBox, breakers: Breakers) -> None:
        self.db = db
        self.secretbox = secretbox
        self.breakers = breakers
        self._integrations: dict[str, tuple[IntegrationStamp, StoredIntegration]] = {}
        self._parents: dict[int, int | None] = {}

    async def prepare(self, jobs: Sequence[Job], known: Known = NOTHING_KNOWN) -> list[Prepared]:
        """The jobs prepared. ``known``: what the dispatcher read for jobs it handed over
        (events, integrations' stamps), not read again; when it covers every job and the
        caches the rest, nothing is read but the breakers when they are due."""
        deliveries = [_delivery_of(job) for job in jobs]
        wanted = [d for d in deliveries if d is not None]
        from_memory = self._from_memory(jobs, deliveries, known)
        if from_memory is not None:
            keys = _breaker_keys(from_memory)
            if self.breakers.needs_refresh(keys):
                async with self.db.read(inline=True) as conn:
                    await self.breakers.refresh(conn, keys)
            return from_memory
        async with self.db.read(inline=len(jobs) <= SMALL_BATCH) as conn:
            ids = {d.integration_id for d in wanted}
            positions = {p for d in wanted if (p := _position(d)) not in known.events}
            # Both reads in one go (on SQLite one call on the driver's thread).
            stamps, found_events = await stamps_and_events(conn, ids, positions)
            if known.events:
                found_events = {**known.events, **found_events}
            integrations = await self._load_integrations(conn, ids, stamps)
            await self._load_parents(conn, {d.org_id for d in wanted})
            prepared = [
                self._prepare(job, delivery, integrations, found_events)
                for job, delivery in zip(jobs, deliveries, strict=True)
            ]
            keys = {p.ready.breaker_key for p in prepared if p.ready is not None}
            await self.breakers.refresh(conn, keys)
        return prepared

    def prepared_in_memory(self, jobs: Sequence[Job], known: Known) -> list[Prepared] | None:
        """The jobs prepared at once, when :meth:`prepare` would read nothing for them (not
        even their breakers); else None."""
        prepared = self._from_memory(jobs, [_delivery_of(job) for job in jobs], known)
        if prepared is None or self.breakers.needs_refresh(_breaker_keys(prepared)):
            return None
        return prepared

    def _from_memory(
        self, jobs: Sequence[Job], deliveries: Sequence[DeliveryJob | None], known: Known
    ) -> list[Prepared] | None:
        """The jobs prepared without a read, when everything they need is in hand: each
        one's event, its integration cached at the stamp the dispatcher just read, and the
        tenants' parents; else None. (The breakers are the caller's to refresh.)"""
        if not known.stamps:
            return None
        integrations: dict[str, StoredIntegration | Problem] = {}
        for delivery in deliveries:
            if delivery is None:
                return None
            integration_id = delivery.integration_id
            stamp = known.stamps.get(integration_id)
            cached = self._integrations.get(integration_id)
            if stamp is None or cached is None or cached[0] != stamp:
                return None
            if delivery.org_id not in self._parents or _position(delivery) not in known.events:
                return None
            integrations[integration_id] = cached[1]
        return [
            self._prepare(job, delivery, integrations, known.events)
            for job, delivery in zip(jobs, deliveries, strict=True)
        ]

    def _prepare(
        self,
        job: Job,
        delivery: DeliveryJob | None,
        integrations: dict[str, StoredIntegration | Problem],
        found_events: Mapping[Position, StoredEvent],
    ) -> Prepared:
        if delivery is None:
            problem = Problem(ProblemKind.FAIL, "the job's payload is not a delivery", "INVALID")
            return Prepared(job, None, problem=problem)
        stored = integrations.get(delivery.integration_id)
        if stored is None:
            return _skip(job, delivery, "the integration was deleted")
        if isinstance(stored, Problem):
            return Prepared(job, delivery, problem=stored)
        if not self._belongs(stored, delivery):
            log.error(
                "delivery job %s names integration %s of another tenant; skipped",
                job.id,
                stored.id,
            )
            return _skip(job, delivery, "the integration does not serve this tenant")
        if not stored.is_active:
            return _skip(job, delivery, "the integration is inactive", stored)
        actions = stored.integration.effective_actions()
        if not 0 <= delivery.action_index < len(actions):
            return _skip(job, delivery, "the action no longer exists", stored)
        action = actions[delivery.action_index]
        event = found_events.get(_position(delivery))
        if event is None or event.event_id != delivery.event_id:
            problem = Problem(
                ProblemKind.FAIL, "the event is no longer in the log", "EVENT_MISSING"
            )
            return Prepared(job, delivery, problem=problem, stored=stored, action=action)
        ready = Ready(delivery, stored, action, event, origin_of(action.target_url))
        return Prepared(job, delivery, ready, stored=stored, action=action)

    def _belongs(self, stored: StoredIntegration, delivery: DeliveryJob) -> bool:
        # An integration serves its own tenant's events and, unless scoped to the entity
        # only, its units' (the dispatcher checks scope and exclusions when matching).
        return stored.org_id in (delivery.org_id, self._parents.get(delivery.org_id))

    async def _load_integrations(
        self, conn: AsyncConnection, ids: set[str], stamps: dict[str, IntegrationStamp]
    ) -> dict[str, StoredIntegration | Problem]:
        if not ids:
            return {}
        loaded: dict[str, StoredIntegration | Problem] = {}
        for integration_id, stamp in stamps.items():
            cached = self._integrations.get(integration_id)
            if cached is not None and cached[0] == stamp:
                loaded[integration_id] = cached[1]
                continue
            loaded[integration_id] = await self._load_one(conn, integration_id, stamp)
        for gone in ids - stamps.keys():
            self._integrations.pop(gone, None)
        return loaded

    async def _load_one(
        self, conn: AsyncConnection, integration_id: str, stamp: IntegrationStamp
    ) -> StoredIntegration | Problem:
        try:
            stored = await load_integration(conn, self.secretbox, integration_id)
        except Exception:  # a configuration that no longer parses, or unreadable secrets
            log.exception("integration %s cannot be loaded", integration_id)
            message = "the integration's configuration cannot be read"
            return Problem(ProblemKind.FAIL, message, "CONFIG_ERROR")
        if stored is None:
            return Problem(ProblemKind.SKIP, "the integration was deleted", "SKIPPED")
        if len(self._integrations) >= _MAX_CACHED:
            self._integrations.clear()
        self._integrations[integration_id] = (stamp, stored)
        return stored

    async def _load_parents(self, conn: AsyncConnection, org_ids: set[int]) -> None:
        unknown = org_ids - self._parents.keys()
        if unknown:
            found = await parents_of(conn, unknown)
            self._parents.update({org_id: found.get(org_id) for org_id in unknown})


def _delivery_of(job: Job) -> DeliveryJob | None:
    try:
        return DeliveryJob.from_payload(job.payload)
    except (KeyError, TypeError, ValueError):
        log.error("job %s has a payload that is not a delivery", job.id)
        return None


def _position(delivery: DeliveryJob) -> Position:
    event = delivery.event
    return (delivery.org_id, event.stream, event.partition, event.offset)


def _skip(
    job: Job, delivery: DeliveryJob, message: str, stored: StoredIntegration | None = None
) -> Prepared:
    problem = Problem(ProblemKind.SKIP, message, "SKIPPED")
    return Prepared(job, delivery, problem=problem, stored=stored)


def _breaker_keys(prepared: Sequence[Prepared]) -> set[tuple[int, str]]:
    return {p.ready.breaker_key for p in prepared if p.ready is not None}
