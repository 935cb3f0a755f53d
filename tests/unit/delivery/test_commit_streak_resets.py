"""Which deliveries the SQLite commit resets the failure streak of on the driver's thread:
those whose integration has no other final outcome in the batch (the others keep the
job-by-job order of ``AttemptCommitter._final``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from junctionbox.engine.delivery_attempt import Disposition
from junctionbox.engine.delivery_commit import _only_delivered


def outcome(job_id: str, disposition: Disposition, integration: str | None) -> Any:
    stored = SimpleNamespace(id=integration) if integration is not None else None
    return SimpleNamespace(
        job_id=job_id, disposition=disposition, prepared=SimpleNamespace(stored=stored)
    )


def test_only_integrations_that_only_delivered_are_reset_up_front() -> None:
    outcomes = [
        outcome("j1", Disposition.DELIVERED, "int_a"),
        outcome("j2", Disposition.DELIVERED, "int_a"),
        outcome("j3", Disposition.DELIVERED, "int_b"),
        outcome("j4", Disposition.DEAD_LETTER, "int_b"),  # a final failure: job order counts
        outcome("j5", Disposition.DELIVERED, "int_c"),
        outcome("j6", Disposition.SKIP, "int_c"),  # skipped: no streak change
        outcome("j7", Disposition.RETRY, "int_c"),  # not final
        outcome("j8", Disposition.DELIVERED, None),
        outcome("j9", Disposition.DISABLE, "int_d"),
    ]
    assert _only_delivered(outcomes) == {"j1": "int_a", "j2": "int_a", "j5": "int_c"}
