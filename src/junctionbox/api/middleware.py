"""The edge: the one pure-ASGI middleware every HTTP request passes, then the hot paths.

One pass over the request's headers gives, in order: request and correlation ids (in the
response, in every log line), the server span and HTTP metrics (``observability.http``),
the API rate limits (``api.rate_limit``), the body limit, and the access log; then the hot
paths (the inbound proxy, gateway routes: pure-ASGI handlers, see ``HotPath``) are served
directly and everything else goes on to FastAPI. It is also the last line of defence: an
exception that escapes becomes an opaque 500 envelope.

It replaces a stack of five generic middlewares (telemetry, request context, rate limit,
body limit, gateway hand-off) and FastAPI's own outer layers for the hot paths: each layer
cost a call, a ``send`` wrapper and a header scan per request (profiled: about a tenth of a
proxied call). Their order is kept: ids and the span outermost, then CORS when configured,
then the rate limits and the body limit, then the handler.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junctionbox.api.errors import envelope, error_response, internal_error_response
from junctionbox.api.rate_limit import RateLimits
from junctionbox.domain.ids import new_id_of
from junctionbox.errors import JunctionboxError
from junctionbox.observability import context
from junctionbox.observability.http import ServerTelemetry
from junctionbox.observability.telemetry import Telemetry
from junctionbox.services.api_rate_limits import ApiRateLimiter

log = logging.getLogger("junctionbox.access")
_SAFE_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EDGE_KEY: Final = "junctionbox.edge"  # the request's ``EdgeCall`` in the ASGI scope

# A hot path: (path prefix, factory). The factory gets the app that serves everything else
# (FastAPI) and returns the pure-ASGI handler for paths starting with the prefix; the
# handler may still pass a request on to that app (e.g. a method it does not serve).
HotPath = tuple[str, Callable[[ASGIApp], ASGIApp]]


class _BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing passes it on instead of wrapping it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes", {"connection": "close"})


class EdgeCall:
    """One request's state at the edge: its headers (read once), the headers its response
    gets, and the response's status. ``send`` is the wrapped send every layer below uses."""

    __slots__ = ("_send", "added", "extra", "generated_id", "headers", "started", "status")

    def __init__(
        self,
        headers: dict[bytes, bytes],
        generated_id: str | None,
        extra: list[tuple[bytes, bytes]],
        send: Send,
    ) -> None:
        self.headers = headers
        # The request id when junctionbox made it (a ULID, unique): other ids of the call
        # can share its body instead of drawing their own. Never a caller's id.
        self.generated_id = generated_id
        self.extra = extra  # the ids; always added
        self.added: list[tuple[bytes, bytes]] = []  # the rate-limit headers; unless present
        self.status = 500
        self.started = False
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
            headers = list(message.get("headers", ()))
            if self.added:
                # A more specific limit (a gateway route's) already set its headers: keep them.
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.added if k not in present]
            headers += self.extra
            message = {**message, "headers": headers}
        await self._send(message)


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry,
        limiter: ApiRateLimiter,
        max_body_bytes: int,
        hot_paths: Sequence[HotPath] = (),
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> None:
        """``app`` serves what no hot path does; ``wrap`` (CORS, when configured) goes around
        the rate limits, the body limit and every handler, inside the ids and the span."""
        self.app = app
        self.telemetry = ServerTelemetry(telemetry)
        self.limits = RateLimits(limiter)
        self.max_body_bytes = max_body_bytes
        self.routes = [(prefix, factory(app)) for prefix, factory in hot_paths]
        self.inner: ASGIApp = wrap(self._limited) if wrap is not None else self._limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = _incoming_id(headers.get(b"x-request-id"))
        # Unique is enough for a request id: entropy from the module generator (seeded
        # from os.urandom, reseeded in a forked child) spares a system call per request,
        # one that releases the GIL (measured: ~1 us, and a wait to take the GIL back).
        generated = None if incoming else new_id_of("req", random.getrandbits(80))
        request_id = incoming or generated or ""
        correlation_id = _incoming_id(headers.get(b"x-correlation-id")) or request_id
        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": request_id}
        else:
            state["request_id"] = request_id
        ids = [
            (b"x-request-id", request_id.encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]
        call = scope[EDGE_KEY] = EdgeCall(headers, generated, ids, send)
        started = time.perf_counter()
        token = context.enter(request_id, correlation_id)
        try:
            with self.telemetry.server_span(scope, headers, call):
                try:
                    await self.inner(scope, receive, call.send)
                except Exception:
                    log.exception("unhandled error")
                    if not call.started:
                        await internal_error_response()(scope, receive, call.send)
                finally:
                    _access_log(scope, call.status, started)
        finally:
            context.leave(token)
            # The scope holds the call, which holds uvicorn's send, which holds the scope:
            # a reference cycle per request (with its headers, ~20 objects) left to the
            # garbage collector, whose passes cost more than the request's other work
            # combined (measured: 17 us per proxied call). The request is over: unlink.
            del scope[EDGE_KEY]

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        call: EdgeCall = scope[EDGE_KEY]
        headers = call.headers
        path: str = scope["path"]
        try:
            refusal = await self.limits.check(scope, path, headers, call)
        except JunctionboxError as exc:  # the backend failing closed: 503
            await error_response(exc)(scope, receive, send)
            return
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_body_bytes:
                await self._refuse(scope, receive, send, declared.isdigit())
                return
            if b"transfer-encoding" not in headers:
                # The server reads exactly the declared length: nothing to count.
                await self._dispatch(path, scope, receive, send)
                return
        try:
            await self._dispatch(path, scope, _Counted(receive, self.max_body_bytes), send)
        except _BodyTooLarge:
            if not call.started:
                await self._refuse(scope, receive, send, True)

    def _dispatch(self, path: str, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        for prefix, handler in self.routes:
            if path.startswith(prefix):
                return handler(scope, receive, send)
        return self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, too_large: bool) -> None:
        if too_large:
            response: Any = envelope(
                413,
                "PAYLOAD_TOO_LARGE",
                f"request body exceeds {self.max_body_bytes} bytes",
                headers={"connection": "close"},
            )
        else:
            response = envelope(400, "VALIDATION_ERROR", "invalid Content-Length header")
        await response(scope, receive, send)


class _Counted:
    """A ``receive`` that refuses a streamed body as soon as it crosses the limit, never
    reading the rest."""

    __slots__ = ("max_bytes", "receive", "received")

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self.receive = receive
        self.max_bytes = max_bytes
        self.received = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                raise _BodyTooLarge(self.max_bytes)
        return message


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client left before it ended (nobody is left
    to answer, and a partial body must not be acted on)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _incoming_id(value: bytes | None) -> str | None:
    if not value:
        return None
    text = value.decode("latin-1")
    return text if _SAFE_ID.match(text) else None


def _access_log(scope: Scope, status: int, started: float) -> None:
    if not log.isEnabledFor(logging.INFO):  # the extra fields cost more than the check
        return
    seconds = time.perf_counter() - started
    route = scope.get("route")
    log.info(
        "%s %s %d",
        scope["method"],
        scope["path"],
        status,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "route": getattr(route, "path", None),
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
