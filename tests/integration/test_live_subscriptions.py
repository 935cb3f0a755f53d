"""Live subscriptions over SSE and WebSocket, against a real uvicorn server on both databases.

httpx's ASGI transport buffers whole responses, so every test here serves the app on a free
local port and talks to it as a client would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from tests.support import World, make_settings
from websockets.asyncio.client import ClientConnection, connect

from junctionbox.api.app import create_app
from junctionbox.api.routers import subscribe
from junctionbox.domain.events import AppendResult, EventDraft
from junctionbox.errors import RateLimitedError, ValidationError
from junctionbox.runtime import build_services
from junctionbox.services import live as live_module
from junctionbox.services.container import Services
from junctionbox.services.live import (
    CloseKind,
    LiveHub,
    Patterns,
    Subscription,
    encode_cursor,
    parse_cursor,
)
from junctionbox.store.queries import events as queries

PATH = subscribe.PATH
LIMIT = 20  # seconds any one test may take


# --- a real server ---


@dataclass
class Node:
    hub: LiveHub
    http: str
    ws: str


@pytest.fixture
async def serve(world: World) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """Starts the app (with this hub as ``services.live``) under uvicorn on a free port."""
    stack = AsyncExitStack()

    async def start(**options: Any) -> Node:
        hub = LiveHub(world.services.db, world.services.event_log, **options)
        world.services.live = hub  # type: ignore[attr-defined]

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await hub.start()
            try:
                yield
            finally:
                await hub.stop()

        app = create_app(world.services, lifespan)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)

        async def shutdown() -> None:
            hub.close_all()  # or open streams hold the graceful shutdown
            server.should_exit = True
            async with asyncio.timeout(10):
                await task

        stack.push_async_callback(shutdown)
        port = server.servers[0].sockets[0].getsockname()[1]
        return Node(hub, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}")

    yield start
    await stack.aclose()


# --- an SSE client ---


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads("\n".join(self.data))


class Sse:
    """Reads a ``text/event-stream`` frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.opening_id: str | None = None

    async def frame(self) -> Frame:
        frame = Frame()
        async for line in self._lines:
            if line == "":
                if frame != Frame():
                    return frame
                continue
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                frame.data.append(value)
            elif name in ("id", "event"):
                setattr(frame, name, value)
        raise EOFError("the stream ended")

    async def event(self) -> Frame:
        """The next frame with data (an event or an error), skipping heartbeats."""
        while not (frame := await self.frame()).data:
            pass
        return frame

    async def events(self, count: int) -> list[Frame]:
        return [await self.event() for _ in range(count)]


