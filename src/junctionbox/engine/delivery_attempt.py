"""One delivery attempt through the resilience stack, without touching the database.

    rate limit ─► circuit breaker ─► build (transform, auth, sign) ─► send with timeout
      │ no token      │ open                                             │
      ▼               ▼                                                  ▼
    DEFER (no attempt spent)                       classify ─► plan (retry policy) ─► outcome

:meth:`AttemptRunner.run` returns an :class:`AttemptOutcome`: what to do with the job
(deliver, retry at, dead-letter, disable, skip, defer) and the ``delivery_logs`` row that
records the attempt, with the step-by-step trace the execution logs show. The committer
(:mod:`junctionbox.engine.delivery_commit`) writes it; nothing here is durable, so a crash
at any point before that commit only means the job is claimed and sent again (same
``webhook-id``).

Breaker bookkeeping: only transient failures (network errors, timeouts, 408, 429, 5xx)
count against a destination; any other answer proves it is up. OAuth2: a 401 drops the
cached token and the request is built and sent once more within the same attempt.
"""

from __future__ import annotations

import http
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from opentelemetry import trace as otel_trace
from opentelemetry.trace import Span, SpanKind

from junctionbox.connectors.destinations.base import (
    Destination,
    DestinationError,
    DestinationRefusedError,
    DestinationResult,
)
from junctionbox.domain.delivery import AttemptStatus, DeliveryJob
from junctionbox.domain.events import StoredEvent
from junctionbox.domain.ids import new_id_of
from junctionbox.domain.outbound import AuthType
from junctionbox.domain.retry import (
    Classification,
    Decision,
    NextAction,
    RetryPolicy,
    classify,
    plan_next,
)
from junctionbox.engine.delivery_prefetch import Prepared, ProblemKind, Ready
from junctionbox.errors import ExpressionRuntimeError, JunctionboxError
from junctionbox.observability import context as log_context
from junctionbox.observability.telemetry import Telemetry
from junctionbox.observability.tracing import (
    Tracing,
    fresh_trace_id,
    mark_error,
    outbound_traceparent,
)
from junctionbox.queue.jobs import Job
from junctionbox.services.breakers import Breakers
from junctionbox.services.outbound_request import PreparedRequest, RequestBuilder, with_header
from junctionbox.services.outgoing_auth import OAuthTokenError
from junctionbox.services.rate_limits import RateLimiter
from junctionbox.store.queries.delivery_attempts import (
    MAX_LOGGED_BYTES,
    MAX_LOGGED_URL_BYTES,
    AttemptRow,
    cap_text,
)

# errorCategory values beyond domain.retry.ErrorCategory (the column is free text).
TRANSFORM_ERROR: Final = "TRANSFORM_ERROR"
CONFIG_ERROR: Final = "CONFIG_ERROR"
AUTH_ERROR: Final = "AUTH_ERROR"
DESTINATION_REFUSED: Final = "DESTINATION_REFUSED"
CIRCUIT_OPEN: Final = "CIRCUIT_OPEN"
INTERNAL_ERROR: Final = "INTERNAL_ERROR"
# The job's ``last_error`` while it waits for an open circuit: the attempt row saying so is
# written the first time only, not at every look.
CIRCUIT_NOTE: Final = "circuit open: waiting for the destination to recover"
RATE_NOTE: Final = "rate limited: waiting for a token"
BUSY_NOTE: Final = "destination busy: waiting for a free slot"
_BREAKER_JITTER: Final = 0.2  # spread jobs released by a reopening circuit


class Disposition(StrEnum):
    DELIVERED = "DELIVERED"
    RETRY = "RETRY"
    DEAD_LETTER = "DEAD_LETTER"
    DISABLE = "DISABLE"  # 410 Gone: dead-letter and switch the integration off
    SKIP = "SKIP"  # nothing to deliver: complete the job
    DEFER = "DEFER"  # not sent: back to the queue at run_at, the attempt not spent
    RELEASE = "RELEASE"  # not run (shutdown): back to the queue now, the attempt not spent


FINAL_DISPOSITIONS: Final = frozenset(
    {Disposition.DELIVERED, Disposition.DEAD_LETTER, Disposition.DISABLE, Disposition.SKIP}
)


