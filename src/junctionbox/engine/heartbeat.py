"""Every process records a heartbeat row (roles, version, busy slots) every few seconds,
and marks it stopped on a clean stop: the health check's "workers alive" and the
worker-stopped alert read these rows, so they see every node of a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from junctionbox import __version__
from junctionbox.store.database import Database
from junctionbox.store.queries import observability as q
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)


class NodeHeartbeat:
    def __init__(
        self,
        db: Database,
        *,
        node_id: str,
        roles: Sequence[str],
        interval: float,
        details: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.node_id = node_id
        self.roles = ",".join(roles)
        self.interval = interval
        self.details = details
        self.clock = clock
        self.started_at = clock()

    async def beat(self) -> None:
        async with self.db.write() as conn:
            await q.beat(
                conn,
                node_id=self.node_id,
                roles=self.roles,
                version=__version__,
                started_at=self.started_at,
                now=self.clock(),
                details=self.details(),
            )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.beat()
            except Exception:  # the database may be away for a while: keep beating
                log.warning("heartbeat of node %s failed", self.node_id, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        try:
            async with self.db.write() as conn:
                await q.stopped(conn, self.node_id, self.clock())
        except Exception:
            log.warning("could not mark node %s stopped", self.node_id, exc_info=True)
