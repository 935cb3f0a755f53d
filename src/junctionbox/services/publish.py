"""Publishing events over HTTP: parse, validate, append durably, answer idempotently.

The order matters. Whole-request problems (not JSON, wrong content type, too many events)
and per-event problems (envelope, registered schema) are found before any transaction, and
such refusals are not remembered under an ``Idempotency-Key`` (Stripe does the same): the
producer fixes the request and retries with the same key. An accepted request takes its key,
appends its events and saves its response in one transaction, so the response replayed later
is exactly the one that was acknowledged, and the events exist if and only if it does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.event_envelope import (
    EnvelopeLimits,
    Item,
    ItemProblem,
    ParsedPublish,
    parse_publish,
)
from junctionbox.domain.events import AppendResult, EventDraft, StoredEvent
from junctionbox.domain.identity import TenantContext
from junctionbox.errors import (
    ConflictError,
    FieldProblem,
    IdempotencyKeyReusedError,
    PayloadTooLargeError,
    UnprocessableError,
    ValidationError,
)
from junctionbox.observability.telemetry import Telemetry
from junctionbox.observability.tracing import stamp_traceparent
from junctionbox.services.append_coalescer import AppendCoalescer, commit_interval_for
from junctionbox.services.event_log import EventLog
from junctionbox.services.schema_registry import SchemaRegistry, entity_chain
from junctionbox.store.database import Database
from junctionbox.store.queries import idempotency
from junctionbox.store.types import utcnow

MAX_KEY_LENGTH = 255
_SIGNIFICANT_HEADERS = ("content-type",)


@dataclass(frozen=True)
class PublishRequest:
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    stream: str | None = None
    partial: bool = False
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PublishResponse:
    status: int
    body: bytes
    replayed: bool = False


class PublishService:
    def __init__(
        self,
        db: Database,
        event_log: EventLog,
        schemas: SchemaRegistry,
        *,
        limits: EnvelopeLimits,
        idempotency_ttl: timedelta = timedelta(hours=24),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry()
        self.db = db
        self.event_log = event_log
        self.schemas = schemas
        self.limits = limits
        self.idempotency_ttl = idempotency_ttl
        # Requests without an Idempotency-Key share write transactions (group commit); keyed
        # ones keep a transaction of their own with the key and the saved response.
        self.coalescer = AppendCoalescer(
            event_log, commit_interval=commit_interval_for(db.is_sqlite)
        )

    async def publish(self, tenant: TenantContext, request: PublishRequest) -> PublishResponse:
        if not self.telemetry.tracing.recording:
            # A span that records nothing would only repeat its parent's context (what
            # stamp_traceparent reads): not worth its cost on every publish.
            return await self._publish(tenant, request)
        attributes = {"tenant.id": tenant.org_id, "stream": request.stream}
        with self.telemetry.tracing.span("ingest", attributes=attributes) as span:
            response = await self._publish(tenant, request)
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status)
            return response

    async def _publish(self, tenant: TenantContext, request: PublishRequest) -> PublishResponse:
        key = _checked_key(request.idempotency_key)
        parsed = parse_publish(request.body, request.headers, self.limits)
        items = await self._validated(tenant, parsed)
        if not request.partial:
            _refuse_if_any_problem(items)
        drafts = [item for item in items if isinstance(item, EventDraft)]
        stamp_traceparent(d.extensions for d in drafts)
        if key is None:
            results = await self.coalescer.append(tenant.org_id, drafts, stream=request.stream)
            return _response(items, results, batch=parsed.batch, partial=request.partial)
        fingerprint = _fingerprint(tenant.org_id, request)

        async def work(conn: AsyncConnection) -> tuple[PublishResponse, list[StoredEvent]]:
            replay = await self._take_key(conn, tenant.org_id, key, fingerprint)
            if replay is not None:
                return replay, []
            results, stored = await self.event_log.append_in(
                conn, tenant.org_id, drafts, stream=request.stream
            )
            response = _response(items, results, batch=parsed.batch, partial=request.partial)
            await idempotency.save_response(
                conn, tenant.org_id, key, response.status, response.body
            )
            return response, stored

        response, stored = await self.event_log.write_retrying(work)
        self.event_log.notify(stored)
        return response

    async def _validated(self, tenant: TenantContext, parsed: ParsedPublish) -> list[Item]:
        """Each draft checked against its type's registered schema (if any)."""
        items = parsed.items
        drafts = [item for item in items if isinstance(item, EventDraft)]
        if not drafts:
            return items
        types = {d.type for d in drafts}
        validators = await self.schemas.validators_for(entity_chain(tenant), types)
        if not validators:
            return items
        checked: list[Item] = []
        for index, item in enumerate(items):
            validator = validators.get(item.type) if isinstance(item, EventDraft) else None
            if validator is None or not isinstance(item, EventDraft):
                checked.append(item)
                continue
            problems = _schema_problems(item, validator, f"{parsed.pointer(index)}/data")
            checked.append(problems or item)
        return checked

    async def _take_key(
        self, conn: AsyncConnection, org_id: int, key: str, fingerprint: str
    ) -> PublishResponse | None:
        """None when this request may execute; the earlier response when it must replay."""
        now = utcnow()
        if await idempotency.claim(conn, org_id, key, fingerprint, now, now + self.idempotency_ttl):
            return None
        earlier = await idempotency.get(conn, org_id, key)
        if earlier is None or earlier.expires_at <= now:
            await idempotency.forget(conn, org_id, key)
            await idempotency.claim(conn, org_id, key, fingerprint, now, now + self.idempotency_ttl)
            return None
        if earlier.request_hash != fingerprint:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used with a different request; use a new key"
            )
        if earlier.response_status == 0:
            raise ConflictError("a request with this Idempotency-Key is still being processed")
        return PublishResponse(earlier.response_status, earlier.response_body, replayed=True)

    async def purge_expired_keys(self, now: datetime | None = None) -> int:
        return await idempotency.purge_expired(self.db, now or utcnow())