@dataclass(slots=True, eq=False)
class AttemptOutcome:
    """What one attempt decided (made per delivery: not frozen, treat as immutable)."""

    prepared: Prepared
    disposition: Disposition
    run_at: datetime | None = None  # RETRY and DEFER
    row: AttemptRow | None = None
    error: str | None = None
    error_category: str | None = None
    response_status: int | None = None
    note: str | None = None  # DEFER: why the job waits (kept as its last_error)
    counts_toward_disable: bool = False  # a final failure the integration is to blame for

    @property
    def job_id(self) -> str:
        return self.prepared.job.id

    @property
    def delivery(self) -> DeliveryJob | None:
        return self.prepared.delivery


def defer(prepared: Prepared, run_at: float, note: str) -> AttemptOutcome:
    return AttemptOutcome(prepared, Disposition.DEFER, _utc(run_at), note=note)


def release(prepared: Prepared) -> AttemptOutcome:
    return AttemptOutcome(prepared, Disposition.RELEASE, datetime.now(UTC))


def crashed(prepared: Prepared, exc: BaseException) -> AttemptOutcome:
    """An attempt that raised unexpectedly (a bug, not the destination): it counts as a
    failed attempt, retried within the job's ceiling and then dead-lettered, visibly."""
    job, now = prepared.job, time.time()
    message = f"internal error ({type(exc).__name__}); see the worker's log"
    last = job.attempts >= job.max_attempts
    disposition = Disposition.DEAD_LETTER if last else Disposition.RETRY
    run_at = None if last else _utc(now + min(60.0, 2.0**job.attempts))
    row = None
    if prepared.delivery is not None:
        row = _bare_row(prepared, prepared.delivery, message, INTERNAL_ERROR)
        if not last:
            row = replace(row, status=AttemptStatus.RETRYING.value, should_retry=True)
    return AttemptOutcome(prepared, disposition, run_at, row, message, INTERNAL_ERROR)


class _Trace:
    """The execution trace of one attempt (``delivery_logs.steps``): each step's name,
    status, start (``offsetMs`` after the attempt's ``createdAt``), duration and details.

    Kept cheap, it is made for every attempt: callers pass strings that may be long or
    foreign (errors, the curl command) through ``cap_text`` themselves.
    """

    __slots__ = ("origin", "requests", "steps", "trace_id", "traceparent")

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.steps: list[dict[str, Any]] = []
        # Each request step's detail and its request: the curl command is added once the
        # row is known, unless the row's own columns give it back (see _keeps_curl).
        self.requests: list[tuple[dict[str, Any], PreparedRequest]] = []
        # The W3C trace context the request carries; its trace id is the row's.
        self.traceparent: str | None = None
        self.trace_id: str | None = None

    def add(self, name: str, state: str, started: float, **detail: Any) -> dict[str, Any]:
        """Record a step; its detail (the dict stored)."""
        if None in detail.values():  # a scan in C; most steps have some detail left out
            detail = {k: v for k, v in detail.items() if v is not None}
        self.steps.append(
            {
                "step": name,
                "status": state,
                "offsetMs": round((started - self.origin) * 1000, 3),
                "durationMs": round((time.time() - started) * 1000, 3),
                "detail": detail,
            }
        )
        return detail

    def add_curls(self, logged: PreparedRequest | None) -> None:
        """Each request step's curl command, but for the request the row logs when its
        columns give the command back (the log's reader rebuilds it: about 1 KiB less to
        build, encode and store per attempt)."""
        for detail, request in self.requests:
            if request is not logged or not row_gives_curl(request):
                detail["curl"] = cap_text(request.curl(masked=True))


@dataclass(slots=True, eq=False)
class _Sent:
    """How the attempt went (the last request of it, after an OAuth2 refresh)."""

    classification: Classification
    request: PreparedRequest | None = None
    result: DestinationResult | None = None
    error: str | None = None
    category: str | None = None
    went_out: bool = False  # a request reached the network (it counts for the breaker)


def _not_sent(
    message: str, category: str, *, retry: bool = False, request: PreparedRequest | None = None
) -> _Sent:
    """Nothing was sent (or nothing could be): a permanent failure unless ``retry``."""
    return _Sent(
        Classification(Decision.RETRY if retry else Decision.FAIL), request, None, message, category
    )


