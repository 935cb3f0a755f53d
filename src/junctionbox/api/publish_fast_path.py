"""``POST /api/v1/integration/events/publish`` answered before FastAPI's router.

Publishing is the hottest write of the API, and for a single event FastAPI's routing,
dependency solving and exception middleware cost more CPU than the publish itself. This pure
ASGI handler (listed in ``app.hot_paths``, next to the inbound proxy's) authenticates
with the same cached resolution as the route's dependency, hands the same request to the same
``PublishService`` and puts errors in the same envelope, so the answer is the route's.

It serves only requests whose query parameters are plainly valid (``orgId`` a positive number
without leading zeros, ``stream`` a valid name, ``partial`` a boolean word): anything else goes
on to the FastAPI route, which stays registered, so that each refusal of a parameter is
FastAPI's own, word for word, and the OpenAPI document still describes the endpoint.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from junctionbox.api.deps import MAX_ORG_ID, authenticate
from junctionbox.api.errors import error_response
from junctionbox.api.middleware import read_body
from junctionbox.errors import JunctionboxError
from junctionbox.observability.http import RouteTemplate
from junctionbox.services.container import Services
from junctionbox.services.publish import PublishRequest, PublishResponse

PATH: Final = "/api/v1/integration/events/publish"
_ROUTE: Final = RouteTemplate(PATH)
# The route's ``StreamName`` pattern; ``fullmatch`` because ``$`` would let a final newline
# through, which the route's (Rust) regex does not.
_STREAM: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The words pydantic reads as booleans (in any letter case).
_BOOLEANS: Final = {
    **dict.fromkeys(("true", "1", "yes", "on", "t", "y"), True),
    **dict.fromkeys(("false", "0", "no", "off", "f", "n"), False),
}
_JSON: Final = (b"content-type", b"application/json")
_REPLAYED: Final = (b"idempotent-replayed", b"true")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublishParameters:
    org_id: int | None = None
    stream: str | None = None
    partial: bool = False


_NONE: Final = PublishParameters()
_UNREAD: Final = object()


# Producers send the same few query strings again and again: the reading of each short one
# is kept (parsing ``orgId=1`` took 8 us of a publish's CPU). Bounded: emptied when full.
_READ: dict[bytes, PublishParameters | None] = {}
_READ_MAX: Final = 1024
_KEPT_LENGTH: Final = 200


def plain_parameters(query_string: bytes) -> PublishParameters | None:
    """The query's parameters when the route would take them as they are; None when it
    would have to convert or refuse one (the route then answers)."""
    found = _READ.get(query_string, _UNREAD)
    if found is not _UNREAD:
        return found  # type: ignore[return-value]
    found = _read_parameters(query_string)
    if len(query_string) <= _KEPT_LENGTH:
        if len(_READ) >= _READ_MAX:
            _READ.clear()
        _READ[query_string] = found
    return found


def _read_parameters(query_string: bytes) -> PublishParameters | None:
    if not query_string:
        return _NONE
    query = QueryParams(query_string)  # as the route reads it: the last of repeated names
    org_id, stream, partial = query.get("orgId"), query.get("stream"), query.get("partial")
    if org_id is not None and not _plain_org_id(org_id):
        return None
    if stream is not None and _STREAM.fullmatch(stream) is None:
        return None
    flag: bool | None = False
    if partial is not None:
        flag = _BOOLEANS.get(partial.lower()) if partial.isascii() else None
    if flag is None:
        return None
    return PublishParameters(int(org_id) if org_id is not None else None, stream, flag)


def _plain_org_id(value: str) -> bool:
    """Digits without leading zeros, within the ids the databases store."""
    plain = value.isascii() and value.isdigit() and value[0] != "0"
    return plain and len(value) <= 19 and int(value) <= MAX_ORG_ID


class PublishFastPath:
    """Serves ``POST …/events/publish`` directly; everything else goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        parameters = plain_parameters(scope["query_string"])
        if parameters is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE  # the server span and HTTP metrics by template
        try:
            outcome = await _publish(scope, receive, parameters)
        except JunctionboxError as exc:
            if exc.status >= 500:
                log.error("request failed: %s", exc.message, exc_info=exc.__cause__ or exc)
            await error_response(exc)(scope, receive, send)
            return
        if outcome is not None:
            await _send(send, outcome)


async def _publish(
    scope: Scope, receive: Receive, parameters: PublishParameters
) -> PublishResponse | None:
    """The route's work, in its order: caller, tenant, body, publish. None when the client
    went away before its body arrived (nobody to answer)."""
    svc: Services = scope["app"].state.services
    headers = Headers(scope=scope)
    tenant = await svc.tenancy.resolve(await authenticate(svc, headers), parameters.org_id)
    body = await read_body(receive)
    if body is None:
        return None
    request = PublishRequest(
        body=body,
        headers={name.lower(): value for name, value in headers.items()},
        stream=parameters.stream,
        partial=parameters.partial,
        idempotency_key=headers.get("idempotency-key"),
    )
    return await svc.publisher.publish(tenant, request)


async def _send(send: Send, outcome: PublishResponse) -> None:
    """The response the route's ``Response(body, status, headers, media_type=JSON)`` sends."""
    headers = [(b"content-length", str(len(outcome.body)).encode()), _JSON]
    if outcome.replayed:
        headers.insert(0, _REPLAYED)
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": outcome.body})
