"""One run of a scheduled job: DATA_FETCH -> TRANSFORMATION -> DELIVERY, and its log.

:meth:`JobRunner.run` returns the values of the run's ``scheduled_job_logs`` row (seed 003's
fields): each stage's status, the records fetched and the data (capped at 50 KB), the
transformed payload, the HTTP request (credentials masked), a curl command (masked), the
response, the duration, and on failure ``errorContext`` ``{stage, error, type}`` naming the
stage that failed. Nothing raised inside a stage escapes: a failure is a FAILED run.

* The transformation's input is ``{data, metadata}`` (``metadata``: jobId, jobName,
  tenantId, runId, trigger, scheduledFor, timezone, recordsFetched); without a
  transformation the fetched data is sent as it is.
* Delivery: ``httpMethod`` to ``targetUrl`` with the outgoing auth, JSON body, through the
  SSRF-guarded client, ``timeoutMs`` per attempt. Retried per the job's ``retryPolicy`` on
  network errors, 408, 429 and 5xx (other answers are final); an OAuth2 401 drops the
  cached token before the next attempt. Every attempt carries ``idempotency-key: <runId>``,
  so a receiver can tell a retry (or a re-run after a crash) from a new export.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, get_current_span

from junctionbox.connectors.http_client import GuardedHttpClient, OutboundNetworkError
from junctionbox.connectors.job_sources import (
    Fetched,
    SqlQueryRunner,
    cap_json,
    fetch_api,
    headers_dict,
)
from junctionbox.domain.job_config import DEFAULT_TIMEOUT_MS, DataSource, JobConfig, SourceType
from junctionbox.domain.job_variables import VariableContext
from junctionbox.domain.outbound import AuthType
from junctionbox.domain.redaction import redact_text
from junctionbox.domain.retry import Decision, classify
from junctionbox.errors import JunctionboxError
from junctionbox.expr import DEFAULT_LIMITS, ExpressionCache, Limits, compile_transformer
from junctionbox.observability.telemetry import Telemetry
from junctionbox.observability.tracing import mark_error, outbound_traceparent
from junctionbox.services.outbound_request import PreparedRequest, mask_url
from junctionbox.services.outgoing_auth import (
    OAuthTokenCache,
    StaticAuth,
    static_auth,
    with_query,
)

DATA_CAP_BYTES: Final = 50 * 1024  # seed 003: data fetched is logged up to 50 KB
PAYLOAD_CAP_BYTES: Final = 256 * 1024
RESPONSE_CAP_BYTES: Final = 64 * 1024
MAX_STACK_CHARS: Final = 4000


class Stage(StrEnum):
    DATA_FETCH = "DATA_FETCH"
    TRANSFORMATION = "TRANSFORMATION"
    DELIVERY = "DELIVERY"


SUCCESS, FAILED = "SUCCESS", "FAILED"


@dataclass(frozen=True)
class RunInput:
    """What one run needs besides the job's configuration."""

    job_id: str
    job_name: str
    version: int
    org_id: int
    run_id: str
    trigger: str
    scheduled_for: datetime
    timezone: str
    connection_string: str | None
    variables: VariableContext


@dataclass
class RunLog:
    """The log row's values as the run goes; ``values()`` is what is stored."""

    status: str = FAILED
    stage: Stage = Stage.DATA_FETCH
    fields: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        self.fields.update(values)

    def fail(self, stage: Stage, exc: BaseException) -> None:
        self.status = FAILED
        self.fields[_STAGE_COLUMN[stage]] = FAILED
        self.fields["error_context"] = error_context(stage, exc)


_STAGE_COLUMN: Final = {
    Stage.DATA_FETCH: "data_fetch_stage",
    Stage.TRANSFORMATION: "transformation_stage",
    Stage.DELIVERY: "delivery_stage",
}


def error_context(stage: Stage | str, exc: BaseException | str) -> dict[str, Any]:
    """Seed 003's ``errorContext``: the stage, the message and (for unexpected errors) the
    stack, with anything secret-looking masked."""
    if isinstance(exc, str):
        return {"stage": str(stage), "error": exc, "type": "Interrupted", "stack": None}
    message = exc.message if isinstance(exc, JunctionboxError) else str(exc) or type(exc).__name__
    stack = None
    if not isinstance(exc, JunctionboxError):
        text = "".join(traceback.format_exception(exc))
        stack = redact_text(text[-MAX_STACK_CHARS:])
    return {
        "stage": str(stage),
        "error": redact_text(message),
        "type": type(exc).__name__,
        "stack": stack,
    }


Sleep = Callable[[float], Awaitable[None]]
OnStage = Callable[[Stage], Awaitable[None]]


async def _ignore(_stage: Stage) -> None:
    return None


