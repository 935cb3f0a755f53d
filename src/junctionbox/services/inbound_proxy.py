"""The runtime proxy behind ``/api/v1/integrations/{type}`` (seed 003 INBOUND).

One call, after the platform credential and tenant were resolved by the API layer:

1. find the tenant's integration of that type (an org unit without one uses its
   organization's); unknown or inactive: 404; a method it does not allow: 405;
2. check the inbound credential it configures (401, constant-time);
3. take a token from its rate-limit bucket (429 with ``Retry-After`` and ``X-RateLimit-*``);
4. transform the request body (SIMPLE / JSONATA / SCRIPT; malformed JSON: 400);
5. build the upstream request: the target URL plus the confined sub-path and the caller's
   query (without ``orgId``), the caller's end-to-end headers (hop-by-hop and junctionbox
   credentials removed), ``X-Forwarded-*``, then the outgoing auth;
6. send it through the SSRF-guarded client, retrying network errors and 5xx with
   exponential backoff (idempotent methods, or all when configured); a timeout is not
   retried (the upstream may still be working on it) and answers 504;
7. answer: with a response transformation, a 2xx JSON body is transformed; otherwise the
   upstream body streams through in 16 KiB chunks, never held whole in memory (a body
   whose ``Content-Length`` is at most 64 KiB is read whole and answered in one piece).

Final failures (502/504) write their delivery-log row (direction ``INBOUND``) and a DLQ entry
in one transaction before the caller gets the error. The entry is ``ABANDONED`` at once:
the caller already had its answer, so junctionbox never re-sends a proxied request by itself
(it could book an appointment twice); the entry is kept for investigation. Other calls are
logged through :class:`InboundLogWriter`, in batches off the request path.

Per-process state: the resolved integrations (a :class:`ReadCache`, 5 s, dropped at once by
changes made on this node) and the rate-limit buckets (per process, like outbound ones).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode, urlsplit

import orjson
from opentelemetry.trace import Span, SpanKind, get_current_span

from junctionbox.connectors.http_client import (
    GuardedHttpClient,
    OutboundNetworkError,
    OutboundTimeoutError,
    StreamedResponse,
)
from junctionbox.domain.delivery import AttemptStatus, DlqStatus
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.inbound import InboundCheck, ProxyRetry
from junctionbox.domain.netguard import REFUSED_MESSAGE, TargetRefusedError
from junctionbox.domain.outbound import RateLimit, Transformation
from junctionbox.domain.proxy import (
    TrustedProxies,
    check_framing,
    confined_path,
    forwardable_request_headers,
    forwardable_response_headers,
    forwarded_headers,
    should_retry,
)
from junctionbox.domain.retry import ErrorCategory
from junctionbox.domain.secretbox import SecretBox
from junctionbox.domain.token_bucket import BucketConfig, TokenBucket, full_bucket, take
from junctionbox.errors import (
    ExpressionCompileError,
    ExpressionRuntimeError,
    JunctionboxError,
    MalformedBodyError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from junctionbox.expr import (
    DEFAULT_LIMITS,
    EMPTY_CONTEXT,
    SimpleTransformer,
    TransformationMode,
    Transformer,
    compile_transformer,
)
from junctionbox.observability.telemetry import Telemetry
from junctionbox.observability.tracing import mark_error, outbound_traceparent
from junctionbox.services.inbound_log import InboundLogWriter
from junctionbox.services.lookups import LookupService
from junctionbox.services.outbound_request import _ACTIVE_LOOKUPS, _CONTEXT_LOOKUPS, mask_url
from junctionbox.services.outgoing_auth import OAuthTokenCache, StaticAuth, static_auth, with_query
from junctionbox.services.read_cache import ReadCache
from junctionbox.store.database import Database
from junctionbox.store.queries import dlq as dlq_queries
from junctionbox.store.queries import inbound as queries
from junctionbox.store.queries.delivery_attempts import MAX_LOGGED_BYTES, AttemptRow, cap_text
from junctionbox.store.queries.inbound import StoredInbound
from junctionbox.store.queries.log_batches import insert_log_rows
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)

PLAN_TTL: Final = 5.0  # seconds another node may serve an integration changed elsewhere
DIRECTION: Final = "INBOUND"
TRIGGER: Final = "API"
JSON_TYPE: Final = "application/json"
MASK: Final = "****"
DELIVERY_ID_LENGTH: Final = 40  # delivery_logs.delivery_id, dlq_entries.delivery_id
SMALL_BODY: Final = 64 * 1024  # bodies up to this long (declared) are not streamed
_TRANSFORMED_DROP: Final = frozenset({"content-length", "content-encoding", "content-type"})
_DECODED_DROP: Final = frozenset({"content-length", "content-encoding"})
_LENGTH_DROP: Final = frozenset({"content-length"})  # a whole body: the length is set again


# ---------------------------------------------------------------- the call and its answer


@dataclass(slots=True)
class ProxyCall:
    """The caller's request as the API layer read it (no framework types); not changed
    once built. (Not frozen: a frozen dataclass of 13 fields costs about 2 us per call.)"""

    method: str
    type: str
    sub_path: str  # raw (percent-encoded) path after the type, "" when none
    query: Sequence[tuple[str, str]]  # without orgId
    headers: Sequence[tuple[str, str]]
    body: bytes
    peer: str | None
    scheme: str
    host: str | None
    request_id: str | None = None
    correlation_id: str | None = None
    log_id: str | None = None  # the delivery-log row's id; None: drawn when logged


@dataclass(slots=True)
class ProxyAnswer:
    """What goes back to the caller: a whole ``body`` or ``stream`` (then ``close`` it)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None
    upstream: StreamedResponse | None = field(default=None, repr=False)  # released by close

    async def close(self) -> None:
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            upstream.release()


