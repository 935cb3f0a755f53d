"""The edge middleware leaves no reference cycle behind a request: uvicorn's ``send`` is a
bound method of an object that holds the scope, and the scope holds the edge's call."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from junctionbox.api.app import create_app
from junctionbox.services.container import Services


class _Cycle:
    """What uvicorn's RequestResponseCycle is to the app: it holds the scope, and its
    ``send`` is a bound method."""

    def __init__(self, path: str) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"orgId=1",
            "root_path": "",
            "headers": [(b"host", b"gw"), (b"content-length", b"2")],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        self.statuses: list[int] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


async def test_a_request_is_freed_without_the_garbage_collector(services: Services) -> None:
    app = create_app(services)
    for path in ("/api/v1/integrations/booking", "/api/v1/no-such-route"):
        await app(_Cycle(path).scope, _Cycle(path).receive, _Cycle(path).send)  # warm
        gc.collect()
        gc.disable()
        try:
            cycle = _Cycle(path)
            await app(cycle.scope, cycle.receive, cycle.send)
            assert cycle.statuses[:1] in ([401], [404])
            freed = weakref.ref(cycle)
            del cycle
            assert freed() is None, path
        finally:
            gc.enable()
