"""Delivery logs and execution traces: list, filter, detail, export."""

from __future__ import annotations

from junctionbox.store.database import Database


class DeliveryLogService:
    def __init__(self, db: Database) -> None:
        pass