# ---------------------------------------------------------------- per-integration state


@dataclass(frozen=True, slots=True)
class _Side:
    transformer: Transformer
    threaded: bool  # SCRIPT / JSONATA run off the event loop
    lookups: bool  # SIMPLE with lookup(): bind the tenant's tables around the call
    contextual: bool  # reads the call's context (SIMPLE mappings read only the document)


@dataclass(frozen=True, slots=True)
class ProxyPlan:
    """Everything about an integration that does not change between calls."""

    stored: StoredInbound
    check: InboundCheck
    methods: frozenset[str]
    allow: str
    origin: str  # scheme://netloc of the target
    base_path: str
    base_query: str  # the target's own query plus API_KEY-in-query auth
    masked_query: str
    auth: StaticAuth
    masked_auth: list[tuple[str, str]]  # the auth headers as the delivery log shows them
    drop: frozenset[str]  # caller's headers never sent upstream: ours (credentials), lower-case
    request: _Side | None
    response: _Side | None
    timeout: float
    retry: ProxyRetry
    rate_limit: RateLimit


def _side(transformation: Transformation) -> _Side | None:
    if transformation.mode is None:
        return None
    mode = TransformationMode(transformation.mode)
    try:
        if mode is TransformationMode.SIMPLE:
            compiled = compile_transformer(
                mode, list(transformation.field_mappings), lookups=_CONTEXT_LOOKUPS
            )
        else:
            compiled = compile_transformer(mode, transformation.script or "", limits=DEFAULT_LIMITS)
    except ExpressionCompileError as exc:  # validated at save time; an engine change?
        raise ExpressionRuntimeError(f"transformation does not compile: {exc.message}") from exc
    uses_lookups = isinstance(compiled, SimpleTransformer) and bool(compiled.lookup_types)
    simple = isinstance(compiled, SimpleTransformer)
    return _Side(compiled, mode is not TransformationMode.SIMPLE, uses_lookups, not simple)


