"""A response's whole body taken at once: only when all of it has arrived, and then the
same bytes that reading chunk by chunk gives, the response left at its end."""

from __future__ import annotations

import asyncio
from typing import Any

from junctionbox.connectors.http1 import Response

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"


class _Connection:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


def _response() -> Response:
    conn: Any = _Connection()
    return Response(conn, head_only=False)


async def test_the_whole_body_is_taken_once_it_has_all_arrived() -> None:
    response = _response()
    response.feed(HEAD + b"01234")
    assert response.take_whole() is None  # half of it: read it as it comes
    response.feed(b"56789")
    assert response.take_whole() == b"0123456789"
    assert response.at_eof
    assert await response.next_chunk() == b""


async def test_taking_the_body_gives_what_the_chunks_give() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    taken, read = _response(), _response()
    taken.feed(chunked)
    read.feed(chunked)
    parts = []
    while part := await read.next_chunk():
        parts.append(part)
    assert taken.take_whole() == b"".join(parts) == b"abcde"


async def test_a_failed_response_is_not_taken() -> None:
    response = _response()
    response.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01")
    response.peer_closed(None)
    assert response.take_whole() is None
