"""``/api/v1/integration/events``: publish, streams, partitions, metrics, consumer groups."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import Field

from junctionbox.api.deps import PageDep, RequestTenantDep, ServicesDep, TenantDep
from junctionbox.api.schemas import ApiModel, RequestModel, as_utc
from junctionbox.domain.events import StoredEvent
from junctionbox.services.container import Services
from junctionbox.services.publish import PublishRequest
from junctionbox.services.replay import MAX_TYPE_PATTERNS, ReplayRequest, ReplayService
from junctionbox.services.streams import StreamInfo, StreamMetrics, StreamSettings
from junctionbox.store.queries.consumer_offsets import GroupPosition
from junctionbox.store.queries.events import EventFilter

router = APIRouter(prefix="/api/v1/integration/events", tags=["events"])

StreamName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
GroupName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


# --- publish ---


class PublishedEvent(ApiModel):
    status: Literal["accepted", "duplicate"]
    id: str
    stream: str
    partition: int
    offset: int


class PublishedItem(ApiModel):
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    id: str | None = None
    stream: str | None = None
    partition: int | None = None
    offset: int | None = None
    errors: list[dict[str, str]] | None = None


class PublishedBatch(ApiModel):
    accepted: int
    duplicates: int
    rejected: int
    events: list[PublishedItem]


_PUBLISH_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "object"}}
        for media in (
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        )
    },
    "description": (
        "One event {type, data, source?, subject?, id?, time?, stream?, partitionKey?}, a "
        "batch {events: [...]}, a CloudEvent (structured or batch), or a binary-mode "
        "CloudEvent (ce-* headers, the body is the data)."
    ),
}


@router.post(
    "/publish",
    summary="Publish one event or a batch (JSON, CloudEvents structured, batch or binary)",
    status_code=201,
    response_model=PublishedEvent | PublishedBatch,
    responses={
        200: {
            "model": PublishedEvent | PublishedBatch,
            "description": "Duplicates only, or per-item results with ?partial=true",
        }
    },
    openapi_extra={"requestBody": _PUBLISH_BODY},
)
async def publish(
    request: Request,
    tenant: RequestTenantDep,
    stream: Annotated[
        StreamName | None, Query(description="Stream for events that name none.")
    ] = None,
    partial: Annotated[bool, Query(description="Accept the valid events of a batch.")] = False,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    svc: Services = request.app.state.services
    outcome = await svc.publisher.publish(
        tenant,
        PublishRequest(
            body=await request.body(),
            headers={k.lower(): v for k, v in request.headers.items()},
            stream=stream,
            partial=partial,
            idempotency_key=idempotency_key,
        ),
    )
    headers = {"idempotent-replayed": "true"} if outcome.replayed else {}
    return Response(outcome.body, outcome.status, headers, media_type="application/json")


# --- streams ---


class PartitionOut(ApiModel):
    partition: int
    first_offset: int
    next_offset: int
    event_count: int
    byte_count: int


class StreamOut(ApiModel):
    stream_id: str
    description: str | None
    partition_count: int
    retention_seconds: int | None
    retention_bytes: int | None
    event_count: int
    byte_count: int
    partitions: list[PartitionOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, info: StreamInfo) -> StreamOut:
        s = info.stream
        return cls(
            stream_id=s.name,
            description=s.description,
            partition_count=s.partition_count,
            retention_seconds=s.retention_seconds,
            retention_bytes=s.retention_bytes,
            event_count=info.event_count,
            byte_count=info.byte_count,
            partitions=[PartitionOut.model_validate(p) for p in info.partitions],
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class EventOut(ApiModel):
    """An event as a CloudEvent, with its place in the log."""

    id: str
    source: str
    type: str
    subject: str | None
    time: datetime | None
    received_at: datetime
    stream: str
    partition: int
    offset: int
    partition_key: str | None
    datacontenttype: str | None
    dataschema: str | None
    extensions: dict[str, Any]
    data: Any
    size: int

    @classmethod
    def of(cls, event: StoredEvent) -> EventOut:
        return cls(
            id=event.event_id,
            source=event.source,
            type=event.type,
            subject=event.subject,
            time=event.time,
            received_at=event.received_at,
            stream=event.stream,
            partition=event.partition,
            offset=event.offset,
            partition_key=event.partition_key,
            datacontenttype=event.data_content_type,
            dataschema=event.data_schema,
            extensions=event.extensions,
            data=event.data(),
            size=event.size,
        )


class StreamEventsOut(ApiModel):
    stream: StreamOut
    events: list[EventOut]
    total: int
    page: int
    limit: int
    has_more: bool


class StreamList(ApiModel):
    streams: list[StreamOut]


@router.get("/streams", response_model=StreamList, summary="The tenant's streams")
async def list_streams(tenant: TenantDep, svc: ServicesDep) -> StreamList:
    return StreamList(streams=[StreamOut.of(i) for i in await svc.streams.all(tenant)])


@router.get(
    "/stream/{streamId}",
    response_model=StreamEventsOut,
    summary="Read a stream by offset range or time range",
)
async def read_stream(
    tenant: TenantDep,
    svc: ServicesDep,
    page: PageDep,
    stream_id: Annotated[str, Path(alias="streamId")],
    partition: Annotated[int | None, Query(ge=0)] = None,
    from_offset: Annotated[int | None, Query(alias="fromOffset", ge=0)] = None,
    to_offset: Annotated[int | None, Query(alias="toOffset", ge=0)] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    type_: Annotated[
        list[str] | None, Query(alias="type", description="Exact type, or a prefix ending in *.")
    ] = None,
) -> StreamEventsOut:
    exact, prefixes = _type_patterns(type_ or [])
    where = EventFilter(
        org_id=tenant.org_id,
        stream=stream_id,
        partition=partition,
        from_offset=from_offset,
        to_offset=to_offset,
        since=as_utc(since),
        until=as_utc(until),
        types=exact,
        type_prefixes=prefixes,
    )
    by_time = partition is None or since is not None or until is not None
    info, found = await svc.streams.read(tenant, where, page, by_time=by_time)
    return StreamEventsOut(
        stream=StreamOut.of(info),
        events=[EventOut.of(e) for e in found.items],
        total=found.total,
        page=page.page,
        limit=page.limit,
        has_more=found.has_more,
    )


class PartitionIn(RequestModel):
    stream_id: StreamName
    partition_count: int = Field(ge=1, le=1024)
    retention_seconds: int | None = Field(None, ge=60)
    retention_bytes: int | None = Field(None, ge=1024)
    description: str | None = Field(None, max_length=2000)


@router.put(
    "/partition",
    response_model=StreamOut,
    summary="Create a stream or change its partitions and retention",
    responses={201: {"model": StreamOut, "description": "Created"}},
)
async def configure_stream(
    body: PartitionIn, tenant: TenantDep, svc: ServicesDep, response: Response
) -> StreamOut:
    settings = StreamSettings(
        body.partition_count, body.retention_seconds, body.retention_bytes, body.description
    )
    info, created = await svc.streams.configure(tenant, body.stream_id, settings)
    response.status_code = 201 if created else 200
    return StreamOut.of(info)


@router.delete("/stream/{streamId}", status_code=204, summary="Delete a stream and all its events")
async def delete_stream(
    tenant: TenantDep, svc: ServicesDep, stream_id: Annotated[str, Path(alias="streamId")]
) -> Response:
    await svc.streams.delete(tenant, stream_id)
    return Response(status_code=204)


# --- metrics ---


class GroupPositionOut(ApiModel):
    group: str
    stream: str
    partition: int
    committed_offset: int
    next_offset: int
    lag: int
    updated_at: datetime

    @classmethod
    def of(cls, position: GroupPosition) -> GroupPositionOut:
        return cls(
            group=position.group_name,
            stream=position.stream,
            partition=position.partition,
            committed_offset=position.committed_offset,
            next_offset=position.next_offset,
            lag=position.lag,
            updated_at=position.updated_at,
        )


class StreamMetricsOut(ApiModel):
    stream_id: str
    partition_count: int
    events: int
    bytes: int
    events_last_minute: int
    events_last_hour: int
    rate_per_second: float
    consumer_lag: dict[str, int]
    consumer_groups: list[GroupPositionOut]

    @classmethod
    def of(cls, metrics: StreamMetrics) -> StreamMetricsOut:
        lag: dict[str, int] = {}
        for position in metrics.groups:
            lag[position.group_name] = lag.get(position.group_name, 0) + position.lag
        return cls(
            stream_id=metrics.info.stream.name,
            partition_count=metrics.info.stream.partition_count,
            events=metrics.info.event_count,
            bytes=metrics.info.byte_count,
            events_last_minute=metrics.events_last_minute,
            events_last_hour=metrics.events_last_hour,
            rate_per_second=round(metrics.events_last_minute / 60, 3),
            consumer_lag=lag,
            consumer_groups=[GroupPositionOut.of(p) for p in metrics.groups],
        )


class MetricsOut(ApiModel):
    streams: list[StreamMetricsOut]


@router.get("/metrics", response_model=MetricsOut, summary="Events, bytes, rate and lag per stream")
async def stream_metrics(
    tenant: TenantDep,
    svc: ServicesDep,
    stream_id: Annotated[str | None, Query(alias="streamId")] = None,
) -> MetricsOut:
    found = await svc.streams.metrics(tenant, stream_id)
    return MetricsOut(streams=[StreamMetricsOut.of(m) for m in found])


# --- consumer groups ---


class GroupsOut(ApiModel):
    positions: list[GroupPositionOut]


class GroupReadIn(RequestModel):
    stream_id: StreamName
    limit: int = Field(100, ge=1, le=1000)


class GroupReadOut(ApiModel):
    events: list[EventOut]
    next_offsets: dict[int, int] = Field(description="Commit these once the events are processed.")


class GroupCommitIn(RequestModel):
    stream_id: StreamName
    offsets: dict[int, int] = Field(description="partition -> next offset to read")


class GroupSeekIn(RequestModel):
    stream_id: StreamName
    to: Literal["earliest", "latest"] | datetime


@router.get("/consumer-groups", response_model=GroupsOut, summary="Committed offsets and lag")
async def list_groups(
    tenant: TenantDep, svc: ServicesDep, group: Annotated[str | None, Query()] = None
) -> GroupsOut:
    return GroupsOut(
        positions=[GroupPositionOut.of(p) for p in await svc.streams.groups(tenant, group)]
    )


@router.post(
    "/consumer-groups/{group}/read",
    response_model=GroupReadOut,
    summary="Read from the group's committed offsets (does not commit)",
)
async def group_read(
    body: GroupReadIn, group: str, tenant: TenantDep, svc: ServicesDep
) -> GroupReadOut:
    found, following = await svc.streams.group_read(tenant, group, body.stream_id, body.limit)
    return GroupReadOut(events=[EventOut.of(e) for e in found], next_offsets=following)


@router.post("/consumer-groups/{group}/commit", response_model=GroupsOut, summary="Commit offsets")
async def group_commit(
    body: GroupCommitIn, group: str, tenant: TenantDep, svc: ServicesDep
) -> GroupsOut:
    found = await svc.streams.group_commit(tenant, group, body.stream_id, body.offsets)
    return GroupsOut(positions=[GroupPositionOut.of(p) for p in found])


@router.post("/consumer-groups/{group}/seek", response_model=GroupsOut, summary="Move a group")
async def group_seek(
    body: GroupSeekIn, group: str, tenant: TenantDep, svc: ServicesDep
) -> GroupsOut:
    to = as_utc(body.to) if isinstance(body.to, datetime) else body.to
    found = await svc.streams.group_seek(tenant, group, body.stream_id, to)  # type: ignore[arg-type]
    return GroupsOut(positions=[GroupPositionOut.of(p) for p in found])


@router.delete("/consumer-groups/{group}", status_code=204, summary="Forget a consumer group")
async def group_delete(
    group: str,
    tenant: TenantDep,
    svc: ServicesDep,
    stream_id: Annotated[str | None, Query(alias="streamId")] = None,
) -> Response:
    await svc.streams.group_delete(tenant, group, stream_id)
    return Response(status_code=204)


# --- replay ---


class ReplayIn(RequestModel):
    """Which stored events to dispatch again: an offset range or a time range."""

    stream: StreamName
    partition: int | None = Field(None, ge=0, description="One partition (default: all).")
    from_offset: int | None = Field(None, ge=0, description="First offset (per partition).")
    to_offset: int | None = Field(None, ge=0, description="Last offset, inclusive.")
    from_time: datetime | None = Field(None, description="Received at or after.")
    to_time: datetime | None = Field(None, description="Received at or before.")
    event_types: list[Annotated[str, Field(max_length=202)]] = Field(
        default_factory=list,
        max_length=MAX_TYPE_PATTERNS,
        description="Exact types, prefix patterns such as order.*, or *.",
    )
    integration_id: str | None = Field(
        None, min_length=1, max_length=40, description="Only this integration (default: all)."
    )
    dry_run: bool = Field(False, description="Count, enqueue nothing.")


class ReplayOut(ApiModel):
    replay_id: str | None = Field(description="Correlates the replayed deliveries; null if dry.")
    dry_run: bool
    events: int = Field(description="Events in the range (of the types asked for).")
    deliveries: int = Field(description="Deliveries enqueued (or that would be).")


@router.post(
    "/replay",
    response_model=ReplayOut,
    status_code=202,
    summary="Dispatch stored events again (by offset or time range)",
    responses={200: {"model": ReplayOut, "description": "Dry run: counts only"}},
)
async def replay_events(
    body: ReplayIn, tenant: TenantDep, svc: ServicesDep, response: Response
) -> ReplayOut:
    request = ReplayRequest(
        stream=body.stream,
        partition=body.partition,
        from_offset=body.from_offset,
        to_offset=body.to_offset,
        from_time=as_utc(body.from_time),
        to_time=as_utc(body.to_time),
        event_types=tuple(body.event_types),
        integration_id=body.integration_id,
        dry_run=body.dry_run,
    )
    result = await ReplayService(svc.db, svc.queue).replay(tenant, request)
    if result.dry_run:
        response.status_code = 200
    return ReplayOut(
        replay_id=result.replay_id,
        dry_run=result.dry_run,
        events=result.events,
        deliveries=result.deliveries,
    )


def _type_patterns(patterns: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    exact = tuple(p for p in patterns if not p.endswith("*"))
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
    return exact, prefixes
