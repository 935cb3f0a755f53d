"""Receiving a partner's webhook: find the source, verify the sender, append the event.

The order of the checks is the order of the answers: unknown or disabled source -> 404,
body over the source's limit -> 413, verification (signature, credentials, timestamp
within the tolerance) -> 401 with one generic message, body not JSON where JSON is needed
-> 400, type refused by its registered schema -> 422, a message id already received with a
different body (or at all, with ``rejectDuplicates``) -> 409. Then, in ONE transaction:
the message id is recorded in the replay store, the raw body bytes are appended to the event
log (the sender's message id is the event id) and the inbound log line is written; the 2xx
is sent after the commit, so an acknowledged webhook is durable. Outbound integrations fire
from the log, as for published events.

A re-sent webhook (same message id, same body) is acknowledged with 200 and the id of the
event stored the first time, and nothing is stored again. Two copies arriving at once: the
replay store's primary key lets one transaction record the message; on PostgreSQL the
other waits for it and then answers the duplicate; on SQLite writers are serialised.

Refusals of a known source are written to the inbound log too (with the precise reason,
which the sender is not told), in a transaction of their own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import AttemptStatus, Trigger
from junctionbox.domain.events import (
    JSON_CONTENT_TYPE,
    EventDraft,
    StoredEvent,
    is_json_content_type,
)
from junctionbox.domain.ids import new_id
from junctionbox.domain.webhook_sources import (
    WebhookSourceConfig,
    active_secrets,
    config_from_json,
    event_type_of,
    logged_headers,
    message_id_of,
    parse_json,
)
from junctionbox.domain.webhook_verification import Scheme, VerificationFailed, verify
from junctionbox.errors import (
    ConflictError,
    FieldProblem,
    JunctionboxError,
    MalformedBodyError,
    NotFoundError,
    UnprocessableError,
)
from junctionbox.observability.telemetry import Telemetry
from junctionbox.observability.tracing import stamp_traceparent, trace_ids
from junctionbox.services.event_log import EventLog
from junctionbox.services.schema_registry import SchemaRegistry
from junctionbox.services.webhook_sources import WebhookSourceService
from junctionbox.store.database import Database
from junctionbox.store.queries import webhook_sources as queries
from junctionbox.store.queries.delivery_attempts import AttemptRow
from junctionbox.store.queries.log_batches import insert_log_rows
from junctionbox.store.queries.webhook_sources import SourceRow
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

DIRECTION = "INBOUND"
RECEIVE_PATH = "/api/v1/webhooks/{source_id}"
SOURCE_PREFIX = "webhook:"


@dataclass(frozen=True)
class InboundRequest:
    source_id: str
    headers: Mapping[str, str]  # lower-case names
    read_body: Callable[[int], Awaitable[bytes]]  # reads at most n bytes or raises 413


@dataclass(frozen=True)
class Accepted:
    status: int  # 202 stored now, 200 a re-sent message already stored
    event_id: str
    stream: str
    partition: int
    offset: int

    @property
    def duplicate(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class _Refused:
    error: JunctionboxError


@dataclass(frozen=True)
class _Parsed:
    draft: EventDraft
    body_sha256: str


class WebhookIntake:
    def __init__(
        self,
        db: Database,
        event_log: EventLog,
        schemas: SchemaRegistry,
        sources: WebhookSourceService,
        *,
        replay_ttl: timedelta,
        clock: Callable[[], datetime] = utcnow,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.db = db
        self.telemetry = telemetry or Telemetry()
        self.event_log = event_log
        self.schemas = schemas
        self.sources = sources
        self.replay_ttl = replay_ttl
        self.clock = clock

    async def receive(self, request: InboundRequest) -> Accepted:
        """Receive within a ``webhook.receive`` span (a child of the server span, which
        continues the sender's ``traceparent``), counted by outcome."""
        attributes = {"webhook.source.id": request.source_id}
        metrics = self.telemetry.metrics
        with self.telemetry.tracing.span("webhook.receive", attributes=attributes) as span:
            try:
                accepted = await self._receive(request)
            except JunctionboxError as exc:
                metrics.webhook_received("refused", exc.code)
                if span.is_recording():
                    span.set_attribute("webhook.outcome", "refused")
                    span.set_attribute("webhook.refused.reason", exc.code)
                raise
            outcome = "duplicate" if accepted.duplicate else "accepted"
            metrics.webhook_received(outcome)
            if span.is_recording():
                span.set_attribute("webhook.outcome", outcome)
                span.set_attribute("event.id", accepted.event_id)
            return accepted

    async def _receive(self, request: InboundRequest) -> Accepted:
        started = time.perf_counter()
        async with self.db.read() as conn:
            found = await queries.source_for_receipt(conn, request.source_id)
        if found is None:
            raise NotFoundError("webhook source not found")
        row, parent_id = found
        body: bytes | None = None
        try:
            if not row.is_active:
                raise NotFoundError("webhook source not found")
            config = config_from_json(row.config, max_body_limit=1 << 40)
            body = await request.read_body(config.max_body_bytes)
            return await self._accept(row, parent_id, config, request, body, started)
        except JunctionboxError as exc:
            await self._log_refusal(row, request, body, exc, started)
            raise

    async def purge_expired(self, now: datetime | None = None) -> int:
        return await queries.purge_expired(self.db, now or self.clock())

    # --- the steps ---

    async def _accept(
        self,
        row: SourceRow,
        parent_id: int | None,
        config: WebhookSourceConfig,
        request: InboundRequest,
        body: bytes,
        started: float,
    ) -> Accepted:
        now = self.clock()
        secrets = active_secrets(self.sources.open_secrets(row), now)
        verified = verify(
            config.verifier,
            request.headers,
            body,
            secrets,
            now=now.timestamp(),
            tolerance=config.tolerance_seconds,
        )
        parsed = self._parse(
            row, config, request.headers, body, verified.message_id, verified.timestamp
        )
        await self._check_schema(row.org_id, parent_id, parsed.draft)
        outcome, stored = await self.event_log.write_retrying(
            lambda conn: self._store(conn, row, config, request, parsed, started)
        )
        if isinstance(outcome, _Refused):
            raise outcome.error
        self.event_log.notify(stored)
        return outcome

    def _parse(
        self,
        row: SourceRow,
        config: WebhookSourceConfig,
        headers: Mapping[str, str],
        body: bytes,
        verified_id: str | None,
        timestamp: int | None,
    ) -> _Parsed:
        content_type = headers.get("content-type")
        document, is_json = _document(config, content_type, body)
        event_type = event_type_of(config, headers, document)
        message_id = message_id_of(config, headers, document, verified_id)
        if is_json:
            content_type = content_type or JSON_CONTENT_TYPE
        elif content_type is None and body:
            content_type = "application/octet-stream"
        draft = EventDraft(
            type=event_type,
            payload=body,
            value=document,
            has_value=is_json,
            event_id=message_id,
            source=SOURCE_PREFIX + row.id,
            time=datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None,
            stream=config.stream,
            data_content_type=content_type,
            extensions={"jbwebhooksource": row.id},
        )
        # The receive span's context (or the sender's traceparent, tracing off) goes with
        # the event, as publish does: the deliveries continue the sender's trace.
        stamp_traceparent([draft.extensions])
        return _Parsed(draft, hashlib.sha256(body).hexdigest())

    async def _check_schema(self, org_id: int, parent_id: int | None, draft: EventDraft) -> None:
        chain = (org_id,) if parent_id is None else (org_id, parent_id)
        validators = await self.schemas.validators_for(chain, {draft.type})
        validator = validators.get(draft.type)
        if validator is None:
            return
        if not draft.has_value:
            raise UnprocessableError(f"{draft.type} has a registered schema: the body must be JSON")
        errors = validator.errors(draft.value)
        if errors:
            problems = [FieldProblem(("body", pointer), message) for pointer, message in errors]
            pointer, message = errors[0]
            raise UnprocessableError(
                f"the body does not match the schema of {draft.type}: {pointer or '/'}: {message}",
                problems=problems,
            )

    async def _store(
        self,
        conn: AsyncConnection,
        row: SourceRow,
        config: WebhookSourceConfig,
        request: InboundRequest,
        parsed: _Parsed,
        started: float,
    ) -> tuple[Accepted | _Refused, list[StoredEvent]]:
        draft = parsed.draft
        refused = await self._claim(conn, row, config, draft.event_id, parsed.body_sha256)
        if refused is not None:
            return refused, []
        results, stored = await self.event_log.append_in(conn, row.org_id, [draft])
        result = results[0]
        accepted = Accepted(
            200 if result.duplicate else 202,
            result.event_id,
            result.stream,
            result.partition,
            result.offset,
        )
        line = self._line(row, request, draft.payload, started, status=accepted.status)
        line.event_id, line.event_type = accepted.event_id, draft.type
        line.status, line.delivered_at = AttemptStatus.SUCCESS.value, line.created_at
        if accepted.duplicate:
            line.error_message = "duplicate: this message was already received; nothing stored"
        await insert_log_rows(conn, [line])
        return accepted, stored

    async def _claim(
        self,
        conn: AsyncConnection,
        row: SourceRow,
        config: WebhookSourceConfig,
        message_id: str | None,
        body_sha256: str,
    ) -> _Refused | None:
        """Record the message id in the replay store; a refusal when it may not pass."""
        if message_id is None:
            return None
        now = self.clock()
        values: dict[str, Any] = {
            "source_id": row.id,
            "message_id": message_id,
            "org_id": row.org_id,
            "event_id": message_id,
            "body_sha256": body_sha256,
            "now": now,
            "expires_at": now + self.replay_ttl,
        }
        if await queries.claim_message(conn, **values):
            return None
        earlier = await queries.get_receipt(conn, row.id, message_id)
        if earlier is None or earlier.expires_at <= now:  # expired: remember it afresh
            await queries.forget_receipt(conn, row.id, message_id)
            await queries.claim_message(conn, **values)
            return None
        if earlier.body_sha256 != body_sha256:
            return _Refused(ConflictError("this message id was already received with another body"))
        if config.reject_duplicates:
            return _Refused(ConflictError("this message id was already received"))
        return None  # a re-send: the log answers it as a duplicate

    # --- the inbound log ---

    def _line(
        self,
        row: SourceRow,
        request: InboundRequest,
        body: bytes | None,
        started: float,
        *,
        status: int,
    ) -> AttemptRow:
        config_secret_header = (row.config.get("verification") or {}).get("header")
        now = self.clock()
        return AttemptRow(
            id=new_id("dlv"),
            org_id=row.org_id,
            integration_id=row.id,
            integration_name=row.name,
            delivery_id=None,
            job_id=None,
            event_id=None,
            event_type=None,
            status=AttemptStatus.FAILED.value,
            target_url=RECEIVE_PATH.format(source_id=row.id),
            http_method="POST",
            response_status=status,
            response_time_ms=int((time.perf_counter() - started) * 1000),
            attempt_count=1,
            error_message=None,
            error_category=None,
            original_payload=body,
            request_headers=logged_headers(
                request.headers, [config_secret_header] if config_secret_header else []
            ),
            request_body=None,
            response_headers=None,
            response_body=None,
            correlation_id=_message_hint(request.headers),
            trace_id=_trace_id(),
            signature=None,
            trigger_type=Trigger.EVENT.value,
            action_name=None,
            action_index=None,
            should_retry=False,
            steps=None,
            created_at=now,
            delivered_at=None,
            direction=DIRECTION,
        )

    async def _log_refusal(
        self,
        row: SourceRow,
        request: InboundRequest,
        body: bytes | None,
        exc: JunctionboxError,
        started: float,
    ) -> None:
        line = self._line(row, request, body, started, status=exc.status)
        line.error_message = exc.reason if isinstance(exc, VerificationFailed) else exc.message
        line.error_category = exc.code
        try:
            async with self.db.write() as conn:
                await insert_log_rows(conn, [line])
        except Exception:  # the refusal stands whether or not its log line could be written
            log.exception("could not log a refused webhook")


def _document(
    config: WebhookSourceConfig, content_type: str | None, body: bytes
) -> tuple[Any, bool]:
    """(the parsed body, whether it is JSON). JSON is required when the source reads the
    type or id from it, or when the sender says it is JSON; an unlabelled body that is not
    JSON is kept as bytes."""
    if config.needs_json:
        return parse_json(body, orjson.loads), True
    if not body:
        return None, False
    if content_type is not None and not is_json_content_type(content_type):
        return None, False
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError:
        if content_type is None:
            return None, False
        raise MalformedBodyError("the body is not valid JSON, as its content type says") from None


def _trace_id() -> str | None:
    found = trace_ids()
    return found[0] if found is not None else None


def _message_hint(headers: Mapping[str, str]) -> str | None:
    for name in ("webhook-id", "svix-id", "x-github-delivery", "x-request-id"):
        if headers.get(name):
            return headers[name][:100]
    return None


__all__ = ["Accepted", "InboundRequest", "Scheme", "WebhookIntake"]
