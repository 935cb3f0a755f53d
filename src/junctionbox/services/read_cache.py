"""Short-lived caches of values read from the database, dropped on local writes.

Used on the hot request path (credentials, tenants, schemas, partition counts) so that a
busy producer does not cost a read per request. Writes made on this node drop the affected
entries at once; other nodes see a change within the cache's TTL (a few seconds, documented
where each cache is used).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.sql.dml import Delete, Update

from junctionbox.domain.identity import Principal
from junctionbox.services.credentials import TokenClaims
from junctionbox.store.database import Database

# How long another node may go on accepting a credential revoked (or a user deactivated)
# elsewhere. Documented in docs/api.md.
CREDENTIAL_TTL = 5.0

K = TypeVar("K")
V = TypeVar("V")


class ReadCache(Generic[K, V]):
    """Values read from the database, kept for ``ttl`` seconds, dropped on local writes.

    A reader takes ``generation`` before it reads and hands it back to ``put``: if the
    cache was invalidated meanwhile (a write committed while the read was under way), the
    possibly stale value is not kept.
    """

    def __init__(
        self, ttl: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.generation = 0
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[V] | None:
        """``(value,)`` while fresh (the value may be None), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return (entry[1],)

    def put(self, key: K, value: V, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude but bounded; entries live seconds anyway
        self._entries[key] = (self.clock() + self.ttl, value)

    def invalidate(self, matches: Callable[[K, V], bool] | None = None) -> None:
        """Drop every entry (or those ``matches``) and refuse values read before now."""
        self.generation += 1
        if matches is None:
            self._entries.clear()
            return
        for key in [k for k, (_, v) in self._entries.items() if matches(k, v)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class CachedKey:
    principal: Principal
    last_used_at: datetime | None


@dataclass
class CredentialCaches:
    tokens: ReadCache[str, tuple[TokenClaims, Principal]]  # by the token itself
    keys: ReadCache[str, CachedKey]  # by key hash

    def forget_api_key(self, key_id: str) -> None:
        self.keys.invalidate(lambda _, cached: cached.principal.id == key_id)


_USERS_CHANGED = "jb_users_changed"


def credential_caches(db: Database) -> CredentialCaches:
    """New credential caches for the services of one process using ``db`` (built once by
    the composition root and shared by the auth and API key services)."""
    caches = CredentialCaches(ReadCache(CREDENTIAL_TTL), ReadCache(CREDENTIAL_TTL))
    _drop_tokens_on_user_changes(db, caches.tokens)
    return caches


def _drop_tokens_on_user_changes(db: Database, cached: ReadCache[str, Any]) -> None:
    """Any UPDATE or DELETE of ``users`` through ``db`` drops the cached tokens: when it is
    executed, and again when its connection returns to the pool (after the commit), so that
    a request that read the user before the commit does not keep what it read."""

    def executed(conn: Any, statement: Any, *_: Any) -> None:
        table = statement.table if isinstance(statement, Update | Delete) else None
        if getattr(table, "name", None) == "users":
            conn.info[_USERS_CHANGED] = True
            cached.invalidate()

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None and record.info.pop(_USERS_CHANGED, False):
            cached.invalidate()

    event.listen(db.engine.sync_engine, "after_execute", executed)
    event.listen(db.engine.sync_engine, "checkin", checked_in)
