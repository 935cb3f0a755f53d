"""Wake-ups for idle workers: in-process flags (other nodes' jobs arrive by PostgreSQL LISTEN,
see :mod:`junctionbox.store.pg_listener`).

A wake-up is a hint, never a promise: a worker that wakes may find nothing (another took the
job), and one that misses a hint finds the job at its next poll. That is why waiting always
has a timeout, and why a lost LISTEN connection only costs latency, not jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

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
