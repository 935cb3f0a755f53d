"""The DLQ's pure rules: the redrive job, its dedupe key and the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from junctionbox.domain.delivery import (
    DELIVERY_JOB_KIND,
    DELIVERY_QUEUE,
    DeliveryJob,
    EventRef,
    Trigger,
)
from junctionbox.services.dlq import DLQ_POLICY, redrive_job, redrive_key, retry_time
from junctionbox.store.queries.dlq import DlqRecord

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _entry(attempt_count: int = 0) -> DlqRecord:
    original = DeliveryJob(
        org_id=101,
        integration_id="int_1",
        message_id="msg_abc",
        event=EventRef("default", 2, 40),
        event_id="evt-1",
        event_type="order.created",
        action_index=1,
        trigger=Trigger.SCHEDULED,
        integration_version=3,
        scheduled_id="sch_1",
        correlation_id="corr-1",
    )
    return DlqRecord(
        id="dlq_1",
        org_id=101,
        integration_id="int_1",
        integration_name="hook",
        direction="OUTBOUND",
        delivery_id="msg_abc",
        event_id="evt-1",
        event_type="order.created",
        status="PENDING_RETRY",
        job=original.to_payload(),
        original_payload=None,
        target_url=None,
        http_method=None,
        last_error=None,
        error_category=None,
        delivery_attempts=4,
        attempt_count=attempt_count,
        max_retries=3,
        next_retry_at=NOW,
        trace_id=None,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize("trigger", [Trigger.DLQ_RETRY, Trigger.MANUAL])
def test_a_redrive_is_the_same_delivery_once_more(trigger: Trigger) -> None:
    new = redrive_job(_entry(attempt_count=2), trigger)
    assert (new.kind, new.queue, new.org_id) == (DELIVERY_JOB_KIND, DELIVERY_QUEUE, 101)
    assert new.max_attempts == 1  # the DLQ counts its own retries
    assert new.dedupe_key == "dlq:dlq_1:3"
    job = DeliveryJob.from_payload(new.payload)
    assert job.message_id == "msg_abc"  # the same webhook-id
    assert (job.trigger, job.dlq_entry_id) == (trigger, "dlq_1")
    assert job.scheduled_id is None  # the schedule does not own this run
    assert (job.event, job.action_index, job.correlation_id) == (
        EventRef("default", 2, 40),
        1,
        "corr-1",
    )


def test_each_redrive_has_its_own_key() -> None:
    assert redrive_key("dlq_1", 1) != redrive_key("dlq_1", 2)
    assert redrive_key("dlq_1", 1) != redrive_key("dlq_2", 1)


@pytest.mark.parametrize(
    ("retries", "base"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)],  # min(1 s * 2^n, 5 s)
)
def test_the_schedule_is_seed_003s(retries: int, base: float) -> None:
    earliest = retry_time(DLQ_POLICY, NOW, retries, 0.0)
    latest = retry_time(DLQ_POLICY, NOW, retries, 1.0)
    assert (earliest - NOW).total_seconds() == pytest.approx(base)
    assert (latest - NOW).total_seconds() == pytest.approx(base * 1.2)  # +20 % jitter
