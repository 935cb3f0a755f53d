"""A scriptable HTTP/1.1 server on 127.0.0.1 for testing the outbound client's wire rules.

Each request is parsed (httptools) and answered by a script: a list of steps, each bytes
to write, a float to sleep, or :data:`CLOSE` / :data:`RESET`. The server records every
connection and request, so tests can see reuse, retries and what went on the wire.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

CLOSE = "close"
RESET = "reset"
Step = bytes | float | str
Script = Callable[["SeenRequest"], list[Step]]


@dataclass
class SeenRequest:
    connection: int  # 0-based index of the connection it came on
    number: int  # 0-based index of the request on its connection
    method: str = ""
    path: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def response(
    status: int = 200,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    length: bool = True,
    version: str = "1.1",
) -> bytes:
    lines = [f"HTTP/{version} {status} X"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class _Parsed:
    def __init__(self, seen: SeenRequest) -> None:
        self.seen = seen
        self.done = False
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.seen.path += url.decode()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.seen.headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.seen.body += body

    def on_message_complete(self) -> None:
        self.seen.method = self.parser.get_method().decode()
        self.done = True


class RawServer:
    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.connections = 0
        self.open_connections = 0
        self.max_open = 0
        self.requests: list[SeenRequest] = []
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def allowlist_entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self.open_connections += 1
        self.max_open = max(self.max_open, self.open_connections)
        self._writers.add(writer)
        try:
            await self._exchanges(index, reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _exchanges(
        self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        number = 0
        while True:
            seen = SeenRequest(index, number)
            parsed = _Parsed(seen)
            while not parsed.done:
                data = await reader.read(65536)
                if not data:
                    self.closed_by_client += 1
                    return
                parsed.parser.feed_data(data)
            self.requests.append(seen)
            number += 1
            for step in self.script(seen):
                if isinstance(step, float):
                    await asyncio.sleep(step)
                elif step == CLOSE:
                    return
                elif step == RESET:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                else:
                    assert isinstance(step, bytes)
                    writer.write(step)
                    await writer.drain()
