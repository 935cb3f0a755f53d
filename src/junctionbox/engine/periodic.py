"""The loop of the housekeeping roles: a round of work now and then every so often."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def run_every(
    stop: asyncio.Event,
    seconds: float,
    work: Callable[[], Awaitable[object]],
    failure: str,
    log: logging.Logger,
) -> None:
    """Run ``work`` now, then ``seconds`` after each round ends, until ``stop`` is set. A
    round that fails is logged on ``log`` (``failure``) and the next one tries again: the
    store may be away for a while, and one failure must not end the loop."""
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception(failure)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
