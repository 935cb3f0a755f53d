"""A lean HTTP/1.1 client on asyncio Protocols and httptools, with a keep-alive pool.

It knows nothing about URLs, DNS or the SSRF guard: :mod:`junctionbox.connectors.http_client`
vets the target and hands over an :data:`Origin`, the address to connect to and a ready
request head. What this module guarantees:

* **Framing.** Responses are parsed by httptools (llhttp, uvicorn's parser): chunked and
  ``Content-Length`` bodies, and bodies read to EOF when neither is given (the connection is
  then closed). A response with both ``Content-Length`` and ``Transfer-Encoding``, or with
  differing lengths, is refused as invalid. HEAD, 1xx, 204 and 304 responses have no body.
  The head is limited in size and header count.
* **Keep-alive.** A connection goes back to the pool only after its response was read to the
  end and neither side asked to close (``Connection: close``, HTTP/1.0 without keep-alive).
  A connection the peer closes while idle leaves the pool at once.
* **Retry rule.** A request is resent once, on a fresh connection, only when it went out on
  a reused idle connection and the peer closed that connection before sending any byte of
  a response, and only if the method is idempotent (RFC 9110 9.2.2): a POST that may have
  been received is never resent. A connection already seen closed before the request was
  written is simply not used (nothing was sent).
* **Limits.** At most ``limit`` connections in use in total and ``limit_per_host`` per
  origin; a request waits for a free slot (its caller's timeout bounds the wait).

Errors: :class:`InvalidResponseError` (not valid HTTP), :class:`PeerClosedError` (the peer
closed or reset before a complete response; ``response_started`` says whether any response
byte came), :class:`BodyDecodeError`; connection failures raise the ``OSError`` /
``ssl.SSLError`` from the loop unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, cast

import httptools

__all__ = [
    "BodyDecodeError",
    "BodyDecoder",
    "Connection",
    "Deadline",
    "Http1Client",
    "InvalidResponseError",
    "Origin",
    "PeerClosedError",
    "Response",
    "body_decoder",
    "request_head",
]

Origin = tuple[str, str, int]  # (scheme, host, port): the pool's key
Resolve = Callable[[str, int], Awaitable[str]]  # (host, port) -> the vetted address

MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 256
KEEPALIVE_SECONDS: Final = 15.0
_HIGH_WATER: Final = 256 * 1024  # buffered body bytes before reading from the socket pauses
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class InvalidResponseError(Exception):
    """The peer's answer is not valid HTTP/1.1 (or its framing is ambiguous)."""


class PeerClosedError(ConnectionResetError):
    """The peer closed or reset the connection before the response was complete."""

    def __init__(
        self, message: str, *, response_started: bool, request_written: bool = True
    ) -> None:
        super().__init__(message)
        self.response_started = response_started
        self.request_written = request_written


class BodyDecodeError(Exception):
    """A compressed body could not be decoded."""


