"""``/api/v1/integration/events/subscribe``: the tenant's events, live, over Server-Sent
Events (GET) or a WebSocket (the same path), resumable from the last id received.

Both ends run the same loop over a ``services.live`` subscription: deliveries as they come,
a heartbeat when none came for ``heartbeat_seconds``, and a reason when the server ends the
subscription (slow consumer, shutdown, log unavailable). See docs/events-live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, WebSocket
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from junctionbox.api.deps import ServicesDep, TenantDep, authenticate
from junctionbox.api.errors import error_response
from junctionbox.errors import JunctionboxError, ValidationError
from junctionbox.services.container import Services
from junctionbox.services.live import (
    CloseKind,
    Delivery,
    Start,
    Subscription,
    SubscriptionClosed,
    parse_cursor,
)

PATH = "/api/v1/integration/events/subscribe"
RETRY_MS = 2000  # how long an EventSource waits before reconnecting
router = APIRouter(tags=["events"])

# Why the server ended a subscription: SSE error frame code, WebSocket close code.
_CLOSES = {
    CloseKind.SLOW: ("SLOW_CONSUMER", 1013),  # try again later: resume from the last id
    CloseKind.SHUTDOWN: ("SHUTTING_DOWN", 1001),  # going away
    CloseKind.ERROR: ("LOG_UNAVAILABLE", 1011),  # internal error
}

StreamsQuery = Annotated[
    list[str] | None,
    Query(description="Stream name patterns, `*` wildcards, comma-separated or repeated (all)."),
]
TypesQuery = Annotated[
    list[str] | None,
    Query(description="Event type patterns, e.g. `order.*`, comma-separated or repeated (all)."),
]
FromQuery = Annotated[
    Literal["earliest", "latest"],
    Query(alias="from", description="Without lastEventId: from the log's start, or from now."),
]
LastIdQuery = Annotated[
    str | None,
    Query(alias="lastEventId", description="Resume after this id (Last-Event-ID wins)."),
]

_SSE_DESCRIPTION = """A `text/event-stream` of the tenant's events. Each event frame is
`id: <cursor>`, `event: <type>`, `data: <CloudEvent JSON>`; a `: ping` comment comes every
heartbeat (with an `id:` line when the cursor moved); when the server ends the stream it
sends `event: error` with `{"code", "reason"}` first. The same path takes a WebSocket
upgrade with the same query parameters (messages `{"type": "event", "id", "event"}`)."""


@router.get(
    PATH,
    summary="Subscribe to live events (Server-Sent Events; WebSocket on the same path)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": _SSE_DESCRIPTION,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def subscribe_sse(
    tenant: TenantDep,
    svc: ServicesDep,
    streams: StreamsQuery = None,
    types: TypesQuery = None,
    start: FromQuery = "latest",
    last_event_id: LastIdQuery = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    subscription = await open_subscription(
        svc, tenant.org_id, streams, types, start, last_event_id_header or last_event_id
    )
    return EventStream(subscription, svc.live.heartbeat_seconds)


@router.websocket(PATH)
async def subscribe_websocket(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    try:
        subscription = await _websocket_subscription(websocket, svc)
    except JunctionboxError as exc:
        await _refuse(websocket, exc)
        return
    try:
        await websocket.accept()
        await _pump_websocket(websocket, subscription, svc.live.heartbeat_seconds)
    except (WebSocketDisconnect, OSError):
        pass  # the client went away
    finally:
        subscription.close()


# --- shared ---


async def open_subscription(
    svc: Services,
    org_id: int,
    streams: Iterable[str] | None,
    types: Iterable[str] | None,
    start: str,
    last_event_id: str | None,
) -> Subscription:
    if start not in ("earliest", "latest"):
        raise ValidationError("from must be earliest or latest")
    resume = parse_cursor(last_event_id) if last_event_id is not None else None
    begin: Start = "earliest" if start == "earliest" else "latest"
    return await svc.live.subscribe(
        org_id, streams=_split(streams), types=_split(types), resume=resume, start=begin
    )


def _split(values: Iterable[str] | None) -> list[str]:
    return [part for value in values or () for part in value.split(",")]


def _close_message(closed: SubscriptionClosed) -> dict[str, str]:
    return {"code": _CLOSES[closed.kind][0], "reason": closed.reason}


# --- Server-Sent Events ---


class EventStream(StreamingResponse):
    """The subscription as ``text/event-stream``; it is closed when the response ends, and
    as soon as the client disconnects (not at the next heartbeat's failed write).

    ``named``: each frame carries the event's type as its SSE event name. A browser's
    EventSource only hands over names it listens for, so the console asks for unnamed
    frames (all ``message``)."""

    media_type = "text/event-stream"

    def __init__(
        self, subscription: Subscription, heartbeat_seconds: float, *, named: bool = True
    ) -> None:
        super().__init__(
            _frames(subscription, heartbeat_seconds, named),
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self.subscription = subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_close_on_disconnect(receive, self.subscription))
        try:
            await self.stream_response(send)
        except OSError:
            pass  # the client went away mid-write
        finally:
            watcher.cancel()
            self.subscription.close()


async def _close_on_disconnect(receive: Receive, subscription: Subscription) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # noqa: S110 (any failure to read is the end of the connection)
        pass
    finally:
        subscription.close()


async def _frames(
    subscription: Subscription, heartbeat_seconds: float, named: bool
) -> AsyncIterator[bytes]:
    sent = subscription.initial_id
    yield f"retry: {RETRY_MS}\nid: {sent}\n\n".encode()
    while True:
        try:
            batch = await subscription.next_batch(heartbeat_seconds)
        except SubscriptionClosed as closed:
            if closed.kind is not CloseKind.CLIENT:
                data = orjson.dumps(_close_message(closed))
                yield b"event: error\ndata: " + data + b"\n\n"
            return
        if batch:
            yield b"".join(_sse_frame(delivery, named) for delivery in batch)
            sent = batch[-1].id
            continue
        idle = subscription.idle_id()
        if idle is not None and idle != sent:
            yield f": ping\nid: {idle}\n\n".encode()
            sent = idle
        else:
            yield b": ping\n\n"


def _sse_frame(delivery: Delivery, named: bool) -> bytes:
    body = orjson.dumps(delivery.event.to_cloudevent())
    # Raw JSON data may hold line breaks (between tokens): each line is its own data: line,
    # which the client joins back with "\n".
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    data = b"".join(b"data: " + line + b"\n" for line in lines)
    name = f"event: {delivery.event.type}\n" if named else ""
    head = f"id: {delivery.id}\n{name}".encode()
    return head + data + b"\n"


# --- WebSocket ---


async def _websocket_subscription(websocket: WebSocket, svc: Services) -> Subscription:
    """Authenticate from the upgrade request's headers, resolve the tenant from ``orgId``
    as every HTTP route does, and subscribe with the same query parameters as SSE."""
    query = websocket.query_params
    principal = await authenticate(svc, websocket.headers)
    tenant = await svc.tenancy.resolve(principal, _org_id(query.get("orgId")))
    return await open_subscription(
        svc,
        tenant.org_id,
        query.getlist("streams"),
        query.getlist("types"),
        query.get("from", "latest"),
        query.get("lastEventId"),
    )


def _org_id(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValidationError("orgId must be a positive integer")
    return int(text)


async def _refuse(websocket: WebSocket, exc: JunctionboxError) -> None:
    """An HTTP error response instead of the upgrade when the server can send one, else a
    policy-violation close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(exc))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])


async def _pump_websocket(
    websocket: WebSocket, subscription: Subscription, heartbeat_seconds: float
) -> None:
    await _send(websocket, {"type": "subscribed", "id": subscription.initial_id})
    watcher = asyncio.create_task(_close_on_websocket_disconnect(websocket, subscription))
    try:
        while True:
            try:
                batch = await subscription.next_batch(heartbeat_seconds)
            except SubscriptionClosed as closed:
                if closed.kind is not CloseKind.CLIENT:
                    await websocket.close(_CLOSES[closed.kind][1], closed.reason[:120])
                return
            for delivery in batch:
                event = delivery.event.to_cloudevent()
                await _send(websocket, {"type": "event", "id": delivery.id, "event": event})
            if not batch:
                await _send(websocket, {"type": "ping", "id": subscription.idle_id()})
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _close_on_websocket_disconnect(websocket: WebSocket, subscription: Subscription) -> None:
    """Messages from the client are not used; reading them notices the disconnect."""
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except Exception:  # noqa: S110 (any failure to read is the end of the connection)
        pass
    finally:
        subscription.close()


async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(orjson.dumps(message).decode())
