"""A local webhook receiver for trying junctionbox out (``junctionbox receive``).

It answers every POST with a chosen status, checks the Standard Webhooks signature when given
the integration's secret, and reports each delivery to a callback. It is a development tool:
the production receiver of inbound webhooks is a later feature with its own routes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from junctionbox.domain.signing import HEADER_ID, HEADER_TIMESTAMP, verify_headers
from junctionbox.errors import JunctionboxError


@dataclass(frozen=True)
class ReceivedWebhook:
    method: str
    path: str
    webhook_id: str | None
    timestamp: str | None
    signature_ok: bool | None  # None: no secret given, not checked
    problem: str | None
    body: bytes


def receiver_app(
    on_delivery: Callable[[ReceivedWebhook], None],
    *,
    secrets: Sequence[str] = (),
    status: int = 204,
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        ok, problem = _check(headers, body, secrets)
        on_delivery(
            ReceivedWebhook(
                request.method,
                request.path,
                headers.get(HEADER_ID),
                headers.get(HEADER_TIMESTAMP),
                ok,
                problem,
                body,
            )
        )
        # A bad signature is refused as a real receiver would (and junctionbox won't retry a 401).
        return web.Response(status=401 if ok is False else status)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _check(
    headers: dict[str, str], body: bytes, secrets: Sequence[str]
) -> tuple[bool | None, str | None]:
    if not secrets:
        return None, None
    try:
        verify_headers(headers, body, secrets, now=time.time())
    except JunctionboxError as exc:
        return False, exc.message
    return True, None