class Deadline:
    """``with Deadline(seconds):`` turns a cancellation by its timer into ``TimeoutError``.

    The semantics of ``asyncio.timeout`` (a cancellation from elsewhere stays a
    cancellation) as a plain context manager with one timer: about half its CPU, which
    counts on a path taken for every outbound request.
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "Deadline is used inside a task"
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = loop.call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._handle.cancel()
        if not self._expired:
            return
        # As asyncio.timeout: withdraw our cancellation; one from elsewhere still stands.
        if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from exc


def request_head(
    method: str,
    target: str,
    host: str,
    headers: Sequence[tuple[str, str]],
    body_length: int,
    defaults: Sequence[tuple[str, str, str]] = (),
) -> bytes:
    """The request line and headers; refuses CR/LF smuggled into a header.

    The caller's ``Content-Length``, ``Transfer-Encoding`` and ``Connection`` are replaced:
    the framing is always the body we send. Each of ``defaults`` (the name in lower case,
    the name as sent, the value) is added after the caller's headers unless the caller sent
    that header (seen in the same pass over them).
    """
    lines = [f"{method} {target} HTTP/1.1"]
    has_host = False
    present: set[str] = set()
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING:
            continue
        if lower == "host":
            has_host = True
        elif lower in _DEFAULTED:
            present.add(lower)
        lines.append(f"{name}: {value}")
    for key, name, value in defaults:
        if key not in present:
            lines.append(f"{name}: {value}")
    if not has_host:
        lines.insert(1, f"Host: {host}")
    if body_length or method not in _NO_BODY_METHODS:
        lines.append(f"Content-Length: {body_length}")
    lines.append("\r\n")
    text = "\r\n".join(lines)
    # One count instead of a check per header: every line break must be one we put there.
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("newline or carriage return in a request header")
    return text.encode("utf-8")


_FRAMING: Final = frozenset({"content-length", "transfer-encoding", "connection"})
# The headers a caller's request may get by default (``request_head``'s ``defaults``).
_DEFAULTED: Final = frozenset({"accept", "accept-encoding", "user-agent", "content-type"})


def body_decoder(encoding: str | None) -> BodyDecoder | None:
    """A decoder for a ``Content-Encoding`` we undo (gzip, deflate), else None."""
    if not encoding:
        return None
    coding = encoding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        return BodyDecoder(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return BodyDecoder(zlib.MAX_WBITS, raw_fallback=True)
    return None


class BodyDecoder:
    """Undoes one content coding incrementally."""

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback
        self._started = False

    def decode(self, data: bytes, limit: int = 0) -> bytes:
        """Decode ``data``; with ``limit``, stop after that many output bytes."""
        try:
            out = self._zlib.decompress(data, limit)
        except zlib.error:
            if self._started or not self._raw_fallback:
                raise BodyDecodeError("response body could not be decoded") from None
            # "deflate" is often sent raw, without the zlib wrapper the RFC asks for.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_fallback = False
            return self.decode(data, limit)
        self._started = True
        return out

    def flush(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error:
            raise BodyDecodeError("response body could not be decoded") from None


class Response:
    """One response: its head once received, its body read chunk by chunk.

    It is also the httptools callback object for its own message.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_complete",
        "_conn",
        "_error",
        "_framed",
        "_head",
        "_head_bytes",
        "_head_only",
        "_header_bytes",
        "_parser",
        "_released",
        "_started",
        "_to_eof",
        "_waiter",
        "content_encoding",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: Connection, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = False
        self.content_encoding: str | None = None
        self._framed = False  # Content-Length or chunked: the body does not run to EOF
        self._conn = conn
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._head: asyncio.Future[None] = conn.loop.create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = False
        self._head_bytes = 0  # raw bytes received while the head is incomplete
        self._header_bytes = 0  # bytes of header names and values parsed
        self._to_eof = False
        self._released = False

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.status:
            # A second message after ours: we never pipeline, so the peer is confused.
            raise InvalidResponseError("unexpected data after the response")
        self.headers = []
        self._framed = False
        self.content_encoding = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise InvalidResponseError("too many response headers")
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEAD_BYTES:
            raise InvalidResponseError("response head too large")
        text = value.decode("utf-8", "surrogateescape")
        self.headers.append((name.decode("utf-8", "surrogateescape"), text))
        if len(name) in _NOTED_LENGTHS:  # a cheap pre-filter: this runs for every header
            self._note(name.lower(), text)

    def _note(self, name: bytes, value: str) -> None:
        if name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            # RFC 9112 6.3: only chunked as the final coding delimits the body.
            self._framed = value.rstrip().lower().endswith("chunked")
        elif name == b"content-encoding":
            self.content_encoding = value

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # informational: llhttp completes it; the real response follows
        self.status = status
        if not (self._head_only or status in (101, 204, 304)):
            self._to_eof = not self._framed
        self.keep_alive = bool(self._parser.should_keep_alive()) and status != 101
        if not self._head.done():
            self._head.set_result(None)
        if self._head_only or status == 101:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            # Bytes after a HEAD response's head (or a 101): nothing we asked for.
            self.keep_alive = False
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0:
            return  # the end of a 1xx message
        self._finish()

    # -- connection events ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if not self._started:
            self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc
            self.fail(cause if isinstance(cause, InvalidResponseError) else _invalid(exc))
        except httptools.HttpParserError as exc:
            self.fail(_invalid(exc))
        except httptools.HttpParserUpgrade:
            self.keep_alive = False
        if self.status == 0:
            # Still no complete head: bound what the parser may be holding for it.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.fail(InvalidResponseError("response head too large"))

    def peer_closed(self, exc: BaseException | None) -> None:
        if self._complete or self._error is not None:
            return
        if self._to_eof and self._head.done() and exc is None:
            self.keep_alive = False
            self._finish()
            return
        error = PeerClosedError(
            "response body cut short" if self._head.done() else "server disconnected",
            response_started=self._started,
        )
        if exc is not None:
            error.__cause__ = exc
        self.fail(error)

    def fail(self, error: BaseException) -> None:
        if self._complete:
            # The response is whole and stays readable; only the connection is spoilt.
            self.keep_alive = False
            self._conn.close()
            return
        if self._error is not None:
            return
        self._error = error
        self.keep_alive = False
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved here: the waiter may be gone (cancelled)
        self._wake()
        self._conn.close()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side ---------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The body was received to its end (it may still be buffered)."""
        return self._complete

    @property
    def ready(self) -> bool:
        """:meth:`next_chunk` would return (or raise) without waiting."""
        return bool(self._chunks) or self._complete or self._error is not None

    @property
    def at_eof(self) -> bool:
        """The body was received to its end and nothing is left to read."""
        return self._complete and not self._chunks

    def take_whole(self) -> bytes | None:
        """The whole body if all of it has arrived (taken: the response is then at its
        end), else None; what :meth:`next_chunk` would give, without a coroutine."""
        if not self._complete or self._error is not None or self._buffered > _HIGH_WATER:
            return None
        chunks = self._chunks
        body = b"" if not chunks else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return body

    async def next_chunk(self) -> bytes:
        """The next piece of the body, ``b""`` at its end; raises the connection's error."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._buffered > _HIGH_WATER:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            if self._buffered <= _HIGH_WATER:
                self._conn.resume_reading()
            return chunk
        chunk = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return chunk

    def release(self) -> None:
        """Give the connection back: to the pool if the exchange ended cleanly, else close."""
        if self._released:
            return
        self._released = True
        self._conn.finished(self, reusable=self.at_eof and self.keep_alive)
        # The parser holds our callbacks and we hold it: a reference cycle per response,
        # left to the garbage collector (measured under the proxy benchmark: ~12 objects
        # per call, 7-9 us per call in collections). Its connection no longer feeds us.
        del self._parser