class AttemptRunner:
    """Runs attempts; shared by every job of a worker (not thread-safe: one event loop)."""

    def __init__(
        self,
        requests: RequestBuilder,
        destination: Destination,
        limiter: RateLimiter,
        breakers: Breakers,
        *,
        random: Callable[[], float] = _random.random,
        log_circuit_open: bool = True,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry()
        self.requests = requests
        self.destination = destination
        self.limiter = limiter
        self.breakers = breakers
        self.random = random
        self.log_circuit_open = log_circuit_open

    async def run(self, prepared: Prepared) -> AttemptOutcome:
        ready = prepared.ready
        if ready is None:
            return self.unrunnable(prepared)
        now = time.time()
        permit = self.limiter.acquire(ready.stored.id, ready.stored.integration.rate_limit, now)
        if not permit.allowed:
            return defer(prepared, permit.retry_at, RATE_NOTE)
        verdict = self.breakers.check(ready.breaker_key, now)
        if not verdict.allowed:
            self.limiter.refund(ready.stored.id, now)
            return self._circuit_open(prepared, ready, verdict.retry_at, now)
        return await self._attempt(prepared, ready, probe=verdict.probe)

    # ------------------------------------------------------------ the attempt

    async def _attempt(self, p: Prepared, r: Ready, *, probe: bool) -> AttemptOutcome:
        """The attempt within its span: a child of the event's ``traceparent`` (the ingest
        span), so that publish, dispatch and every attempt share one trace."""
        parent = Tracing.context_of_traceparent(r.event.extensions.get("traceparent"))
        tracing = self.telemetry.tracing
        if not tracing.recording:
            # Nothing records spans: the request carries the event's trace context, as a
            # non-recording span would give it, without a span's bookkeeping per attempt.
            quiet = otel_trace.get_current_span(parent) if parent else otel_trace.INVALID_SPAN
            token = log_context.enter_job(r.delivery.org_id, _correlation_id(r.delivery, r.event))
            try:
                return await self._traced_attempt(p, r, quiet, probe=probe)
            finally:
                log_context.leave(token)
        attributes = {
            "adapter.id": r.stored.id,
            "tenant.id": r.delivery.org_id,
            "event.id": r.event.event_id,
            "event.type": r.event.type,
            "delivery.id": r.delivery.message_id,
            "delivery.attempt": p.job.attempts,
            "correlation.id": _correlation_id(r.delivery, r.event),
        }
        with (
            log_context.bound(
                org_id=r.delivery.org_id, correlation_id=attributes["correlation.id"]
            ),
            tracing.span(
                "delivery.attempt", parent=parent, kind=SpanKind.CLIENT, attributes=attributes
            ) as span,
        ):
            outcome = await self._traced_attempt(p, r, span, probe=probe)
            if span.is_recording():
                span.set_attribute("delivery.outcome", outcome.disposition.value)
                if outcome.response_status is not None:
                    span.set_attribute("http.response.status_code", outcome.response_status)
                if outcome.disposition is not Disposition.DELIVERED:
                    mark_error(span, outcome.error_category or outcome.disposition.value)
            return outcome

    async def _traced_attempt(
        self, p: Prepared, r: Ready, span: Span, *, probe: bool
    ) -> AttemptOutcome:
        started = time.time()
        trace = _Trace(started)
        trace.traceparent, trace.trace_id = outbound_traceparent(span)
        trace.add(
            "match",
            "ok",
            started,
            integrationId=r.stored.id,
            integrationVersion=r.stored.version,
            action=r.action.name,
            actionIndex=r.action.index,
            eventId=r.event.event_id,
            eventType=r.event.type,
            trigger=r.delivery.trigger.value,
            circuit="HALF_OPEN (probe)" if probe else None,
        )
        sent = await self._build_and_send(r, trace)
        if sent.went_out:
            decision = sent.classification.decision
            self.breakers.record(r.breaker_key, failed=decision is Decision.RETRY, now=time.time())
        else:
            self.breakers.cancel_probe(r.breaker_key)
        return self._decide(p, r, sent, trace, started)

    async def _build_and_send(self, r: Ready, trace: _Trace) -> _Sent:
        sent = await self._once(r, trace)
        oauth = r.stored.integration.auth.type is AuthType.OAUTH2
        if oauth and sent.result is not None and sent.result.status == 401:
            # The token may have been revoked early: fetch a new one and try once more.
            self.requests.invalidate_token(r.stored)
            sent = await self._once(r, trace, again=True)
        return sent

    async def _once(self, r: Ready, trace: _Trace, *, again: bool = False) -> _Sent:
        started = time.time()
        try:
            request = await self.requests.build(
                r.stored,
                r.action,
                r.event,
                message_id=r.delivery.message_id,
                now=_utc(started),
                correlation_id=_correlation_id(r.delivery, r.event),
            )
        except ExpressionRuntimeError as exc:
            trace.add("transform", "error", started, error=cap_text(exc.message))
            return _not_sent(exc.message, TRANSFORM_ERROR)
        except OAuthTokenError as exc:
            trace.add("auth", "error", started, type="OAUTH2", error=cap_text(exc.message))
            message = f"OAuth2 token: {exc.message}"
            return _not_sent(message, AUTH_ERROR, retry=exc.retryable)
        except JunctionboxError as exc:  # a configuration that cannot be sent
            trace.add("transform", "error", started, error=cap_text(exc.message))
            return _not_sent(exc.message, CONFIG_ERROR)
        if trace.traceparent is not None:
            request = with_header(request, "traceparent", trace.traceparent)
        self._trace_request(r, request, trace, started, again)
        return await self._send(r, request, trace)

    def _trace_request(
        self, r: Ready, request: PreparedRequest, trace: _Trace, started: float, again: bool
    ) -> None:
        if not again:  # the output itself is the row's request body
            trace.add(
                "transform",
                "ok",
                started,
                mode=r.action.transformation.mode or "NONE",
                bytes=len(request.body),
            )
        trace.add(
            "auth",
            "ok",
            started,
            type=r.stored.integration.auth.type.value,
            refreshed=True if again else None,
            signing=r.stored.integration.signing.algorithm.value,
        )

    async def _send(self, r: Ready, request: PreparedRequest, trace: _Trace) -> _Sent:
        timeout_ms = r.stored.integration.timeout_ms
        started = time.time()
        detail = {"method": request.method, "url": request.masked_url(), "timeoutMs": timeout_ms}
        try:
            result = await self.destination.execute(request, timeout=timeout_ms / 1000)
        except DestinationRefusedError as exc:
            step = trace.add("request", "error", started, **detail, error=exc.message)
            trace.requests.append((step, request))
            return _not_sent(exc.message, DESTINATION_REFUSED, request=request)
        except DestinationError as exc:
            step = trace.add("request", "error", started, **detail, error=exc.message)
            trace.requests.append((step, request))
            if exc.kind is None or not exc.retryable:
                return _not_sent(exc.message, CONFIG_ERROR, request=request)
            classification = classify(exc.kind, now=time.time())
            error = f"{exc.kind.value}: {exc.message}"
            return _Sent(classification, request, None, error, _category(classification), True)
        trace.requests.append((trace.add("request", "ok", started, **detail), request))
        classification = classify(
            result.status, now=time.time(), retry_after=result.header("retry-after")
        )
        success = classification.decision is Decision.SUCCESS
        trace.add(
            "response",
            "ok" if success else "error",
            started,
            status=result.status,
            elapsedMs=round(result.elapsed * 1000, 3),
            bytes=len(result.body),
            truncated=result.truncated or None,
            retryAfterSeconds=classification.retry_after,
        )
        failure = None if success else _status_text(result)
        return _Sent(classification, request, result, failure, _category(classification), True)

    # ------------------------------------------------------------ the decision

    def _decide(
        self, p: Prepared, r: Ready, sent: _Sent, trace: _Trace, started: float
    ) -> AttemptOutcome:
        now = time.time()
        policy = _policy(p.job, r.stored.integration.retry_policy)
        step = plan_next(
            policy, p.job.attempts, sent.classification, now=now, random_value=self.random()
        )
        disposition = _DISPOSITIONS[step.action]
        run_at = _utc(step.retry_at) if step.retry_at is not None else None
        trace.add(
            "decision",
            "ok" if disposition is Disposition.DELIVERED else "error",
            now,
            outcome=disposition.value,
            attempt=p.job.attempts,
            maxAttempts=policy.max_retries + 1,
            retryAt=_iso(run_at) if run_at else None,
            errorCategory=sent.category,
            error=cap_text(sent.error),
        )
        trace.add_curls(sent.request)
        row = self._row(p, r, sent, trace, _ROW_STATUS[disposition], started, now)
        return AttemptOutcome(
            p,
            disposition,
            run_at,
            row,
            row.error_message,
            sent.category,
            sent.result.status if sent.result is not None else None,
            counts_toward_disable=disposition is Disposition.DEAD_LETTER,
        )

    def _row(
        self,
        p: Prepared,
        r: Ready,
        sent: _Sent,
        trace: _Trace,
        status: AttemptStatus,
        started: float,
        now: float,
    ) -> AttemptRow:
        request, result = sent.request, sent.result
        return AttemptRow(
            id=_log_id(),
            org_id=r.delivery.org_id,
            integration_id=r.stored.id,
            integration_name=r.stored.integration.name,
            delivery_id=r.delivery.message_id,
            job_id=p.job.id,
            event_id=r.delivery.event_id,
            event_type=r.delivery.event_type,
            status=status.value,
            target_url=request.masked_url() if request else r.action.target_url,
            http_method=request.method if request else r.action.http_method.value,
            response_status=result.status if result else None,
            response_time_ms=round(result.elapsed * 1000) if result else None,
            attempt_count=p.job.attempts,
            error_message=_scrub(sent.error, request),
            error_category=sent.category,
            original_payload=r.event.payload,
            request_headers=request.masked_headers() if request else None,
            request_body=request.body if request else None,
            response_headers=result.headers if result else None,
            response_body=_scrub_bytes(result.body, request) if result else None,
            correlation_id=_correlation_id(r.delivery, r.event),
            trace_id=trace.trace_id or fresh_trace_id(),
            signature=request.signature if request else None,
            trigger_type=r.delivery.trigger.value,
            action_name=r.action.name,
            action_index=r.action.index,
            should_retry=status is AttemptStatus.RETRYING,
            steps=trace.steps,
            created_at=_utc(started),
            delivered_at=_utc(now) if status is AttemptStatus.SUCCESS else None,
        )

    # ------------------------------------------------------------ jobs that do not run

    def unrunnable(self, p: Prepared) -> AttemptOutcome:
        problem = p.problem
        if problem is None:
            raise AssertionError("a prepared job is either ready or has a problem")
        if problem.kind is ProblemKind.SKIP:
            return AttemptOutcome(
                p, Disposition.SKIP, error=problem.message, error_category=problem.category
            )
        row = _bare_row(p, p.delivery, problem.message, problem.category) if p.delivery else None
        return AttemptOutcome(
            p, Disposition.DEAD_LETTER, None, row, problem.message, problem.category
        )

    def _circuit_open(self, p: Prepared, r: Ready, retry_at: float, now: float) -> AttemptOutcome:
        """Deferred by an open circuit; the first time for this job, also logged."""
        retry_at += _BREAKER_JITTER * self.random() * max(0.0, retry_at - now)
        outcome = defer(p, retry_at, CIRCUIT_NOTE)
        if not self.log_circuit_open or p.job.last_error == CIRCUIT_NOTE:
            return outcome
        message = f"circuit open for {r.destination}; no request sent, no attempt spent"
        trace = _Trace(now)
        trace.add("decision", "skipped", now, outcome="DEFER", retryAt=_iso(_utc(retry_at)))
        row = replace(
            _bare_row(p, r.delivery, message, CIRCUIT_OPEN, event=r.event),
            status=AttemptStatus.RETRYING.value,
            target_url=r.action.target_url,
            attempt_count=max(0, p.job.attempts - 1),
            should_retry=True,
            steps=trace.steps,
        )
        return replace(outcome, row=row)


def _bare_row(
    p: Prepared,
    delivery: DeliveryJob,
    message: str,
    category: str,
    *,
    event: StoredEvent | None = None,
) -> AttemptRow:
    """The row of an attempt that sent nothing (the event is gone, the circuit is open)."""
    now = time.time()
    trace = _Trace(now)
    trace.add("match", "error", now, error=cap_text(message))
    stored, action = p.stored, p.action
    return AttemptRow(
        id=_log_id(),
        org_id=delivery.org_id,
        integration_id=delivery.integration_id,
        integration_name=stored.integration.name if stored else None,
        delivery_id=delivery.message_id,
        job_id=p.job.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=AttemptStatus.FAILED.value,
        target_url=action.target_url if action else None,
        http_method=action.http_method.value if action else None,
        response_status=None,
        response_time_ms=None,
        attempt_count=p.job.attempts,
        error_message=message,
        error_category=category,
        original_payload=event.payload if event else None,
        request_headers=None,
        request_body=None,
        response_headers=None,
        response_body=None,
        correlation_id=_correlation_id(delivery, event),
        trace_id=fresh_trace_id(),
        signature=None,
        trigger_type=delivery.trigger.value,
        action_name=action.name if action else None,
        action_index=delivery.action_index,
        should_retry=False,
        steps=trace.steps,
        created_at=_utc(now),
        delivered_at=None,
    )


# ---------------------------------------------------------------------- helpers

_DISPOSITIONS: Final = {
    NextAction.DELIVERED: Disposition.DELIVERED,
    NextAction.RETRY: Disposition.RETRY,
    NextAction.DEAD_LETTER: Disposition.DEAD_LETTER,
    NextAction.DISABLE: Disposition.DISABLE,
}
_ROW_STATUS: Final = {
    Disposition.DELIVERED: AttemptStatus.SUCCESS,
    Disposition.RETRY: AttemptStatus.RETRYING,
    Disposition.DEAD_LETTER: AttemptStatus.FAILED,
    Disposition.DISABLE: AttemptStatus.FAILED,
}


def _policy(job: Job, policy: RetryPolicy) -> RetryPolicy:
    """The integration's retry policy within the job's own ceiling, the queue's
    ``max_attempts`` (a DLQ redrive is one attempt, whatever the integration allows)."""
    ceiling = max(0, job.max_attempts - 1)
    return replace(policy, max_retries=ceiling) if policy.max_retries > ceiling else policy


def _category(classification: Classification) -> str | None:
    return classification.category.value if classification.category is not None else None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _status_text(result: DestinationResult) -> str:
    try:
        phrase = http.HTTPStatus(result.status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {result.status} {phrase}".rstrip()


def _correlation_id(delivery: DeliveryJob, event: StoredEvent | None) -> str | None:
    """The job's correlation id, else the event's ``correlationid`` extension."""
    if delivery.correlation_id:
        return delivery.correlation_id
    if event is not None:
        value = event.extensions.get("correlationid")
        if isinstance(value, str) and value:
            return value[:100]
    return None


def _scrub(text: str | None, request: PreparedRequest | None) -> str | None:
    """``text`` with every credential of the request masked (an echoing endpoint, an
    error message quoting a header)."""
    if text is None or request is None or not request.secret_values:
        return text
    for secret in sorted(request.secret_values, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "****")
    return text


def _scrub_bytes(body: bytes, request: PreparedRequest | None) -> bytes | str:
    if request is None or not request.secret_values or not body:
        return body
    if not any(s.encode() in body for s in request.secret_values if s):
        return body
    return _scrub(body.decode("utf-8", errors="replace"), request) or ""


def row_gives_curl(request: PreparedRequest) -> bool:
    """Whether the log row's columns (method, target URL, request headers and body, as
    capped) give back exactly this request's curl command: a text body and a URL stored
    uncut, one header per name, headers under their cap. The reader then rebuilds it
    (``services.delivery_logs``)."""
    if not request.has_text_body() or len(request.body) > MAX_LOGGED_BYTES:
        return False
    url = request.masked_url()
    if "\x00" in url or len(url.encode()) > MAX_LOGGED_URL_BYTES:
        return False
    size = 0
    names: set[str] = set()
    for name, value in request.masked_headers():
        if name in names or "\x00" in name or "\x00" in value:
            return False
        names.add(name)
        size += len(name) + len(value) + 4
    return size <= MAX_LOGGED_BYTES


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _log_id() -> str:
    # Unique is enough for a log row's id (time-sortable by its milliseconds): entropy from
    # the module generator (seeded from os.urandom) spares a system call per attempt.
    return new_id_of("dlv", _random.getrandbits(80))
