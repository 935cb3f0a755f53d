"""Wake-ups for idle workers: in-process flags, and PostgreSQL LISTEN for other nodes' jobs.

A wake-up is a hint, never a promise: a worker that wakes may find nothing (another took the
job), and one that misses a hint finds the job at its next poll. That is why waiting always
has a timeout, and why a lost LISTEN connection only costs latency, not jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "jb_jobs"
ANY_QUEUE = None


class Wakeups:
    """Level-triggered wake-up flags per queue (and one for any queue).

    A flag set while nobody waits stays set, so the next waiter returns at once: a job
    enqueued between a worker's empty claim and its wait is not slept through.
    """

    def __init__(self) -> None:
        self._events: dict[str | None, asyncio.Event] = {}

    def signal(self, queues: Iterable[str]) -> None:
        for queue in queues:
            self._event(queue).set()
        self._event(ANY_QUEUE).set()

    def signal_all(self) -> None:
        self._event(ANY_QUEUE).set()
        for event in self._events.values():
            event.set()

    async def wait(self, queue: str | None, seconds: float) -> bool:
        """True when woken, False after ``seconds``."""
        event = self._event(queue)
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return False
        event.clear()
        return True

    def _event(self, queue: str | None) -> asyncio.Event:
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = asyncio.Event()
        return event


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg expects, from our SQLAlchemy URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgListener:
    """One dedicated asyncpg connection that LISTENs on :data:`CHANNEL` and reconnects.

    It is not taken from the pool: a LISTEN lives as long as its connection, and a pooled
    connection would be reset and handed to others.
    """

    def __init__(
        self,
        dsn: str,
        on_notify: Callable[[str], None],
        on_reconnected: Callable[[], None],
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._on_reconnected = on_reconnected
        self._listened_before = False
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    def ensure_started(self) -> None:
        """Start the listening task if it is not running; do not wait for it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="jb-job-listener")

    async def start(self, wait_seconds: float = 5.0) -> bool:
        """Start listening (idempotent); True once the LISTEN is in place."""
        self.ensure_started()
        try:
            async with asyncio.timeout(wait_seconds):
                await self._connected.wait()
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
        while True:
            try:
                await self._listen_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("job wake-up listener lost its connection: %s", exc)
            self._connected.clear()
            await asyncio.sleep(self._retry_seconds)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=5)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._received)
            if self._listened_before:
                # Notifications sent while we were away are gone: wake everyone once.
                self._on_reconnected()
            self._listened_before = True
            self._connected.set()
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