def make_plan(stored: StoredInbound) -> ProxyPlan:
    i = stored.integration
    auth = static_auth(i.auth, stored.id)
    parts = urlsplit(i.target_url)
    query = urlsplit(with_query(i.target_url, auth.query)).query
    methods = frozenset(m.value for m in i.allowed_methods)
    return ProxyPlan(
        stored=stored,
        check=InboundCheck.of(i.inbound_auth),
        methods=methods,
        allow=", ".join(sorted(methods)),
        origin=f"{parts.scheme}://{parts.netloc}",
        base_path=parts.path or "/",
        base_query=query,
        masked_query=urlsplit(mask_url("http://x/?" + query, auth.secret_values)).query,
        auth=auth,
        masked_auth=[(name, MASK) for name, _ in auth.headers],
        drop=_dropped(auth, InboundCheck.of(i.inbound_auth)),
        request=_side(i.request_transformation),
        response=_side(i.response_transformation),
        timeout=i.timeout_ms / 1000,
        retry=i.retry,
        rate_limit=i.rate_limit,
    )


def _dropped(auth: StaticAuth, check: InboundCheck) -> frozenset[str]:
    """The outgoing auth's header names (it sets them), the caller's integration
    credential header, and ``traceparent`` (set again)."""
    names = {name.lower() for name, _ in auth.headers} | {"traceparent"}
    if check.header is not None:
        names.add(check.header)
    return frozenset(names)


# ---------------------------------------------------------------- rate limits


class Quota(NamedTuple):  # a tuple: built for every call, at a third of a frozen dataclass's cost
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # seconds; 0 when allowed

    def headers(self) -> list[tuple[str, str]]:
        found = [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(self.reset_seconds)),
        ]
        if not self.allowed:
            found.append(("Retry-After", str(self.retry_after)))
        return found


class ProxyRateLimiter:
    """A token bucket per integration (``domain.token_bucket``, as outbound deliveries use),
    answering at once: a denied call learns when to come back instead of waiting."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, tuple[RateLimit, TokenBucket]] = {}
        self._max_keys = max_keys

    def take(self, key: str, limit: RateLimit, now: float) -> Quota | None:
        if not limit.enabled:
            return None
        entry = self._buckets.get(key)
        if entry is None or (entry[0] is not limit and entry[0] != limit):
            if len(self._buckets) >= self._max_keys:
                self._buckets.clear()  # bounded; buckets refill to full anyway
            config = BucketConfig.from_window(limit.max_requests, limit.window_seconds)
            entry = (limit, full_bucket(config, now))
        bucket, allowed, wait = take(entry[1], now)
        self._buckets[key] = (limit, bucket)
        rate = bucket.config.refill_rate
        reset = (bucket.config.capacity - bucket.tokens) / rate
        return Quota(
            allowed=allowed,
            limit=limit.max_requests,
            remaining=int(bucket.tokens),
            reset_seconds=max(0, _ceil(reset)),
            retry_after=max(1, _ceil(wait)) if not allowed else 0,
        )


def _ceil(value: float) -> int:
    whole = int(value)
    return whole + (1 if value > whole else 0)


# ---------------------------------------------------------------- the proxy


@dataclass(slots=True)
class _Exchange:
    """One call's record, filled as it goes and written to the delivery log."""

    plan: ProxyPlan
    tenant_org: int
    call: ProxyCall
    url: str = ""
    masked_url: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    attempts: int = 0
    traceparent: str = ""  # sent upstream; its trace id is the delivery log's traceId
    trace_id: str = ""
    status: int | None = None  # the upstream's, once answered
    log_id: str | None = None  # the call's, for its one delivery-log row
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=utcnow)

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


