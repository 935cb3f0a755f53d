"""Lookup tables: CRUD, CSV/Excel import and export, cached resolution for SIMPLE mappings."""

from __future__ import annotations

from junctionbox.store.database import Database


class LookupService:
    def __init__(self, db: Database) -> None:
        pass
