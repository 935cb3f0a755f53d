"""The HTTP/1.1 client's end-of-step request writes: same bytes, same order, one step
later at most; a transport closed meanwhile is not written to."""

from __future__ import annotations

import asyncio
from typing import Any

from junctionbox.connectors.http1 import _StepWrites


class _Transport:
    def __init__(self, log: list[tuple[str, bytes]], name: str) -> None:
        self.log, self.name, self.closing = log, name, False

    def write(self, data: bytes) -> None:
        self.log.append((self.name, data))

    def is_closing(self) -> bool:
        return self.closing


async def test_writes_of_a_step_go_out_at_its_end_in_order() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = _Transport(log, "a"), _Transport(log, "b")
    writes = _StepWrites(asyncio.get_running_loop())
    transport: Any = a
    writes.write(transport, b"1")
    transport = b
    writes.write(transport, b"2")
    writes.write(transport, b"3")
    assert log == []  # nothing before the step ends
    await asyncio.sleep(0)
    assert log == [("a", b"1"), ("b", b"2"), ("b", b"3")]
    writes.write(transport, b"4")  # a later step schedules its own flush
    await asyncio.sleep(0)
    assert log[-1] == ("b", b"4")


async def test_a_transport_closed_before_the_end_of_the_step_is_not_written() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = _Transport(log, "a"), _Transport(log, "b")
    writes = _StepWrites(asyncio.get_running_loop())
    first: Any = a
    second: Any = b
    writes.write(first, b"1")
    writes.write(second, b"2")
    a.closing = True
    await asyncio.sleep(0)
    assert log == [("b", b"2")]