@asynccontextmanager
async def sse(node: Node, headers: dict[str, str], **params: str) -> AsyncIterator[Sse]:
    async with (
        httpx.AsyncClient(base_url=node.http, timeout=10) as http,
        http.stream("GET", PATH, headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        reader = Sse(response)
        opening = await reader.frame()  # sent once the subscription is in place
        reader.opening_id = opening.id
        yield reader


@asynccontextmanager
async def ws(node: Node, headers: dict[str, str], **params: str) -> AsyncIterator[Ws]:
    url = f"{node.ws}{PATH}?{urlencode(params)}"
    async with connect(url, additional_headers=headers, open_timeout=5) as socket:
        client = Ws(socket)
        opening = await client.message()
        assert opening["type"] == "subscribed"
        client.opening_id = opening["id"]
        yield client


class Ws:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.opening_id: str | None = None

    async def message(self) -> Any:
        return orjson.loads(await self.socket.recv())

    async def event(self) -> Any:
        while (message := await self.message())["type"] != "event":
            pass
        return message

    async def events(self, count: int) -> list[Any]:
        return [await self.event() for _ in range(count)]

    async def drain(self) -> None:
        """Read until the server closes (``ConnectionClosed``)."""
        while True:
            await self.socket.recv()


async def settled(hub: LiveHub) -> None:
    """Until every subscription has read its backlog and takes events live."""
    while any(s.catching_up for s in hub.subscriptions()):  # noqa: ASYNC110 (a state, no event)
        await asyncio.sleep(0.01)


async def all_closed(hub: LiveHub) -> None:
    """Until the server has noticed that every client went away (well before a heartbeat)."""
    async with asyncio.timeout(5):
        while hub.count():  # noqa: ASYNC110 (a state, no event)
            await asyncio.sleep(0.01)


# --- appending ---


def draft(n: int, type_: str = "order.created", **fields: Any) -> EventDraft:
    payload = b'{"n": %d}' % n
    return EventDraft(type=type_, payload=payload, value={"n": n}, has_value=True, **fields)


async def append(
    services: Services, org_id: int, *drafts: EventDraft, stream: str | None = None
) -> list[AppendResult]:
    return await services.event_log.append(org_id, list(drafts), stream=stream)


# --- tests ---


async def test_sse_streams_the_callers_tenant_live(world: World, serve: Any) -> None:
    node = await serve()
    async with (
        asyncio.timeout(LIMIT),
        sse(node, world.headers["user_a"]) as a,
        sse(node, world.headers["user_b"]) as b,
    ):
        assert a.response.headers["content-type"].startswith("text/event-stream")
        assert a.response.headers["cache-control"] == "no-cache"
        assert a.response.headers["x-accel-buffering"] == "no"
        await append(world.services, 200, draft(99, "b.only"))
        placed = await append(world.services, 100, *(draft(n, partition_key="k") for n in range(3)))
        frames = await a.events(3)
        assert [f.event for f in frames] == ["order.created"] * 3
        bodies = [f.json() for f in frames]
        assert [body["data"] for body in bodies] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [body["id"] for body in bodies] == [p.event_id for p in placed]
        assert bodies[0]["specversion"] == "1.0"
        assert bodies[0]["jbstream"] == "default"
        partition = placed[0].partition
        assert [parse_cursor(f.id or "")["default"][partition] for f in frames] == [0, 1, 2]

        await append(world.services, 200, draft(100, "b.second"))
        seen_by_b = await b.events(2)  # org 100's three events came in between, not to b
        assert [f.event for f in seen_by_b] == ["b.only", "b.second"]
        assert node.hub.count(100) == node.hub.count(200) == 1
    await all_closed(node.hub)


async def test_stream_and_type_patterns_filter(world: World, serve: Any) -> None:
    node = await serve()
    headers = world.headers["key_a"]
    async with (
        asyncio.timeout(LIMIT),
        sse(node, headers, streams="orders,bill*", types="order.*") as a,
    ):
        await append(world.services, 100, draft(1, "order.created"), stream="orders")
        await append(world.services, 100, draft(2, "invoice.paid"), stream="orders")
        await append(world.services, 100, draft(3, "order.paid"), stream="billing")
        await append(world.services, 100, draft(4, "order.created"), stream="default")
        await append(world.services, 100, draft(5, "order.done"), stream="orders")
        frames = await a.events(3)
        assert [(f.event, f.json()["jbstream"]) for f in frames] == [
            ("order.created", "orders"),
            ("order.paid", "billing"),
            ("order.done", "orders"),
        ]
        # The cursor covers the subscribed streams only, filtered-out types included.
        assert set(parse_cursor(frames[-1].id or "")) == {"orders", "billing"}


async def test_last_event_id_resumes_every_partition_without_gap_or_duplicate(
    world: World, serve: Any
) -> None:
    node = await serve()
    headers = world.headers["user_a"]

    def batch(start: int, count: int) -> list[EventDraft]:
        return [draft(n, partition_key=f"key-{n}") for n in range(start, start + count)]

    async with asyncio.timeout(LIMIT):
        async with sse(node, headers, streams="orders") as first:
            before = await append(world.services, 100, *batch(0, 4), stream="orders")
            seen = await first.events(4)
        assert {p.partition for p in before} != {before[0].partition}  # several partitions
        missed = await append(world.services, 100, *batch(4, 6), stream="orders")

        async with sse(node, {**headers, "last-event-id": seen[-1].id or ""}) as again:
            frames = await again.events(6)
            assert sorted(f.json()["id"] for f in frames) == sorted(p.event_id for p in missed)
            [live] = await append(world.services, 100, draft(10), stream="orders")
            assert (await again.event()).json()["id"] == live.event_id

        # From the second event's id (query parameter): the rest of every partition.
        async with sse(node, headers, streams="orders", lastEventId=seen[1].id or "") as third:
            expected = {f.json()["id"] for f in seen[2:]} | {p.event_id for p in missed}
            expected.add(live.event_id)
            frames = await third.events(len(expected))
            ids = [f.json()["id"] for f in frames]
            assert len(ids) == len(set(ids))
            assert set(ids) == expected
            offsets: dict[int, list[int]] = {}
            for f in frames:
                body = f.json()
                offsets.setdefault(body["jbpartition"], []).append(body["jboffset"])
            assert all(o == sorted(o) for o in offsets.values())


async def test_from_earliest_replays_the_log_then_goes_live(world: World, serve: Any) -> None:
    node = await serve()
    old = await append(world.services, 100, *(draft(n, partition_key="p") for n in range(5)))
    async with (
        asyncio.timeout(LIMIT),
        sse(node, world.headers["user_a"], **{"from": "earliest"}) as a,
    ):
        [new] = await append(world.services, 100, draft(5, partition_key="p"))
        frames = await a.events(6)
        assert [f.json()["id"] for f in frames] == [p.event_id for p in [*old, new]]
    async with asyncio.timeout(LIMIT), sse(node, world.headers["user_a"]) as latest:
        [newest] = await append(world.services, 100, draft(6))
        assert (await latest.event()).json()["id"] == newest.event_id


async def test_websocket_streams_filters_and_resumes(world: World, serve: Any) -> None:
    node = await serve()
    headers = world.headers["key_a"]
    async with asyncio.timeout(LIMIT):
        async with ws(node, headers, types="order.*") as first:
            await append(world.services, 100, draft(1, "order.created"), draft(2, "note.x"))
            await append(world.services, 100, draft(3, "order.paid"))
            messages = await first.events(2)
            assert [m["event"]["type"] for m in messages] == ["order.created", "order.paid"]
            assert messages[0]["event"]["data"] == {"n": 1}
        missed = await append(world.services, 100, draft(4, "order.a"), draft(5, "order.b"))
        async with ws(node, headers, types="order.*", lastEventId=messages[-1]["id"]) as again:
            resumed = await again.events(2)
            assert sorted(m["event"]["id"] for m in resumed) == sorted(p.event_id for p in missed)
            [live] = await append(world.services, 100, draft(6, "order.c"))
            assert (await again.event())["event"]["id"] == live.event_id
        await all_closed(node.hub)


async def test_heartbeats_come_and_carry_the_cursor(world: World, serve: Any) -> None:
    node = await serve(heartbeat_seconds=0.05)
    async with asyncio.timeout(LIMIT):
        async with sse(node, world.headers["user_a"], types="wanted.*") as a:
            ping = await a.frame()
            assert ping.comments == ["ping"]
            assert ping.id is None  # nothing handled yet: the opening id still holds
            [skipped] = await append(world.services, 100, draft(1, "unwanted"))
            while (frame := await a.frame()).id is None:
                assert frame.comments == ["ping"]
            # A heartbeat moved the client past the event its filter skipped.
            assert parse_cursor(frame.id) == {"default": {skipped.partition: skipped.offset}}
        async with ws(node, world.headers["user_a"]) as b:
            assert (await b.message())["type"] == "ping"


async def test_a_slow_sse_consumer_is_dropped_with_the_reason(world: World, serve: Any) -> None:
    node = await serve(queue_size=4)
    async with asyncio.timeout(LIMIT):
        async with sse(node, world.headers["user_a"]) as a:
            await settled(node.hub)
            # One append fans 20 events out at once: the fifth finds the queue full.
            placed = await append(world.services, 100, *(draft(n) for n in range(20)))
            error = await a.event()
            assert error.event == "error"
            assert error.json() == {
                "code": "SLOW_CONSUMER",
                "reason": "slow consumer: 5 events behind",
            }
            with pytest.raises(EOFError):
                await a.frame()
        assert node.hub.count() == 0
        # Resuming reads the backlog only as fast as the client takes it: nothing is dropped.
        async with sse(node, {**world.headers["user_a"], "last-event-id": a.opening_id or ""}) as b:
            frames = await b.events(20)
            assert sorted(f.json()["id"] for f in frames) == sorted(p.event_id for p in placed)


async def test_a_slow_websocket_consumer_is_closed_1013(world: World, serve: Any) -> None:
    node = await serve(queue_size=4)
    async with asyncio.timeout(LIMIT), ws(node, world.headers["user_a"]) as a:
        await settled(node.hub)
        await append(world.services, 100, *(draft(n) for n in range(20)))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await a.drain()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        assert closed.value.rcvd.reason == "slow consumer: 5 events behind"


async def test_memory_stays_bounded_and_backlog_waits_for_the_reader(world: World) -> None:
    services = world.services
    hub = LiveHub(services.db, services.event_log, queue_size=3)
    await hub.start()
    sizes: list[int] = []

    def measure(_: object) -> None:  # runs after the hub's listener: the queue as it was left
        sizes.append(stalled.queue.qsize())

    try:
        async with asyncio.timeout(LIMIT):
            stalled = await hub.subscribe(100)
            await settled(hub)
            services.event_log.listeners.append(measure)
            await append(services, 100, draft(0))
            await append(services, 100, draft(1))
            assert stalled.closed is None
            await append(services, 100, *(draft(n) for n in range(2, 8)))
            assert stalled.closed is not None
            assert stalled.closed.kind is CloseKind.SLOW
            assert stalled.closed.reason == "slow consumer: 4 events behind"
            assert max(sizes) <= 3
            assert stalled.peak == 3
            assert stalled.queue.qsize() == 1  # only the end-of-subscription marker
            assert hub.count(100) == 0

            reader = await hub.subscribe(100, start="earliest")
            taken = []
            while len(taken) < 8:
                taken += [d.event.payload for d in await reader.next_batch(5, limit=1)]
                assert reader.queue.qsize() <= 3
            assert sorted(taken) == sorted(b'{"n": %d}' % n for n in range(8))
            assert reader.closed is None
            assert reader.peak <= 3
            reader.close()
    finally:
        if measure in services.event_log.listeners:
            services.event_log.listeners.remove(measure)
        await hub.stop()


async def test_the_byte_budget_bounds_large_events_too(world: World) -> None:
    services = world.services
    hub = LiveHub(services.db, services.event_log, queue_size=100, queue_bytes=1000)
    await hub.start()
    big = [EventDraft(type="t.big", payload=b'"%s"' % (b"x" * 398)) for _ in range(4)]  # 400 B
    try:
        async with asyncio.timeout(LIMIT):
            stalled = await hub.subscribe(100)
            await settled(hub)
            await append(services, 100, *big[:2])
            assert (stalled.closed, stalled.queued_bytes) == (None, 800)
            await append(services, 100, big[2])
            assert stalled.closed is not None
            assert stalled.closed.reason == "slow consumer: 3 events behind"

            reader = await hub.subscribe(100, start="earliest")  # the backlog waits instead
            await append(services, 100, big[3])
            taken = 0
            while taken < 4:
                taken += len(await reader.next_batch(5, limit=1))
                assert reader.queued_bytes <= 1000
            assert reader.closed is None
            reader.close()
    finally:
        await hub.stop()


async def test_backlog_and_live_join_without_gap_or_duplicate(world: World) -> None:
    """A subscriber from the start of a busy log, reading slower than producers write."""
    services = world.services
    hub = LiveHub(services.db, services.event_log, queue_size=16, page_size=7)
    await hub.start()

    async def produce(start: int, count: int) -> list[AppendResult]:
        placed = []
        for n in range(start, start + count, 5):
            batch = [draft(m, partition_key=f"k{m % 7}") for m in range(n, n + 5)]
            placed += await append(services, 100, *batch)
            await asyncio.sleep(0)
        return placed

    try:
        async with asyncio.timeout(LIMIT):
            before = await produce(0, 100)
            subscription = await hub.subscribe(100, start="earliest")
            producers = [asyncio.create_task(produce(s, 100)) for s in (100, 200, 300)]
            received = []
            while len(received) < 400:
                batch = await subscription.next_batch(5, limit=3)
                assert batch, "the subscription stalled"
                received += [d.event for d in batch]
                await asyncio.sleep(0)
            placed = before + [p for task in producers for p in await task]
            assert subscription.closed is None
            assert sorted(e.event_id for e in received) == sorted(p.event_id for p in placed)
            by_partition: dict[int, list[int]] = {}
            for event in received:
                by_partition.setdefault(event.partition, []).append(event.offset)
            for offsets in by_partition.values():
                assert offsets == list(range(len(offsets)))
            assert subscription.peak <= 16
            subscription.close()
    finally:
        await hub.stop()


async def test_live_events_during_a_backlog_are_not_lost(world: World) -> None:
    """Events appended while the subscriber is still reading its backlog (held, or beyond
    what it may hold, only remembered) arrive after it, even when nothing follows them."""
    services = world.services
    hub = LiveHub(services.db, services.event_log, queue_size=4)
    await hub.start()
    try:
        async with asyncio.timeout(LIMIT):
            backlog = await append(services, 100, *(draft(n, partition_key="p") for n in range(10)))
            subscription = await hub.subscribe(100, start="earliest")
            while not subscription.queue.full():  # noqa: ASYNC110 (a state, no event)
                await asyncio.sleep(0.01)
            live = [(await append(services, 100, draft(n, partition_key="p")))[0] for n in range(3)]
            assert subscription.catching_up
            received = await taken_ids(subscription, 13)
            assert received == [p.event_id for p in backlog + live]
            assert not subscription.catching_up
            subscription.close()
    finally:
        await hub.stop()


async def test_events_committed_while_the_layout_is_read_are_not_forgotten(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catching-up subscription hears of events the layout it is reading cannot see yet
    (they committed after its snapshot). Those positions are still to come, not gone: the
    subscription must read them before it goes live, even when nothing follows them."""
    services = world.services
    hub = LiveHub(services.db, services.event_log, queue_size=4, page_size=3)  # holds 2 live
    layouts = 0
    live: list[AppendResult] = []
    read_layout = live_module._layout

    async def layout_then_appends(*args: Any) -> Any:
        nonlocal layouts
        layout = await read_layout(*args)
        layouts += 1
        if layouts == 1:  # the snapshot is taken; these commit after it
            live.extend(
                await append(services, 100, *(draft(n, partition_key="p") for n in (3, 4, 5)))
            )
        return layout

    monkeypatch.setattr(live_module, "_layout", layout_then_appends)
    await hub.start()
    try:
        async with asyncio.timeout(LIMIT):
            backlog = await append(services, 100, *(draft(n, partition_key="p") for n in range(3)))
            subscription = await hub.subscribe(100, start="earliest")
            received = await taken_ids(subscription, 6)
            assert received == [p.event_id for p in backlog + live]
            subscription.close()
    finally:
        await hub.stop()


async def taken_ids(subscription: Subscription, count: int) -> list[str]:
    """The ids of the next ``count`` events the subscription delivers, in order; fails if
    none comes within five seconds (events were lost)."""
    received: list[str] = []
    while len(received) < count:
        batch = await subscription.next_batch(5)
        assert batch, "events were lost"
        received += [d.event.event_id for d in batch]
    return received


async def test_tenants_are_isolated_and_strangers_refused(world: World, serve: Any) -> None:
    node = await serve()
    async with asyncio.timeout(LIMIT), httpx.AsyncClient(base_url=node.http, timeout=5) as http:
        foreign = await http.get(PATH, params={"orgId": 100}, headers=world.headers["user_b"])
        assert foreign.status_code == 404
        assert foreign.json()["code"] == "NOT_FOUND"
        assert (await http.get(PATH)).status_code == 401
        bad_id = await http.get(PATH, headers={**world.headers["user_a"], "last-event-id": "x@y"})
        assert bad_id.status_code == 400
        bad_from = await http.get(PATH, params={"from": "middle"}, headers=world.headers["user_a"])
        assert bad_from.status_code == 400
        for headers, params, status in (
            (world.headers["user_b"], {"orgId": "100"}, 404),
            (world.headers["key_b"], {"orgId": "100"}, 404),
            ({}, {}, 401),
            ({"authorization": "Bearer nonsense"}, {}, 401),
            (world.headers["user_a"], {"lastEventId": "nope"}, 400),
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with ws(node, headers, **params):
                    pass
            assert refused.value.response.status_code == status
            assert orjson.loads(refused.value.response.body)["statusCode"] == status

        async with (
            ws(node, world.headers["key_b"]) as b,
            sse(node, world.headers["admin"], orgId="200") as admin,
        ):
            await append(world.services, 100, draft(1, "a.secret"))
            await append(world.services, 200, draft(2, "b.public"))
            assert (await b.event())["event"]["type"] == "b.public"
            assert (await admin.event()).event == "b.public"


async def test_an_id_beyond_the_log_does_not_hide_new_events(world: World, serve: Any) -> None:
    node = await serve()
    await append(world.services, 100, *(draft(n) for n in range(4)))
    beyond = (
        "default@0:999,1:999,2:999,3:999;gone@0:5,1:5,2:5,3:5"  # forged, or from a deleted stream
    )
    async with (
        asyncio.timeout(LIMIT),
        sse(node, {**world.headers["user_a"], "last-event-id": beyond}) as a,
    ):
        [new] = await append(world.services, 100, draft(4), stream="gone")
        assert (await a.event()).json()["id"] == new.event_id


async def test_events_removed_by_retention_are_skipped(world: World, serve: Any) -> None:
    node = await serve()
    placed = await append(world.services, 100, *(draft(n, partition_key="p") for n in range(6)))
    partition = placed[0].partition
    async with world.services.db.write() as conn:
        await queries.trim(conn, 100, "default", partition, 4)
    kept = [p.event_id for p in placed[4:]]
    headers = world.headers["user_a"]
    async with asyncio.timeout(LIMIT):
        async with sse(node, headers, **{"from": "earliest"}) as a:
            assert [f.json()["id"] for f in await a.events(2)] == kept
        async with sse(node, headers, lastEventId=f"default@{partition}:1") as b:
            assert [f.json()["id"] for f in await b.events(2)] == kept
            [live] = await append(world.services, 100, draft(6, partition_key="p"))
            assert (await b.event()).json()["id"] == live.event_id


async def test_subscriptions_per_tenant_are_limited(world: World) -> None:
    hub = LiveHub(world.services.db, world.services.event_log, max_per_tenant=2)
    first, second = await hub.subscribe(100), await hub.subscribe(100)
    with pytest.raises(RateLimitedError):
        await hub.subscribe(100)
    other = await hub.subscribe(200)
    second.close()
    third = await hub.subscribe(100)
    assert hub.count(100) == 2
    for subscription in (first, third, other):
        subscription.close()
    assert hub.count() == 0
    await hub.stop()


async def test_a_gap_the_listener_missed_is_read_from_the_log(world: World, serve: Any) -> None:
    node = await serve()
    log = world.services.event_log
    async with asyncio.timeout(LIMIT), sse(node, world.headers["user_a"]) as a:
        async with world.services.db.write() as conn:  # appended without telling listeners
            _, unheard = await log.append_in(conn, 100, [draft(1, partition_key="k")])
        [heard] = await append(world.services, 100, draft(2, partition_key="k"))
        frames = await a.events(2)
        assert [f.json()["id"] for f in frames] == [unheard[0].event_id, heard.event_id]


async def test_concurrent_appends_arrive_once_in_offset_order(world: World, serve: Any) -> None:
    node = await serve()
    async with asyncio.timeout(LIMIT), sse(node, world.headers["user_a"]) as a:
        await asyncio.gather(
            *(append(world.services, 100, draft(n, partition_key="same")) for n in range(30))
        )
        offsets = [f.json()["jboffset"] for f in await a.events(30)]
        assert offsets == list(range(30))
        [last] = await append(world.services, 100, draft(30, partition_key="same"))
        assert (await a.event()).json()["jboffset"] == last.offset == 30


async def test_events_published_over_http_reach_both_kinds_of_subscriber(
    world: World, serve: Any
) -> None:
    node = await serve()
    headers = world.headers["key_a"]
    async with (
        asyncio.timeout(LIMIT),
        sse(node, headers, types="order.*") as a,
        ws(node, headers, streams="orders") as b,
        httpx.AsyncClient(base_url=node.http, timeout=5) as http,
    ):
        body = {"type": "order.created", "data": {"id": 7}, "subject": "o-7"}
        published = await http.post(
            "/api/v1/integration/events/publish?stream=orders", json=body, headers=headers
        )
        assert published.status_code == 201, published.text
        event_id = published.json()["id"]
        by_sse, by_ws = (await a.event()).json(), (await b.event())["event"]
        assert by_sse["id"] == by_ws["id"] == event_id
        assert by_sse["data"] == by_ws["data"] == {"id": 7}
        assert by_sse["subject"] == "o-7"


async def test_events_appended_on_another_node_arrive_by_notify(
    backend: str, world: World, serve: Any, db_url: str, tmp_path: Path
) -> None:
    if backend != "postgres":
        pytest.skip("one process per SQLite database: there is no other node")
    node = await serve()
    assert node.hub.listening
    other = build_services(make_settings(db_url, tmp_path / "other"))  # its own pool, no hub
    try:
        async with (
            asyncio.timeout(LIMIT),
            sse(node, world.headers["user_a"]) as a,
            ws(node, world.headers["key_a"]) as b,
        ):
            placed = await append(other, 100, *(draft(n, partition_key="r") for n in range(3)))
            await append(other, 200, draft(9, "b.only"))
            expected = [p.event_id for p in placed]
            assert [f.json()["id"] for f in await a.events(3)] == expected
            assert [m["event"]["id"] for m in await b.events(3)] == expected
            [local] = await append(world.services, 100, draft(3, partition_key="r"))
            assert (await a.event()).json()["id"] == local.event_id  # once, not twice
            assert (await b.event())["event"]["id"] == local.event_id
    finally:
        await other.db.dispose()


async def test_openapi_documents_the_event_stream(world: World, serve: Any) -> None:
    node = await serve()
    async with httpx.AsyncClient(base_url=node.http) as http:
        spec = (await http.get("/openapi.json")).json()
    operation = spec["paths"][PATH]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"orgId", "streams", "types", "from", "lastEventId", "Last-Event-ID"} <= names


# --- pure parts ---


def test_cursors_round_trip_and_reject_foreign_ids() -> None:
    cursor = {"orders": {0: 17, 2: 4}, "default": {1: 0}, "empty": {}}
    text = encode_cursor(cursor)
    assert text == "default@1:0;orders@0:17,2:4"
    assert parse_cursor(text) == {"default": {1: 0}, "orders": {0: 17, 2: 4}}
    assert encode_cursor({}) == "-"
    assert parse_cursor("-") == {}
    for bad in ("orders", "orders@", "orders@a:1", "-x@0:1", "a@0:1;;b@0:1", "x" * 20_000):
        with pytest.raises(ValidationError):
            parse_cursor(bad)


def test_patterns_match_with_wildcards_only() -> None:
    types = Patterns.types(["order.*", "invoice.paid"])
    assert [types.match(t) for t in ("order.created", "invoice.paid")] == [True, True]
    assert [types.match(t) for t in ("invoice.paid.late", "orderXcreated")] == [False, False]
    assert Patterns.streams([]).match("anything")
    assert [Patterns.streams(["a*b"]).match(s) for s in ("a-long-b", "ab-")] == [True, False]
    with pytest.raises(ValidationError):
        Patterns.streams(["bad name"])
    with pytest.raises(ValidationError):
        Patterns.types([f"t{n}" for n in range(40)])