class InboundProxy:
    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        http: GuardedHttpClient,
        lookups: LookupService,
        oauth: OAuthTokenCache,
        *,
        trusted_proxies: Sequence[str] = (),
        max_transform_bytes: int = 10 * 1024 * 1024,
        log_writer: InboundLogWriter | None = None,
        telemetry: Telemetry | None = None,
        clock: Any = time.time,
        sleep: Any = asyncio.sleep,
    ) -> None:
        self.db = db
        self.secretbox = secretbox
        self.http = http
        self.lookups = lookups
        self.oauth = oauth
        self.trusted = TrustedProxies.parse(trusted_proxies)
        self.max_transform_bytes = max_transform_bytes
        self.logs = log_writer or InboundLogWriter(db)
        self.limiter = ProxyRateLimiter()
        self.telemetry = telemetry or Telemetry()
        self.clock = clock
        self.sleep = sleep
        self.plans: ReadCache[tuple[int, str], ProxyPlan | None] = ReadCache(PLAN_TTL)

    def forget(self, _org_id: int, kind: str) -> None:
        """An integration of ``kind`` changed here: drop it for every tenant (units fall
        back to their organization's, so one change can touch several keys)."""
        self.plans.invalidate(lambda key, _: key[1] == kind)

    async def close(self) -> None:
        await self.logs.close()

    # ------------------------------------------------------------ resolution

    async def plan_for(self, tenant: TenantContext, kind: str) -> ProxyPlan:
        hit = self.plans.get((tenant.org_id, kind))
        if hit is not None:
            plan = hit[0]
        else:
            # Shared: when the entry expires under load, one read instead of one per call
            # in flight (each also compiling the plan).
            plan = await self.plans.load((tenant.org_id, kind), lambda: self._load(tenant, kind))
        return _active(plan, kind)

    async def _load(self, tenant: TenantContext, kind: str) -> ProxyPlan | None:
        owners = [tenant.org_id]
        if tenant.entity.parent_id is not None:
            owners.append(tenant.entity.parent_id)
        async with self.db.read() as conn:
            found = await queries.find_by_type(conn, self.secretbox, owners, kind)
        found.sort(key=lambda s: owners.index(s.org_id))  # the unit's own first
        return make_plan(found[0]) if found else None

    # ------------------------------------------------------------ the call

    def handle(self, tenant: TenantContext, call: ProxyCall) -> Awaitable[ProxyAnswer]:
        """The call's answer (await it). With its plan cached and tracing off (the usual
        case) the exchange's coroutine itself: no layer around it."""
        hit = self.plans.get((tenant.org_id, call.type))
        if hit is None or self.telemetry.tracing.recording:
            return self._handle(tenant, call)
        plan = _active(hit[0], call.type)
        # Tracing off: no span, the caller's traceparent goes on.
        return self._exchange(tenant, call, plan, outbound_traceparent(get_current_span()))

    async def _handle(self, tenant: TenantContext, call: ProxyCall) -> ProxyAnswer:
        plan = await self.plan_for(tenant, call.type)
        tracing = self.telemetry.tracing
        if not tracing.recording:
            trace = outbound_traceparent(get_current_span())
            return await self._exchange(tenant, call, plan, trace)
        attributes = {
            "adapter.id": plan.stored.id,
            "integration.type": call.type,
            "http.request.method": call.method,
            "tenant.id": tenant.org_id,
        }
        with tracing.span("proxy.call", kind=SpanKind.CLIENT, attributes=attributes) as span:
            return await self._exchange(tenant, call, plan, outbound_traceparent(span), span)

    async def _exchange(
        self,
        tenant: TenantContext,
        call: ProxyCall,
        plan: ProxyPlan,
        trace: tuple[str, str],
        span: Span | None = None,
    ) -> ProxyAnswer:
        x: _Exchange | None = None
        try:
            x, quota = self._admit(tenant, call, plan, trace)
            self._prepare(x)
            side = plan.request
            if side is not None:
                document = _json_body(call.body)
                if side.threaded or side.lookups:
                    document = await self._run(side, document, x, "request")
                else:  # a SIMPLE mapping: on the loop, without _run's coroutine
                    context = self._context(x, None) if side.contextual else EMPTY_CONTEXT
                    document = side.transformer.transform(document, context)
                self._transformed_body(x, document)
            self._forwarding(x)
            answer = await self._send(x)
            if quota is not None:
                answer.headers.extend(quota.headers())
            return answer
        finally:
            if span is not None and x is not None:
                _annotate(span, x)

    def _admit(
        self, tenant: TenantContext, call: ProxyCall, plan: ProxyPlan, trace: tuple[str, str]
    ) -> tuple[_Exchange, Quota | None]:
        """The call's checks (method, framing, credential, rate limit), in that order, and
        its exchange record."""
        if call.method not in plan.methods:
            raise _MethodNotAllowed(plan.allow)
        check_framing(call.headers)
        if not plan.check.accepts(partial(_first, call.headers)):
            raise UnauthorizedError("invalid or missing integration credentials")
        quota = self.limiter.take(plan.stored.id, plan.rate_limit, self.clock())
        if quota is not None and not quota.allowed:
            raise RateLimitedError(
                "rate limit of this integration exceeded", headers=dict(quota.headers())
            )
        exchange = _Exchange(plan, tenant.org_id, call, log_id=call.log_id)
        exchange.traceparent, exchange.trace_id = trace
        return exchange, quota

    def _prepare(self, x: _Exchange) -> None:
        """The upstream URL, the body and the caller's headers that go on."""
        plan, call = x.plan, x.call
        base = plan.origin + confined_path(plan.base_path, call.sub_path)
        extra = urlencode(call.query) if call.query else ""
        x.url = _with_query(base, plan.base_query, extra)
        x.masked_url = _with_query(base, plan.masked_query, extra)
        # The drop list has traceparent: our span's context replaces the caller's (tracing
        # off: the caller's, unchanged).
        x.headers = forwardable_request_headers(call.headers, plan.drop)
        x.body = call.body

    @staticmethod
    def _transformed_body(x: _Exchange, document: Any) -> None:
        """The transformed body, sent as JSON: the caller's ``Content-Type`` is replaced."""
        x.body = _dumps(document)
        headers = [(k, v) for k, v in x.headers if k.lower() != "content-type"]
        headers.append(("Content-Type", JSON_TYPE))
        x.headers = headers

    def _forwarding(self, x: _Exchange) -> None:
        """``X-Forwarded-*`` and the ``traceparent`` after the caller's headers."""
        call = x.call
        trusted = self.trusted.trusts(call.peer)
        x.headers += forwarded_headers(
            call.headers, peer=call.peer, scheme=call.scheme, host=call.host, trusted=trusted
        )
        x.headers.append(("traceparent", x.traceparent))

    async def _oauth_headers(self, plan: ProxyPlan) -> list[tuple[str, str]]:
        assert plan.auth.oauth is not None
        token = await self.oauth.token(plan.auth.oauth)
        return [*plan.auth.headers, ("Authorization", f"Bearer {token}")]

    async def _send(self, x: _Exchange) -> ProxyAnswer:
        plan, method = x.plan, x.call.method
        decode = plan.response is not None
        if plan.auth.oauth is None:
            headers = [*x.headers, *plan.auth.headers]
        else:
            headers = x.headers + await self._oauth_headers(plan)
        while True:
            x.attempts += 1
            try:
                upstream = await self.http.open(
                    method,
                    x.url,
                    headers=headers,
                    body=x.body,
                    timeout_seconds=plan.timeout,
                    decompress=decode,
                )
            except OutboundTimeoutError as exc:
                raise await self._failed(x, ErrorCategory.TIMEOUT, exc.message, 504) from None
            except TargetRefusedError:
                raise await self._failed(
                    x, ErrorCategory.NETWORK_ERROR, REFUSED_MESSAGE, 502
                ) from None
            except OutboundNetworkError as exc:
                if self._may_retry(x, method, None):
                    await self.sleep(plan.retry.delay(x.attempts - 1))
                    continue
                raise await self._failed(x, ErrorCategory.NETWORK_ERROR, exc.message, 502) from None
            if upstream.status >= 500:
                try:
                    body, _ = await _drain(upstream)
                finally:
                    upstream.release()
                if self._may_retry(x, method, upstream.status):
                    await self.sleep(plan.retry.delay(x.attempts - 1))
                    continue
                message = f"upstream answered HTTP {upstream.status}"
                raise await self._failed(
                    x, ErrorCategory.SERVER_ERROR, message, 502, upstream, body
                ) from None
            return await self._answer(x, upstream)

    def _may_retry(self, x: _Exchange, method: str, status: int | None) -> bool:
        retry = x.plan.retry
        return x.attempts <= retry.max_retries and should_retry(
            method, status=status, retry_non_idempotent=retry.retry_non_idempotent
        )

    async def _answer(self, x: _Exchange, upstream: StreamedResponse) -> ProxyAnswer:
        """The answer to the caller; ``upstream`` is released here or by the answer."""
        plan = x.plan
        x.status = upstream.status
        if x.call.method == "HEAD":  # no body; its headers describe the GET's, length included
            upstream.release()
            headers = forwardable_response_headers(upstream.headers)
            await self._log(x, upstream.status, upstream.headers, b"")
            return ProxyAnswer(upstream.status, headers, body=b"")
        if plan.response is not None and 200 <= upstream.status < 300:
            try:
                return await self._transformed(x, upstream)
            finally:
                upstream.release()
        if plan.response is None and _small(upstream.headers):
            # A short body with a known length is read whole: answering it in one piece
            # costs less than a streamed response (measured), and memory stays bounded.
            try:
                body, _ = await upstream.read(SMALL_BODY)
            finally:
                upstream.release()
            headers = forwardable_response_headers(upstream.headers, _LENGTH_DROP)
            await self._log(x, upstream.status, upstream.headers, body)
            return ProxyAnswer(upstream.status, headers, body=body)
        drop = _DECODED_DROP if plan.response is not None else ()
        headers = forwardable_response_headers(upstream.headers, drop)
        answer = ProxyAnswer(upstream.status, headers, upstream=upstream)
        answer.stream = self._relay(x, upstream, answer)
        return answer

    async def _transformed(self, x: _Exchange, upstream: StreamedResponse) -> ProxyAnswer:
        raw, truncated = await upstream.read(self.max_transform_bytes)
        if truncated:
            message = "upstream response too large to transform"
            raise await self._failed(
                x, ErrorCategory.INVALID_RESPONSE, message, 502, upstream, raw[:MAX_LOGGED_BYTES]
            )
        try:
            document = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            raise await self._failed(
                x,
                ErrorCategory.INVALID_RESPONSE,
                "upstream response is not JSON",
                502,
                upstream,
                raw,
            ) from None
        context = {"status": upstream.status}
        result = await self._run(x.plan.response, document, x, "response", context)  # type: ignore[arg-type]
        body = _dumps(result)
        headers = forwardable_response_headers(upstream.headers, _TRANSFORMED_DROP)
        headers.append(("Content-Type", JSON_TYPE))
        await self._log(x, upstream.status, upstream.headers, body)
        return ProxyAnswer(upstream.status, headers, body=body)

    async def _relay(
        self, x: _Exchange, upstream: StreamedResponse, answer: ProxyAnswer
    ) -> AsyncIterator[bytes]:
        """The upstream body, chunk by chunk; the first 64 KiB are kept for the log."""
        kept: list[bytes] = []
        size = 0
        error: str | None = None
        try:
            async for chunk in upstream.chunks():
                if size < MAX_LOGGED_BYTES:
                    kept.append(chunk[: MAX_LOGGED_BYTES - size])
                size += len(chunk)
                yield chunk
        except OutboundNetworkError as exc:
            error = f"upstream body cut short: {exc.message}"
            raise
        finally:
            await answer.close()
            await self._log(x, upstream.status, upstream.headers, b"".join(kept), error=error)

    # ------------------------------------------------------------ transformations

    async def _run(
        self,
        side: _Side,
        document: Any,
        x: _Exchange,
        which: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        context = self._context(x, extra) if side.contextual else EMPTY_CONTEXT
        try:
            if side.threaded:
                return await asyncio.to_thread(side.transformer.transform, document, context)
            if not side.lookups:
                return side.transformer.transform(document, context)
            token = _ACTIVE_LOOKUPS.set(await self.lookups.resolver(x.tenant_org))
            try:
                return side.transformer.transform(document, context)
            finally:
                _ACTIVE_LOOKUPS.reset(token)
        except ExpressionRuntimeError as exc:
            if which == "response":
                raise await self._failed(
                    x, ErrorCategory.INVALID_RESPONSE, f"response {exc.message}", 502
                ) from exc
            raise

    @staticmethod
    def _context(x: _Exchange, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            "orgId": x.tenant_org,
            "integrationId": x.plan.stored.id,
            "type": x.plan.stored.integration.type,
            "method": x.call.method,
            "path": x.call.sub_path,
            "query": dict(x.call.query),
            **(extra or {}),
        }

    # ------------------------------------------------------------ records

    def _row(
        self,
        x: _Exchange,
        *,
        status: AttemptStatus,
        response_status: int | None,
        response_headers: Sequence[tuple[str, str]] | None,
        response_body: bytes | None,
        error: str | None = None,
        category: str | None = None,
    ) -> AttemptRow:
        stored = x.plan.stored
        shown_headers = x.headers + x.plan.masked_auth if x.plan.masked_auth else x.headers
        return AttemptRow(
            id=_take_log_id(x),
            org_id=x.tenant_org,
            integration_id=stored.id,
            integration_name=stored.integration.name,
            delivery_id=_delivery_id(x.call.request_id),
            job_id=None,
            event_id=None,
            event_type=stored.integration.type,
            status=status.value,
            target_url=x.masked_url,
            http_method=x.call.method,
            response_status=response_status,
            response_time_ms=x.elapsed_ms(),
            attempt_count=x.attempts,
            error_message=error,
            error_category=category,
            original_payload=x.call.body,
            request_headers=shown_headers,
            request_body=x.body,
            response_headers=response_headers,
            response_body=response_body,
            correlation_id=x.call.correlation_id,
            trace_id=x.trace_id,
            signature=None,
            trigger_type=TRIGGER,
            action_name=None,
            action_index=None,
            should_retry=False,
            steps=None,
            created_at=x.created_at,
            delivered_at=utcnow() if error is None else None,
            direction=DIRECTION,
        )

    def _log(
        self,
        x: _Exchange,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        error: str | None = None,
    ) -> Awaitable[None]:
        """Queue the call's log row; the awaitable waits only while the queue is full."""
        category = None
        if error is not None:
            category = ErrorCategory.NETWORK_ERROR.value
        elif status >= 400:
            category = ErrorCategory.CLIENT_ERROR.value
        row = self._row(
            x,
            status=AttemptStatus.SUCCESS if category is None else AttemptStatus.FAILED,
            response_status=status,
            response_headers=headers,
            response_body=body,
            error=error,
            category=category,
        )
        self._measure(x, status, category)
        return self.logs.record(row)

    async def _failed(
        self,
        x: _Exchange,
        category: ErrorCategory,
        message: str,
        status: int,
        upstream: StreamedResponse | None = None,
        body: bytes | None = None,
    ) -> JunctionboxError:
        """Record a final failure (log row and DLQ entry, one transaction) and return the
        error the caller gets."""
        row = self._row(
            x,
            status=AttemptStatus.FAILED,
            response_status=upstream.status if upstream else None,
            response_headers=upstream.headers if upstream else None,
            response_body=body,
            error=message,
            category=category.value,
        )
        self._measure(x, upstream.status if upstream else None, category.value)
        try:
            async with self.db.write() as conn:
                await insert_log_rows(conn, [row])
                await dlq_queries.insert_entry(conn, self._dlq_values(x, message, category))
        except Exception:  # the caller still gets its 502/504; the failure is in the log
            log.exception("could not record the failed inbound call")
        error: JunctionboxError = (
            UpstreamTimeoutError(message) if status == 504 else UpstreamError(message)
        )
        return error

    def _measure(self, x: _Exchange, status: int | None, category: str | None) -> None:
        """Seed 001's integration metrics for one call (``adapter_id``: the integration)."""
        x.status = status
        seconds = time.perf_counter() - x.started
        metrics = self.telemetry.metrics
        metrics.integration_request(
            x.plan.stored.id, success=category is None, seconds=seconds, error_type=category
        )
        if x.attempts > 1:
            metrics.retried(x.plan.stored.id, x.attempts - 1)

    def _dlq_values(self, x: _Exchange, message: str, category: ErrorCategory) -> dict[str, Any]:
        now = utcnow()
        stored = x.plan.stored
        return {
            "id": new_id("dlq"),
            "org_id": x.tenant_org,
            "integration_id": stored.id,
            "integration_name": stored.integration.name,
            "direction": DIRECTION,
            "delivery_id": _delivery_id(x.call.request_id) or new_id("req"),
            "event_id": None,
            "event_type": stored.integration.type,
            "status": DlqStatus.ABANDONED.value,
            "job": {
                "kind": "inbound_proxy",
                "type": stored.integration.type,
                "method": x.call.method,
                "path": x.call.sub_path,
                "query": [list(q) for q in x.call.query],
                "headers": [[k, v] for k, v in x.headers],
                "bodyBytes": len(x.body),
            },
            "original_payload": cap_text(x.call.body),
            "target_url": x.masked_url,
            "http_method": x.call.method,
            "last_error": message,
            "error_category": category.value,
            "delivery_attempts": x.attempts,
            "attempt_count": 0,
            "max_retries": 0,
            "next_retry_at": None,
            "trace_id": x.trace_id,
            "created_at": now,
            "updated_at": now,
        }


class _MethodNotAllowed(JunctionboxError):
    """The integration does not accept this method."""

    code = "METHOD_NOT_ALLOWED"
    status = 405

    def __init__(self, allow: str) -> None:
        super().__init__(
            f"method not allowed; this integration accepts {allow}", headers={"allow": allow}
        )


def _annotate(span: Span, x: _Exchange) -> None:
    span.set_attribute("proxy.attempts", x.attempts)
    if x.status is not None:
        span.set_attribute("http.response.status_code", x.status)
        if x.status >= 500:
            mark_error(span, f"upstream answered HTTP {x.status}")


def _active(plan: ProxyPlan | None, kind: str) -> ProxyPlan:
    if plan is None or not plan.stored.is_active:
        raise NotFoundError(f"no active inbound integration of type {kind!r}")
    return plan


def _delivery_id(request_id: str | None) -> str | None:
    """The call's request id as the logs keep it: a caller's may have 128 characters, the
    ``delivery_id`` columns hold 40 (a longer one fails the insert on PostgreSQL, and with
    it a failure's log row and DLQ entry)."""
    return request_id[:DELIVERY_ID_LENGTH] if request_id else None


def _take_log_id(x: _Exchange) -> str:
    """The call's log id the first time (one row per call), a new one after."""
    found, x.log_id = x.log_id, None
    return found or new_id("dlg")


def _with_query(url: str, first: str, second: str) -> str:
    query = f"{first}&{second}" if first and second else first or second
    return f"{url}?{query}" if query else url


def _small(headers: Sequence[tuple[str, str]]) -> bool:
    length = _first(headers, "content-length")
    return length is not None and length.isdigit() and int(length) <= SMALL_BODY


def _first(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _json_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"the request body is not valid JSON: {exc}") from None


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise ExpressionRuntimeError(f"the transformation result is not JSON ({exc})") from exc


async def _drain(upstream: StreamedResponse) -> tuple[bytes, bool]:
    try:
        return await upstream.read(MAX_LOGGED_BYTES)
    except OutboundNetworkError:
        return b"", False
