"""What other services learn when a delivery job ends for good.

The delivery worker calls every listener inside the transaction that records the final
attempt and completes the job, so their writes (a DLQ entry, a scheduled occurrence's status,
the next occurrence of a RECURRING schedule) commit or roll back with it.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import DeliveryJob, DeliveryOutcome


class DeliveryListener(Protocol):
    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None: ...
