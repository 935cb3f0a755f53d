"""What a batch of recorded attempts adds to the rollups (in the commit) and to the
process's metrics (after it). Kept out of the committer so that it stays about jobs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.rollups import AttemptFacts, aggregate
from junctionbox.engine.delivery_attempt import CIRCUIT_OPEN, AttemptOutcome
from junctionbox.observability.metrics import Metrics
from junctionbox.services.breakers import Breakers
from junctionbox.store.queries.rollups import add_rollups

# Rows of attempts that sent nothing on purpose: errors, but not requests.
_NOT_REQUESTS = frozenset({CIRCUIT_OPEN})


async def add_to_rollups(conn: AsyncConnection, outcomes: Sequence[AttemptOutcome]) -> None:
    await add_rollups(conn, aggregate(rollup_facts(outcomes)))


def rollup_facts(outcomes: Sequence[AttemptOutcome]) -> list[AttemptFacts]:
    """What each outcome's log row adds to the rollups (rows of no integration add none)."""
    return [
        AttemptFacts(
            row.org_id,
            row.integration_id,
            row.created_at,
            row.status,
            row.error_category,
            row.response_time_ms,
        )
        for o in outcomes
        if (row := o.row) is not None and row.integration_id is not None
    ]


def record_metrics(
    metrics: Metrics, breakers: Breakers, outcomes: Sequence[AttemptOutcome]
) -> None:
    circuits: dict[str, tuple[int, str]] = {}  # the gauge's last value per adapter is enough
    for o in outcomes:
        row = o.row
        if row is None or row.integration_id is None:
            continue
        adapter = row.integration_id
        if row.error_category in _NOT_REQUESTS:
            metrics.integration_error(adapter, row.error_category or "")
        else:
            seconds = row.response_time_ms / 1000 if row.response_time_ms is not None else None
            metrics.integration_request(
                adapter,
                success=row.status == "SUCCESS",
                seconds=seconds,
                error_type=row.error_category,
                retry=row.status == "RETRYING",
            )
        ready = o.prepared.ready
        if ready is not None:
            circuits[adapter] = ready.breaker_key
    for adapter, key in circuits.items():
        metrics.circuit_state(adapter, int(breakers.state(key).state))