class JobRunner:
    """Runs the three stages; shared by every run of a process."""

    def __init__(
        self,
        sql: SqlQueryRunner,
        http: GuardedHttpClient,
        *,
        max_rows: int,
        oauth: OAuthTokenCache | None = None,
        limits: Limits = DEFAULT_LIMITS,
        sleep: Sleep = asyncio.sleep,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.telemetry = telemetry or Telemetry()
        self.sql = sql
        self.http = http
        self.max_rows = max_rows
        self.oauth = oauth if oauth is not None else OAuthTokenCache(http)
        self.limits = limits
        self.sleep = sleep
        self._compiled = ExpressionCache(512)

    async def fetch(
        self,
        source: DataSource,
        connection: str | None,
        ctx: VariableContext,
        *,
        max_rows: int,
        timeout_s: float = DEFAULT_TIMEOUT_MS / 1000,
    ) -> Fetched:
        """Run a data source (the DATA_FETCH stage, and test-datasource)."""
        if source.type is SourceType.SQL:
            return await self.sql.query(connection, source.query or "", ctx, max_rows)
        return await fetch_api(self.http, source, ctx, timeout_s)

    async def run(
        self, config: JobConfig, run: RunInput, on_stage: OnStage | None = None
    ) -> RunLog:
        """Run the stages; ``on_stage`` hears of each stage as it starts (the worker records
        it, so an interrupted run's log names the stage it was in). Within a
        ``scheduled_job.run`` span, a new trace per run; its trace id is the run log's."""
        log = RunLog()
        started = time.perf_counter()
        attributes = {
            "scheduled_job.id": run.job_id,
            "scheduled_job.run_id": run.run_id,
            "scheduled_job.trigger": run.trigger,
            "tenant.id": run.org_id,
        }
        tracing = self.telemetry.tracing
        with tracing.span("scheduled_job.run", parent=_NEW_TRACE, attributes=attributes) as span:
            traceparent, trace_id = outbound_traceparent(span)
            log.set(trace_id=trace_id)
            try:
                await self._stages(config, run, log, on_stage or _ignore, traceparent)
            finally:
                seconds = time.perf_counter() - started
                log.set(duration_ms=int(seconds * 1000))
                self.telemetry.metrics.run(
                    "scheduled_job", success=log.status == SUCCESS, seconds=seconds
                )
                if span.is_recording():
                    span.set_attribute("scheduled_job.status", log.status)
                    if log.status != SUCCESS:
                        mark_error(span, f"failed in {log.stage}")
        return log

    def _stage(self, stage: Stage, log: RunLog) -> AbstractContextManager[Span]:
        """A child span per stage; an error status when the stage failed."""
        return _StageSpan(self.telemetry, stage, log)

    async def _stages(
        self, config: JobConfig, run: RunInput, log: RunLog, on_stage: OnStage, traceparent: str
    ) -> None:
        with self._stage(Stage.DATA_FETCH, log):
            try:
                fetched = await self.fetch(
                    config.source,
                    run.connection_string,
                    run.variables,
                    max_rows=self.max_rows,
                    timeout_s=config.timeout_ms / 1000,
                )
            except Exception as exc:
                log.fail(Stage.DATA_FETCH, exc)
                return
        data, truncated = cap_json(fetched.data, DATA_CAP_BYTES)
        log.set(
            data_fetch_stage=SUCCESS,
            records_fetched=fetched.records,
            data_fetched=data,
            data_truncated=truncated,
        )
        log.stage = Stage.TRANSFORMATION
        await on_stage(log.stage)
        with self._stage(Stage.TRANSFORMATION, log):
            try:
                payload = await self._transform(config, run, fetched)
                orjson.dumps(payload)  # must be JSON to be sent
            except Exception as exc:
                log.fail(Stage.TRANSFORMATION, exc)
                return
        log.set(
            transformation_stage=SUCCESS,
            transformed_payload=cap_json(payload, PAYLOAD_CAP_BYTES)[0],
        )
        log.stage = Stage.DELIVERY
        await on_stage(log.stage)
        with self._stage(Stage.DELIVERY, log) as span:
            try:
                await self._deliver(
                    config, run, payload, log, _child_traceparent(span, traceparent)
                )
            except Exception as exc:
                log.fail(Stage.DELIVERY, exc)

    async def _transform(self, config: JobConfig, run: RunInput, fetched: Fetched) -> Any:
        transformation = config.transformation
        if transformation.mode is None:
            return fetched.data
        key = ("scheduled-job", run.job_id, run.version)
        transformer = self._compiled.get_or_compile(
            key,
            lambda: compile_transformer(
                transformation.mode or "SCRIPT",
                transformation.script or "",
                limits=self.limits,
                loc=("transformation", "script"),
            ),
        )
        metadata = {
            "jobId": run.job_id,
            "jobName": run.job_name,
            "tenantId": run.org_id,
            "runId": run.run_id,
            "trigger": run.trigger,
            "scheduledFor": run.scheduled_for.isoformat().replace("+00:00", "Z"),
            "timezone": run.timezone,
            "recordsFetched": fetched.records,
        }
        document = {"data": fetched.data, "metadata": metadata}
        # QuickJS releases the GIL and JSONata yields it: run off the event loop.
        return await asyncio.to_thread(transformer.transform, document, metadata)

    async def _deliver(
        self, config: JobConfig, run: RunInput, payload: Any, log: RunLog, traceparent: str
    ) -> None:
        auth = static_auth(config.auth, run.job_id)
        body = orjson.dumps(payload)
        policy = config.retry_policy
        attempt = 0
        while True:
            request = await self._request(config, run, auth, body, traceparent)
            log.set(
                delivery_attempts=attempt + 1,
                http_request={
                    "method": request.method,
                    "url": request.masked_url(),
                    "headers": headers_dict(request.masked_headers()),
                    "body": payload,
                },
                curl_command=request.curl(masked=True),
            )
            decision, error = await self._send(config, request, log)
            if decision is Decision.SUCCESS:
                log.status = SUCCESS
                log.set(delivery_stage=SUCCESS, error_context=None)
                return
            if log.fields.get("response_status") == 401 and auth.oauth is not None:
                self.oauth.invalidate(auth.oauth)
            if decision is not Decision.RETRY or attempt >= policy.max_retries:
                log.fail(Stage.DELIVERY, error)
                return
            await self.sleep(policy.next_delay(attempt, random.random()))
            attempt += 1

    async def _request(
        self, config: JobConfig, run: RunInput, auth: StaticAuth, body: bytes, traceparent: str
    ) -> PreparedRequest:
        headers = [
            ("content-type", "application/json"),
            ("user-agent", self.http.user_agent),
            ("idempotency-key", run.run_id),
            ("traceparent", traceparent),
        ]
        credentials_from = len(headers)
        headers += auth.headers
        secrets = tuple(auth.secret_values)
        if config.auth.type is AuthType.OAUTH2 and auth.oauth is not None:
            token = await self.oauth.token(auth.oauth)
            headers.append(("authorization", f"Bearer {token}"))
            secrets = (*secrets, token)
        url = with_query(config.target_url, auth.query)
        return PreparedRequest(
            config.http_method.value,
            url,
            headers,
            body,
            None,  # no signature: scheduled jobs authenticate with the outgoing auth only
            None,  # the log keeps the transformed payload itself
            secrets,
            credentials_from,
            mask_url(url, secrets),
        )

    async def _send(
        self, config: JobConfig, request: PreparedRequest, log: RunLog
    ) -> tuple[Decision, BaseException]:
        try:
            result = await self.http.send(
                request.method,
                request.url,
                headers=request.headers,
                body=request.body,
                timeout_seconds=config.timeout_ms / 1000,
            )
        except OutboundNetworkError as exc:
            log.set(response_status=None, response_headers=None, response_body=None)
            return Decision.RETRY, exc
        text = result.body[:RESPONSE_CAP_BYTES].decode(errors="replace")
        log.set(
            response_status=result.status,
            response_headers=headers_dict(result.headers),
            response_body=text,
        )
        verdict = classify(result.status, now=time.time())
        return verdict.decision, DeliveryFailed(f"target answered HTTP {result.status}")


# A run starts its own trace (it is not a child of whatever task claimed it).
_NEW_TRACE: Final = Context()


class _StageSpan:
    """``scheduled_job.<stage>``: the stage's span, marked as an error when the run failed
    in it (the stages catch their own errors into the log, so nothing propagates)."""

    __slots__ = ("_inner", "log", "stage", "telemetry")

    def __init__(self, telemetry: Telemetry, stage: Stage, log: RunLog) -> None:
        self.telemetry, self.stage, self.log = telemetry, stage, log
        self._inner: AbstractContextManager[Span] | None = None

    def __enter__(self) -> Span:
        self._inner = self.telemetry.tracing.span(
            f"scheduled_job.{self.stage.lower()}",
            kind=SpanKind.CLIENT if self.stage is Stage.DELIVERY else SpanKind.INTERNAL,
            attributes={"scheduled_job.stage": str(self.stage)},
        )
        return self._inner.__enter__()

    def __exit__(self, *exc_info: Any) -> bool | None:
        span = get_current_span()
        context = self.log.fields.get("error_context")
        if span.is_recording() and context and context.get("stage") == str(self.stage):
            mark_error(span, str(context.get("type") or "failed"))
        assert self._inner is not None
        return self._inner.__exit__(*exc_info)


def _child_traceparent(span: Span, fallback: str) -> str:
    """The delivery stage's context (tracing off: the run's, as generated)."""
    return outbound_traceparent(span)[0] if span.get_span_context().is_valid else fallback


class DeliveryFailed(JunctionboxError):
    """The target did not accept the payload."""
