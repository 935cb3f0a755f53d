"""The dead-letter queue: entries of failed deliveries, automatic and manual retries."""

from __future__ import annotations

from junctionbox.queue.store import JobQueue
from junctionbox.store.database import Database


class DlqService:
    def __init__(self, db: Database, queue: JobQueue) -> None:
        pass
