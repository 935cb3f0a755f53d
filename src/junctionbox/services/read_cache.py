"""Short-lived caches of values read from the database, dropped on local writes.

Used on the hot request path (credentials, tenants, schemas, partition counts) so that a
busy producer does not cost a read per request. Writes made on this node drop the affected
entries at once; other nodes see a change within the cache's TTL (a few seconds, documented
where each cache is used).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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

    ``load`` reads a missing key once however many callers ask at the same time: when an
    entry expires under load, every request in flight would otherwise read it again, and
    on SQLite those reads queue behind each other (measured: 100-250 ms stalls of every
    publish at 1000 requests/s, each time a credential or tenant entry expired).
    """

    def __init__(
        self, ttl: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.generation = 0
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}

    def get(self, key: K) -> tuple[V] | None:
        """``(value,)`` while fresh (the value may be None), else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            self._entries.pop(key, None)
            return None
        return (entry[1],)

    async def load(
        self, key: K, loader: Callable[[], Awaitable[V]], keep: Callable[[V], bool] | None = None
    ) -> V:
        """The fresh value of ``key``, else what ``loader`` reads (kept when ``keep`` says
        so). Concurrent callers share one read; a caller that gives up (is cancelled) does
        not cancel it for the others."""
        hit = self.get(key)
        if hit is not None:
            return hit[0]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._read(key, loader, keep, self.generation))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        return await asyncio.shield(task)

    async def _read(
        self,
        key: K,
        loader: Callable[[], Awaitable[V]],
        keep: Callable[[V], bool] | None,
        generation: int,
    ) -> V:
        try:
            value = await loader()
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]
        if keep is None or keep(value):
            self.put(key, value, generation)
        return value

    def put(self, key: K, value: V, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()  # crude but bounded; entries live seconds anyway
        self._entries[key] = (self.clock() + self.ttl, value)

    def invalidate(self, matches: Callable[[K, V], bool] | None = None) -> None:
        """Drop every entry (or those ``matches``) and refuse values read before now; a
        caller after this does not join a read started before it."""
        self.generation += 1
        self._loading.clear()
        if matches is None:
            self._entries.clear()
            return
        for key in [k for k, (_, v) in self._entries.items() if matches(k, v)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared read's failure as seen: its callers may all have given up."""
    if not task.cancelled():
        task.exception()


@dataclass
class CachedKey:
    principal: Principal
    last_used_at: datetime | None


@dataclass
class CredentialCaches:
    tokens: ReadCache[str, tuple[TokenClaims, Principal]]  # by the token itself
    keys: ReadCache[str, CachedKey | None]  # by key hash (None: not kept)

    def forget_api_key(self, key_id: str) -> None:
        self.keys.invalidate(lambda _, cached: cached is not None and cached.principal.id == key_id)


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
