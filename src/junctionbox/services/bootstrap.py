"""Start-up tasks that make a fresh installation usable."""

from __future__ import annotations

import logging

from junctionbox.domain.identity import Role
from junctionbox.errors import ConflictError
from junctionbox.services.users import UserService
from junctionbox.store.database import Database
from junctionbox.store.queries import users

log = logging.getLogger(__name__)


async def ensure_first_admin(
    db: Database, user_service: UserService, email: str | None, password: str | None
) -> bool:
    """Create the configured ADMIN when no user exists yet; True when one was created."""
    if not email or not password:
        return False
    async with db.read() as conn:
        if await users.count(conn) > 0:
            return False
    try:
        await user_service.create(
            None, email=email, password=password, role=Role.ADMIN, org_id=None
        )
    except ConflictError:
        return False  # another node created it first
    log.info("first admin user created", extra={"email": email})
    return True
