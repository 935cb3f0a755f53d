"""Dedupe keys of a multi-action chain's next job, and the delivery job's attempt ceiling."""

from __future__ import annotations

from junctionbox.domain.delivery import DeliveryJob, EventRef, Trigger, job_max_attempts
from junctionbox.engine.delivery_commit import _next_action_key


def job(trigger: Trigger, correlation: str | None = None) -> DeliveryJob:
    return DeliveryJob(
        org_id=1,
        integration_id="int_1",
        message_id="msg_a",
        event=EventRef("default", 0, 7),
        event_id="e1",
        event_type="t",
        trigger=trigger,
        correlation_id=correlation,
    )


def test_a_replay_chain_keeps_its_own_namespace() -> None:
    assert _next_action_key(job(Trigger.EVENT), "msg_b") == "dlv:msg_b"
    assert _next_action_key(job(Trigger.REPLAY, "rpl_9"), "msg_b") == "replay:rpl_9:msg_b"


def test_a_delivery_job_has_one_spare_claim_beyond_its_retries() -> None:
    assert job_max_attempts(3) == 5  # first send + 3 retries + 1 spare for a crash
