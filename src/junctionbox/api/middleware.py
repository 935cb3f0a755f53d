"""Pure-ASGI middleware. The stack is assembled in one place: ``app.build_middleware``."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from junctionbox.api.errors import envelope, internal_error_response
from junctionbox.domain.ids import new_id
from junctionbox.observability import context

log = logging.getLogger("junctionbox.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _incoming_id(scope: Scope, name: bytes) -> str | None:
    value = _header(scope, name)
    return value if value and _SAFE_ID.match(value) else None


class RequestContextMiddleware:
    """Request and correlation ids in, out and in every log line; the access log; and the
    last line of defence: an exception that escapes becomes an opaque 500 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope, b"x-request-id") or new_id("req")
        correlation_id = _incoming_id(scope, b"x-correlation-id") or request_id
        scope.setdefault("state", {})["request_id"] = request_id
        status = {"code": 500, "started": False}
        extra_headers = [
            (b"x-request-id", request_id.encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        started = time.perf_counter()
        with context.bound(request_id=request_id, correlation_id=correlation_id):
            try:
                await self.app(scope, receive, send_with_ids)
            except Exception:
                log.exception("unhandled error")
                if not status["started"]:
                    await internal_error_response()(scope, receive, send_with_ids)
            finally:
                _access_log(scope, int(status["code"]), time.perf_counter() - started)


def _access_log(scope: Scope, status: int, seconds: float) -> None:
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


class _BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing passes it on instead of wrapping it."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes", {"connection": "close"})


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` with 413: at once when Content-Length says so, and
    as soon as a streamed body crosses the limit otherwise, never reading the rest."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send, declared.isdigit())
            return
        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(scope, receive, send, True)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, too_large: bool) -> None:
        if too_large:
            response: Any = envelope(
                413,
                "PAYLOAD_TOO_LARGE",
                f"request body exceeds {self.max_bytes} bytes",
                headers={"connection": "close"},
            )
        else:
            response = envelope(400, "VALIDATION_ERROR", "invalid Content-Length header")
        await response(scope, receive, send)