_NOTED_LENGTHS: Final = frozenset(
    {len("content-length"), len("transfer-encoding"), len("content-encoding")}
)


def _invalid(exc: Exception) -> InvalidResponseError:
    error = InvalidResponseError("invalid HTTP response")
    error.__cause__ = exc
    return error


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to an origin; carries one exchange at a time."""

    def __init__(self, pool: _Pool, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False

    # -- protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.close()  # unsolicited bytes on an idle connection: it cannot be trusted
            return
        response.feed(data)

    def eof_received(self) -> bool:
        self._lost(None)
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(
                PeerClosedError("server disconnected", response_started=False)
                if exc is None
                else exc
            )
            drain.exception()

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _lost(self, exc: BaseException | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            response.peer_closed(exc)
        else:
            self.pool.forget(self)

    # -- the exchange --------------------------------------------------------------------

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def send(self, head: bytes, body: bytes, head_only: bool) -> Response:
        """Write the request and wait for the response head."""
        transport = self.transport
        if transport is None or not self.usable():
            # The peer's close was seen first: nothing is written, the request may go again.
            self.close()
            raise PeerClosedError(
                "server disconnected", response_started=False, request_written=False
            )
        response = Response(self, head_only)
        self.response = response
        if len(body) < 65536:
            # One write, usually one segment, at the end of this event-loop step with the
            # other requests of the step (see _StepWrites).
            self.pool.writes(self.loop).write(transport, head + body)
        else:
            transport.write(head)
            transport.write(body)
        drain = self._drain
        if drain is not None and not drain.done():
            # A peer may answer (413, say) before it has read the whole body.
            await asyncio.wait((drain, response._head), return_when=asyncio.FIRST_COMPLETED)
        await response._head
        return response

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def finished(self, response: Response, *, reusable: bool) -> None:
        if self.response is response:
            self.response = None
        unsent = self._drain is not None and not self._drain.done()  # answered mid-upload
        if not reusable or unsent or not self.usable():
            self.close()
        self.pool.release(self, reusable=not self.closed)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _StepWrites:
    """Small requests written at the end of the event-loop step that sent them, together.

    A write to a peer asleep in its event loop wakes it, and on loopback (and in a VM) the
    wake-up is paid by the writer, inside the system call. Written back to back, the
    requests of one step wake a peer once instead of once each. The request goes out
    after the other callbacks ready in the same step, before the loop waits for I/O.
    """

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[asyncio.Transport, bytes]] = []
        self._scheduled = False

    def write(self, transport: asyncio.Transport, data: bytes) -> None:
        self._pending.append((transport, data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for transport, data in pending:
            if not transport.is_closing():  # closed meanwhile: its response fails as before
                transport.write(data)


class _Pool:
    """Idle connections per origin and the count of connections in use."""

    def __init__(self, limit: int, limit_per_host: int, keepalive: float) -> None:
        self._limit = limit
        self._per_host = limit_per_host
        self._keepalive = keepalive
        self._idle: dict[Origin, list[Connection]] = {}
        self._in_use = 0
        self._in_use_per_host: dict[Origin, int] = {}
        self._waiters: collections.deque[tuple[Origin, asyncio.Future[None]]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._writes: _StepWrites | None = None

    def writes(self, loop: asyncio.AbstractEventLoop) -> _StepWrites:
        found = self._writes
        if found is None or found._loop is not loop:
            found = self._writes = _StepWrites(loop)
        return found

    def _has_slot(self, origin: Origin) -> bool:
        if self._in_use >= self._limit:
            return False
        return not self._per_host or self._in_use_per_host.get(origin, 0) < self._per_host

    def try_reserve(self, origin: Origin) -> bool:
        """Count a connection to ``origin`` as in use if a slot is free now."""
        if not self._has_slot(origin):
            return False
        self._in_use += 1
        self._in_use_per_host[origin] = self._in_use_per_host.get(origin, 0) + 1
        return True

    async def reserve(self, origin: Origin) -> None:
        """Wait until a connection to ``origin`` may be used, and count it as in use."""
        if not self._has_slot(origin):
            loop = asyncio.get_running_loop()
            while True:
                waiter: asyncio.Future[None] = loop.create_future()
                entry = (origin, waiter)
                self._waiters.append(entry)
                try:
                    await waiter
                except BaseException:
                    if entry in self._waiters:
                        self._waiters.remove(entry)
                    elif waiter.done() and not waiter.cancelled():
                        self._wake_next()  # pass on the wake-up this caller will not use
                    raise
                if self._has_slot(origin):
                    break
        self._in_use += 1
        self._in_use_per_host[origin] = self._in_use_per_host.get(origin, 0) + 1

    def idle_connection(self, origin: Origin) -> Connection | None:
        """A kept-alive connection to ``origin`` that is still open, most recent first."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable() and now - conn.idle_since < self._keepalive:
                conn.reused = True
                return conn
            conn.close()
        return None

    def release(self, conn: Connection, *, reusable: bool) -> None:
        """End a use of ``conn`` (reserved with :meth:`reserve`); keep it idle if reusable."""
        self._unreserve(conn.origin)
        if reusable:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, []).append(conn)
            if self._sweeper is None:
                loop = asyncio.get_running_loop()
                self._sweeper = loop.call_later(self._keepalive, self._sweep)

    def cancel(self, origin: Origin) -> None:
        """Give back a reservation that never got a connection."""
        self._unreserve(origin)

    def _unreserve(self, origin: Origin) -> None:
        self._in_use -= 1
        left = self._in_use_per_host[origin] - 1
        if left:
            self._in_use_per_host[origin] = left
        else:
            del self._in_use_per_host[origin]
        if self._waiters:
            self._wake_next()

    def _wake_next(self) -> None:
        for entry in self._waiters:
            origin, waiter = entry
            if not waiter.done() and self._has_slot(origin):
                self._waiters.remove(entry)
                waiter.set_result(None)
                return

    def forget(self, conn: Connection) -> None:
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for origin, idle in list(self._idle.items()):
            kept = [c for c in idle if c.usable() and now - c.idle_since < self._keepalive]
            for conn in idle:
                if conn not in kept:
                    conn.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        if self._idle:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._keepalive, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _may_resend(conn: Connection, method: str, exc: PeerClosedError) -> bool:
    # Only a kept-alive connection the peer closed before answering at all: the request
    # either never left, or was idempotent, so a second copy does no harm.
    if not conn.reused or exc.response_started:
        return False
    return not exc.request_written or method in _IDEMPOTENT


