"""Delivery jobs: what the dispatcher enqueues and the delivery worker runs.

A delivery is one (event, integration, action). Its ``message_id`` is what receivers see as
``webhook-id``: derived from those three, so every attempt, retry, DLQ redrive and replay of
the same delivery carries the same id and the receiver can deduplicate. A RECURRING
schedule's occurrences are distinct messages (the occurrence number is part of the id).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DELIVERY_JOB_KIND = "delivery"
DELIVERY_QUEUE = "deliveries"
MESSAGE_ID_PREFIX = "msg_"


class Trigger(StrEnum):
    """``triggerType`` of delivery logs."""

    EVENT = "EVENT"
    MANUAL = "MANUAL"  # a manual DLQ retry or a test send
    SCHEDULED = "SCHEDULED"  # a DELAYED or RECURRING occurrence
    DLQ_RETRY = "DLQ_RETRY"  # the DLQ worker's automatic retry
    REPLAY = "REPLAY"  # re-dispatch of stored events


class AttemptStatus(StrEnum):
    """``status`` of a delivery log row (one per attempt)."""

    SUCCESS = "SUCCESS"
    FAILED = "FAILED"  # failed for good (then dead-lettered)
    RETRYING = "RETRYING"  # failed, another attempt is scheduled
    ABANDONED = "ABANDONED"  # the DLQ gave up on it


class DlqStatus(StrEnum):
    PENDING_RETRY = "PENDING_RETRY"
    RETRYING = "RETRYING"
    ABANDONED = "ABANDONED"


class ScheduleStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


def job_max_attempts(max_retries: int) -> int:
    """The queue's ``max_attempts`` of a delivery job: one claim more than the retry policy
    sends. The policy decides the last send; the spare claim is for a worker that dies during
    that last send: the lease reaper would otherwise dead-letter the job on its own, with no
    DLQ entry, and the failure would not be visible where operators look."""
    return max_retries + 2


def delivery_dedupe_key(message_id: str, replay_id: str | None = None) -> str:
    """The job queue's dedupe key of a delivery: one job per message id, so dispatching an
    event again creates nothing; a replay has a namespace of its own, so it does."""
    if replay_id is not None:
        return f"replay:{replay_id}:{message_id}"
    return f"dlv:{message_id}"


def message_id(
    org_id: int, source: str, event_id: str, integration_id: str, action: int, occurrence: int = 0
) -> str:
    """The stable ``webhook-id`` of one delivery (``msg_`` + 26 base32 characters)."""
    key = f"{org_id}\x1f{source}\x1f{event_id}\x1f{integration_id}\x1f{action}\x1f{occurrence}"
    digest = hashlib.sha256(key.encode()).digest()[:16]
    return MESSAGE_ID_PREFIX + base64.b32encode(digest).decode().rstrip("=").lower()


@dataclass(slots=True)
class EventRef:
    """Where the event lives in the log."""

    stream: str
    partition: int
    offset: int


@dataclass(slots=True)
class DeliveryJob:
    """The payload of a ``delivery`` job. The event is read from the log at send time, so a
    job stays small; ``integration_version`` records the version matched at dispatch (the
    worker sends with the integration's current configuration).

    Made for every claimed job: not frozen (a frozen dataclass sets each field through
    ``object.__setattr__``, several microseconds for these 12); treat as immutable."""

    org_id: int  # the event's tenant (an entity; the integration may belong to its parent)
    integration_id: str
    message_id: str
    event: EventRef
    event_id: str
    event_type: str
    action_index: int = 0
    trigger: Trigger = Trigger.EVENT
    integration_version: int | None = None
    scheduled_id: str | None = None
    dlq_entry_id: str | None = None
    correlation_id: str | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "orgId": self.org_id,
            "integrationId": self.integration_id,
            "messageId": self.message_id,
            "event": [self.event.stream, self.event.partition, self.event.offset],
            "eventId": self.event_id,
            "eventType": self.event_type,
            "action": self.action_index,
            "trigger": self.trigger.value,
        }
        optional = {
            "integrationVersion": self.integration_version,
            "scheduledId": self.scheduled_id,
            "dlqEntryId": self.dlq_entry_id,
            "correlationId": self.correlation_id,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DeliveryJob:
        stream, partition, offset = payload["event"]
        return cls(
            org_id=int(payload["orgId"]),
            integration_id=str(payload["integrationId"]),
            message_id=str(payload["messageId"]),
            event=EventRef(str(stream), int(partition), int(offset)),
            event_id=str(payload["eventId"]),
            event_type=str(payload["eventType"]),
            action_index=int(payload.get("action", 0)),
            trigger=Trigger(payload.get("trigger", Trigger.EVENT.value)),
            integration_version=payload.get("integrationVersion"),
            scheduled_id=payload.get("scheduledId"),
            dlq_entry_id=payload.get("dlqEntryId"),
            correlation_id=payload.get("correlationId"),
        )


class FinalState(StrEnum):
    """How a delivery job ended (what the listeners are told)."""

    DELIVERED = "DELIVERED"
    DEAD_LETTERED = "DEAD_LETTERED"  # permanent failure or retries exhausted
    DISABLED = "DISABLED"  # 410 Gone or auto-disable: dead-lettered and integration off
    SKIPPED = "SKIPPED"  # integration deleted or inactive when the job ran


@dataclass(slots=True)
class DeliveryOutcome:
    state: FinalState
    attempts: int
    error: str | None = None
    error_category: str | None = None
    response_status: int | None = None
    trace_id: str | None = None
    target_url: str | None = None
    http_method: str | None = None
    integration_name: str | None = None
    original_payload: str | None = None  # the event data as text, capped
