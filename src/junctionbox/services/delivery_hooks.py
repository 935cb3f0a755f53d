"""What other services learn when a delivery job ends for good.

The delivery worker calls every listener inside the transaction that records the final
attempt and completes the job, so their writes (a DLQ entry, a scheduled occurrence's status,
the next occurrence of a RECURRING schedule) commit or roll back with it.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import DeliveryJob, DeliveryOutcome, FinalState


class DeliveryListener(Protocol):
    def concerns(self, job: DeliveryJob, state: FinalState) -> bool:
        """Whether :meth:`on_final` would do anything for a job that ended so: a batch of
        which no listener is concerned may be committed without calling them (on
        PostgreSQL in one statement; see ``store.queries.commit_on_postgres``)."""
        ...

    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None: ...
