"""PostgreSQL LISTEN on a dedicated connection that reconnects by itself.

The connection is not taken from the pool: a LISTEN lives as long as its connection, and a
pooled connection would be reset and handed to others. Notifications sent while the
connection is down are lost, so ``on_reconnected`` tells the owner to catch up by other means
(the job queue wakes every worker, live subscriptions re-read the log). ``ignore_from``
leaves out the notifications of some senders (by server process id): an owner told of its
own process's changes in-process need not hear them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg expects, from our SQLAlchemy URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgListener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_reconnected: Callable[[], None],
        *,
        ignore_from: Callable[[int], bool] | None = None,
        first_retry: float = 0.5,
        max_retry: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._ignore_from = ignore_from
        self._channel = channel
        self._on_notify = on_notify
        self._on_reconnected = on_reconnected
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._listened_before = False
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def ensure_started(self) -> None:
        """Start the listening task if it is not running; do not wait for it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"jb-listen-{self._channel}")

    async def start(self, wait_seconds: float = 5.0) -> bool:
        """Start listening (idempotent); True once the LISTEN is in place."""
        self.ensure_started()
        try:
            async with asyncio.timeout(wait_seconds):
                await self.connected.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        retry = self._first_retry
        while True:
            try:
                await self._listen_once()
                retry = self._first_retry  # it worked for a while: start the backoff afresh
            except Exception as exc:  # any failure: log it and reconnect, never stop listening
                log.warning("LISTEN %s: connection lost: %s", self._channel, exc)
            self.connected.clear()
            await asyncio.sleep(retry)
            retry = min(retry * 2, self._max_retry)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=5)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, self._received)
            if self._listened_before:
                self._on_reconnected()
            self._listened_before = True
            self.connected.set()
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _received(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if self._ignore_from is not None and self._ignore_from(pid):
            return  # the sender says so in-process, at the moment that matters to it
        self._on_notify(payload)
