"""The services one process uses, built once by the composition root (``runtime.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from junctionbox.services.api_keys import ApiKeyService
from junctionbox.services.audit import AuditService
from junctionbox.services.auth import AuthService
from junctionbox.services.tenancy import TenancyService
from junctionbox.services.users import UserService
from junctionbox.settings import Settings
from junctionbox.store.database import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    tenancy: TenancyService
    users: UserService
    api_keys: ApiKeyService
    auth: AuthService
    audit: AuditService
    started_monotonic: float = field(default_factory=time.monotonic)