class Http1Client:
    """Keep-alive HTTP/1.1 exchanges over a pool; connects only to the address it is given."""

    def __init__(
        self,
        resolve: Resolve,
        *,
        limit: int,
        limit_per_host: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._resolve = resolve
        self._ssl_context = ssl_context
        self._pool = _Pool(limit, limit_per_host, keepalive_seconds)
        self._open: set[Connection] = set()

    async def request(
        self, origin: Origin, method: str, head: bytes, body: bytes = b""
    ) -> Response:
        """Send one request; return its response once the head arrived (body unread).

        The caller must ``release()`` the response (or it holds a pool slot).
        """
        pool = self._pool
        if not pool.try_reserve(origin):
            await pool.reserve(origin)
        retried = False
        while True:
            # The one retry always goes out on a fresh connection.
            conn = None if retried else pool.idle_connection(origin)
            try:
                if conn is None:
                    conn = await self._connect(origin)
                return await conn.send(head, body, method == "HEAD")
            except PeerClosedError as exc:
                assert conn is not None
                conn.close()
                if retried or not _may_resend(conn, method, exc):
                    pool.cancel(origin)
                    raise
                retried = True
            except BaseException:
                if conn is not None:
                    conn.response = None
                    conn.close()
                pool.cancel(origin)
                raise

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        address = await self._resolve(host, port)
        loop = asyncio.get_running_loop()
        tls = scheme == "https"
        if tls and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        transport, conn = await loop.create_connection(
            lambda: Connection(self._pool, origin, loop),
            address,
            port,
            ssl=self._ssl_context if tls else None,
            server_hostname=host if tls else None,
        )
        # uvloop may call connection_made only after create_connection returned.
        conn.transport = transport
        self._open.add(conn)
        if len(self._open) > 256:
            self._open = {c for c in self._open if not c.closed}
        return conn

    def close(self) -> None:
        """Close every connection (in use or idle); further requests open new ones."""
        self._pool.close()
        for conn in self._open:
            conn.close()
        self._open.clear()
