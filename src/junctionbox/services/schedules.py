"""DELAYED and RECURRING deliveries: occurrences, listing and cancellation."""

from __future__ import annotations

from junctionbox.queue.store import JobQueue
from junctionbox.store.database import Database


class ScheduleService:
    def __init__(self, db: Database, queue: JobQueue) -> None:
        pass
