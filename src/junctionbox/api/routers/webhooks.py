"""``POST /api/v1/webhooks/{sourceId}``: the receiver of partners' webhooks.

No platform credential: the sender is verified by the source's scheme (see
``services/webhook_intake.py`` for the checks and their answers). The body is read as raw
bytes, at most the source's ``maxBodyBytes`` (413 beyond), and stored exactly as received.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from junctionbox.api.schemas import ApiModel
from junctionbox.errors import PayloadTooLargeError
from junctionbox.services.container import Services
from junctionbox.services.webhook_intake import InboundRequest

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhook receiver"])

# Unconstrained: any id that is not a source, however malformed, is simply not found (404).
SourceId = Annotated[str, Path(description="Webhook source id (whsrc_…).")]


class ReceivedOut(ApiModel):
    id: str = Field(description="The event id: the sender's message id when it gives one.")
    status: str = Field(description="accepted (stored now) or duplicate (stored before).")
    stream: str
    partition: int
    offset: int


@router.post(
    "/{source_id}",
    status_code=202,
    response_model=ReceivedOut,
    summary="Receive a webhook (202 stored; 200 a re-sent message, already stored)",
    responses={
        200: {
            "model": ReceivedOut,
            "description": "A message already received: acknowledged, not stored again.",
        },
        401: {"description": "Verification failed (one message for every cause)."},
        404: {"description": "Unknown or disabled source."},
        409: {"description": "The message id was received before with another body."},
        413: {"description": "The body is larger than the source accepts."},
    },
)
async def receive(source_id: SourceId, request: Request) -> Response:
    svc: Services = request.app.state.services

    async def read_body(limit: int) -> bytes:
        return await _read_limited(request, limit)

    headers = {name.lower(): value for name, value in request.headers.items()}
    accepted = await svc.webhooks.receive(InboundRequest(source_id, headers, read_body))
    body = {
        "id": accepted.event_id,
        "status": "duplicate" if accepted.duplicate else "accepted",
        "stream": accepted.stream,
        "partition": accepted.partition,
        "offset": accepted.offset,
    }
    return Response(orjson.dumps(body), status_code=accepted.status, media_type="application/json")


async def _read_limited(request: Request, limit: int) -> bytes:
    too_large = PayloadTooLargeError(f"the body is larger than this source accepts ({limit} bytes)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
