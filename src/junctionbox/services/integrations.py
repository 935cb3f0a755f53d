"""Outbound integrations: CRUD, versions, enable/disable, signing secrets, test calls."""

from __future__ import annotations

from junctionbox.domain.secretbox import SecretBox
from junctionbox.settings import Settings
from junctionbox.store.database import Database


class IntegrationService:
    def __init__(self, db: Database, secretbox: SecretBox, settings: Settings) -> None:
        pass