def _checked_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            problems=[FieldProblem(("header", "Idempotency-Key"), "invalid")],
        )
    return key


def _fingerprint(org_id: int, request: PublishRequest) -> str:
    digest = hashlib.sha256()
    parts: list[Any] = [org_id, request.stream, request.partial]
    parts += [request.headers.get(name) for name in _SIGNIFICANT_HEADERS]
    parts += sorted((k, v) for k, v in request.headers.items() if k.startswith("ce-"))
    digest.update(orjson.dumps(parts))
    digest.update(request.body)
    return digest.hexdigest()


def _schema_problems(draft: EventDraft, validator: Any, where: str) -> list[ItemProblem]:
    if not draft.has_value:
        return [ItemProblem(where, f"{draft.type} has a registered schema: data must be JSON")]
    return [
        ItemProblem(f"{where}{pointer}", message)
        for pointer, message in validator.errors(draft.json_value())
    ]


def _refuse_if_any_problem(items: list[Item]) -> None:
    problems = [p for item in items if isinstance(item, list) for p in item]
    if not problems:
        return
    details = [FieldProblem(("body", p.pointer), p.message) for p in problems[:100]]
    if any(p.too_large for p in problems):
        raise PayloadTooLargeError(problems[0].message, problems=details)
    summary = f"{problems[0].pointer or '/'}: {problems[0].message}"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise UnprocessableError(
        f"event refused, nothing was stored: {summary}{more}", problems=details
    )


def _response(
    items: list[Item], results: Sequence[AppendResult], *, batch: bool, partial: bool
) -> PublishResponse:
    placed = iter(results)
    rows: list[dict[str, Any]] = []
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for index, item in enumerate(items):
        if isinstance(item, list):
            errors = [{"pointer": p.pointer, "message": p.message} for p in item]
            row: dict[str, Any] = {"index": index, "status": "rejected", "errors": errors}
        else:
            row = _placement(index, next(placed))
        counts[row["status"]] += 1
        rows.append(row)
    status = 201 if counts["accepted"] and not counts["rejected"] else 200
    if not batch and not partial:
        rows[0].pop("index")
        return PublishResponse(status, orjson.dumps(rows[0]))
    body = {
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "events": rows,
    }
    return PublishResponse(status, orjson.dumps(body))


def _placement(index: int, result: AppendResult) -> dict[str, Any]:
    return {
        "index": index,
        "status": "duplicate" if result.duplicate else "accepted",
        "id": result.event_id,
        "stream": result.stream,
        "partition": result.partition,
        "offset": result.offset,
    }
