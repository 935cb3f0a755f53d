"""The delivery worker against a real recording sink, on SQLite and PostgreSQL.

Each test enqueues delivery jobs as the dispatcher would and runs the worker until the
queue is idle (bounded), then looks at what the sink received, the delivery log, the jobs
and what the listeners were told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from standardwebhooks.webhooks import Webhook
from tests.integration.delivery_helpers import (
    ORG,
    UNIT,
    Published,
    Recorder,
    add_integration,
    delivery_of,
    enqueue,
    headers_of,
    job,
    log_rows,
    publish,
    reload,
)
from tests.integration.dispatch_helpers import tenant

from junctionbox.connectors.destinations import DestinationResult, HttpDestination
from junctionbox.domain.circuit_breaker import BreakerConfig
from junctionbox.domain.delivery import DeliveryJob, DeliveryOutcome, EventRef, FinalState
from junctionbox.engine.delivery_attempt import AttemptOutcome
from junctionbox.engine.delivery_commit import Committed
from junctionbox.engine.delivery_worker import LANE_IDLE_SECONDS, DeliveryWorker
from junctionbox.queue.jobs import ClaimRequest, JobState
from junctionbox.services.container import Services
from junctionbox.services.outbound_request import PreparedRequest
from junctionbox.store.queries.alerts import alerts_of
from junctionbox.store.tables import dlq_entries, jobs
from junctionbox.testing import Behaviour, RecordingSink

# A breaker that never trips: these tests look at single deliveries, not at the breaker.
CALM = BreakerConfig(failure_threshold=1000)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def worker_of(svc: Services, recorder: Recorder, **options: object) -> DeliveryWorker:
    options.setdefault("breaker_config", CALM)
    return DeliveryWorker(svc, node_id="test-node", listeners=[recorder], **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the happy path


async def test_an_event_is_delivered_once_signed_and_logged(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/hook"))
    [event] = await publish(svc, payload=b'{"orderId": 42, "total": 9.5}')
    [job_id] = await enqueue(svc, stored, [event])

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    [request] = sink.requests
    delivery = delivery_of(stored, event)
    assert request.method == "POST"
    assert request.body == b'{"orderId": 42, "total": 9.5}'  # the stored bytes, unchanged
    assert request.header("webhook-id") == delivery.message_id
    secret = stored.signing_keys[0].key
    assert Webhook(secret).verify(request.body, dict(request.headers)) == {
        "orderId": 42,
        "total": 9.5,
    }
    assert (await job(svc, job_id)).state is JobState.DONE
    [row] = await log_rows(svc)
    assert row["status"] == "SUCCESS"
    assert (row["delivery_id"], row["job_id"], row["event_id"]) == (
        delivery.message_id,
        job_id,
        event.event_id,
    )
    assert row["response_status"] == 200
    assert row["attempt_count"] == 1
    assert row["trigger_type"] == "EVENT"
    assert row["should_retry"] is False
    assert row["delivered_at"] is not None
    assert row["signature"] == request.header("webhook-signature")
    assert row["request_body"] == '{"orderId": 42, "total": 9.5}'
    assert row["original_payload"] == '{"orderId": 42, "total": 9.5}'
    assert headers_of(row)["webhook-id"] == delivery.message_id
    assert row["target_url"] == sink.url("/hook")
    assert len(row["trace_id"]) == 32
    steps = [step["step"] for step in row["steps"]]
    assert steps == ["match", "transform", "auth", "request", "response", "decision"]
    # The command is left out of the stored trace (the row's columns give it back) and
    # rebuilt by the log's reader.
    assert "curl" not in row["steps"][3]["detail"]
    trace = await svc.delivery_logs.trace(tenant(ORG), row["trace_id"])
    assert trace.curl is not None
    assert trace.curl.startswith(f"curl -X POST '{sink.url('/hook')}'")
    assert f"-H 'webhook-signature: {request.header('webhook-signature')}'" in trace.curl
    assert trace.curl.endswith("""--data-binary '{"orderId": 42, "total": 9.5}'""")
    [(told_job, outcome)] = recorder.outcomes
    assert told_job.message_id == delivery.message_id
    assert outcome.state is FinalState.DELIVERED
    assert (outcome.attempts, outcome.response_status) == (1, 200)


async def test_an_organization_integration_delivers_its_units_events(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/org-hook"), org_id=ORG)
    events = await publish(svc, org_id=UNIT)
    await enqueue(svc, stored, events)
    await worker_of(svc, recorder).run_until_idle(timeout=10)
    assert len(sink.requests_to("/org-hook")) == 1
    [row] = await log_rows(svc)
    assert (row["org_id"], row["status"]) == (UNIT, "SUCCESS")


async def test_an_integration_of_another_tenant_is_never_used(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/foreign"), org_id=200)
    events = await publish(svc, org_id=ORG)
    [job_id] = await enqueue(svc, stored, events)
    await worker_of(svc, recorder).run_until_idle(timeout=10)
    assert sink.requests == []
    assert recorder.states() == ["SKIPPED"]
    assert (await job(svc, job_id)).state is JobState.DONE


# ---------------------------------------------------------------- status codes


async def test_status_code_matrix(svc: Services, sink: RecordingSink, recorder: Recorder) -> None:
    """2xx delivered; other 4xx final at once; 408, 429, 5xx retried (max 1 retry here);
    3xx a failure, never followed; 410 disables the integration."""
    expected = {
        200: ("DELIVERED", 1),
        201: ("DELIVERED", 1),
        204: ("DELIVERED", 1),
        400: ("DEAD_LETTERED", 1),
        401: ("DEAD_LETTERED", 1),
        403: ("DEAD_LETTERED", 1),
        404: ("DEAD_LETTERED", 1),
        422: ("DEAD_LETTERED", 1),
        408: ("DEAD_LETTERED", 2),
        429: ("DEAD_LETTERED", 2),
        500: ("DEAD_LETTERED", 2),
        502: ("DEAD_LETTERED", 2),
        503: ("DEAD_LETTERED", 2),
        504: ("DEAD_LETTERED", 2),
        301: ("DEAD_LETTERED", 1),
        302: ("DEAD_LETTERED", 1),
        410: ("DISABLED", 1),
    }
    redirect = {"Location": sink.url("/elsewhere")}
    integrations = {}
    for status in expected:
        sink.on(f"/s{status}", Behaviour(status, headers=redirect if status in (301, 302) else {}))
        integrations[status] = await add_integration(
            svc,
            sink.url(f"/s{status}"),
            retryPolicy={"maxRetries": 1, "initialDelay": 1, "maxDelay": 2},
        )
        await enqueue(svc, integrations[status], await publish(svc))

    await worker_of(svc, recorder).run_until_idle(timeout=15)

    assert sink.requests_to("/elsewhere") == []
    for status, (state, sends) in expected.items():
        stored = integrations[status]
        assert len(sink.requests_to(f"/s{status}")) == sends, status
        [(_, outcome)] = [(j, o) for j, o in recorder.outcomes if j.integration_id == stored.id]
        assert (outcome.state.value, outcome.attempts, outcome.response_status) == (
            state,
            sends,
            status,
        ), status
        rows = await log_rows(svc, integration_id=stored.id)
        final = "SUCCESS" if state == "DELIVERED" else "FAILED"
        assert [r["status"] for r in rows] == ["RETRYING"] * (sends - 1) + [final], status
        assert (await reload(svc, stored.id)).is_active is (status != 410), status
    categories = {
        status: (await log_rows(svc, integration_id=integrations[status].id))[-1]["error_category"]
        for status in (301, 404, 408, 429, 503, 410)
    }
    assert categories == {
        301: "REDIRECT",
        404: "CLIENT_ERROR",
        408: "TIMEOUT",
        429: "RATE_LIMITED",
        503: "SERVER_ERROR",
        410: "GONE",
    }
    async with svc.db.read() as conn:
        alerts = await alerts_of(conn, [ORG])
    assert [(a["kind"], a["subject_id"]) for a in alerts] == [
        ("INTEGRATION_GONE", integrations[410].id)
    ]


async def test_retry_after_is_honoured_and_retries_keep_the_webhook_id(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/busy", Behaviour(503, headers={"Retry-After": "1"}))
    stored = await add_integration(
        svc, sink.url("/busy"), retryPolicy={"maxRetries": 1, "initialDelay": 1, "maxDelay": 2}
    )
    [job_id] = await enqueue(svc, stored, await publish(svc))

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    first, second = sink.requests
    assert second.received_at - first.received_at >= 0.95
    assert first.header("webhook-id") == second.header("webhook-id")
    assert first.header("webhook-timestamp") != second.header("webhook-timestamp")
    assert first.header("webhook-signature") != second.header("webhook-signature")
    secret = stored.signing_keys[0].key
    for request in (first, second):
        Webhook(secret).verify(request.body, dict(request.headers))
    rows = await log_rows(svc)
    assert [(r["status"], r["attempt_count"], r["should_retry"]) for r in rows] == [
        ("RETRYING", 1, True),
        ("FAILED", 2, False),
    ]
    assert recorder.states() == ["DEAD_LETTERED"]
    dead = await job(svc, job_id)
    assert (dead.state, dead.attempts) == (JobState.DEAD, 2)
    assert dead.last_error == "HTTP 503 Service Unavailable"


async def test_network_failures_are_retried(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/reset", Behaviour.reset(), Behaviour(200))
    sink.on("/hang", Behaviour.hang(), Behaviour(200))
    reset = await add_integration(svc, sink.url("/reset"))
    hang = await add_integration(svc, sink.url("/hang"), timeoutMs=300)
    await enqueue(svc, reset, await publish(svc))
    await enqueue(svc, hang, await publish(svc))

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    assert recorder.states() == ["DELIVERED", "DELIVERED"]
    reset_rows = await log_rows(svc, integration_id=reset.id)
    assert [(r["status"], r["error_category"]) for r in reset_rows] == [
        ("RETRYING", "NETWORK_ERROR"),
        ("SUCCESS", None),
    ]
    hang_rows = await log_rows(svc, integration_id=hang.id)
    assert [(r["status"], r["error_category"]) for r in hang_rows] == [
        ("RETRYING", "TIMEOUT"),
        ("SUCCESS", None),
    ]
    assert hang_rows[0]["error_message"].startswith("ETIMEDOUT")


async def test_a_refused_destination_fails_at_once_with_one_message(
    svc: Services, recorder: Recorder
) -> None:
    stored = await add_integration(svc, "http://127.0.0.1:9/blocked")  # not allow-listed
    await enqueue(svc, stored, await publish(svc))
    await worker_of(svc, recorder).run_until_idle(timeout=10)
    [row] = await log_rows(svc)
    assert (row["status"], row["error_category"]) == ("FAILED", "DESTINATION_REFUSED")
    assert row["error_message"] == "destination address is not allowed"
    assert recorder.states() == ["DEAD_LETTERED"]


# ---------------------------------------------------------------- jobs that cannot run


async def test_a_transformation_error_is_final_and_nothing_is_sent(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(
        svc,
        sink.url("/never"),
        transformationMode="SCRIPT",
        transformScript='throw new Error("no total in " + payload.orderId);',
    )
    await enqueue(svc, stored, await publish(svc, payload=b'{"orderId": 7}'))
    await worker_of(svc, recorder).run_until_idle(timeout=10)
    assert sink.requests == []
    [row] = await log_rows(svc)
    assert (row["status"], row["error_category"]) == ("FAILED", "TRANSFORM_ERROR")
    assert "no total in 7" in row["error_message"]
    [(_, outcome)] = recorder.outcomes
    assert (outcome.state, outcome.error_category) == (FinalState.DEAD_LETTERED, "TRANSFORM_ERROR")


async def test_inactive_deleted_and_missing_cases(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    inactive = await add_integration(svc, sink.url("/off"), isActive=False)
    live = await add_integration(svc, sink.url("/on"))
    await enqueue(svc, inactive, await publish(svc))
    gone = Published(ORG, "evt_gone", EventRef("default", 0, 999_999), b"")
    [missing_job] = await enqueue(svc, live, [gone])

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    assert sink.requests == []
    assert recorder.states() == ["DEAD_LETTERED", "SKIPPED"]
    [row] = await log_rows(svc)
    assert (row["status"], row["error_category"]) == ("FAILED", "EVENT_MISSING")
    assert (await job(svc, missing_job)).state is JobState.DEAD
    # A missing event is not the integration's fault: no step toward auto-disable.
    assert (await reload(svc, live.id)).consecutive_failures == 0


# ---------------------------------------------------------------- leases


async def test_a_lost_lease_records_nothing(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/slow", Behaviour(200, delay=0.5))
    stored = await add_integration(svc, sink.url("/slow"))
    [job_id] = await enqueue(svc, stored, await publish(svc))
    worker = worker_of(svc, recorder)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await sink.wait_for(1, timeout=5)
        async with svc.db.write() as conn:  # the lease expired and another worker took it
            await conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(lease_token="someone-else")
            )
        async with asyncio.timeout(5):
            while worker.in_flight:  # noqa: ASYNC110 (a state, no event)
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    assert await log_rows(svc) == []
    assert recorder.outcomes == []
    stolen = await job(svc, job_id)
    assert (stolen.state, stolen.lease_token) == (JobState.RUNNING, "someone-else")


async def test_heartbeats_keep_a_long_attempt_ours(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/long", Behaviour(200, delay=2.0))
    stored = await add_integration(svc, sink.url("/long"))
    [job_id] = await enqueue(svc, stored, await publish(svc))
    # A one-second lease, beaten every third of a second, outlives a two-second request;
    # another node looking for work meanwhile finds nothing to take over.
    worker = worker_of(svc, recorder, lease_seconds=1.0)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await sink.wait_for(1, timeout=5)
        await asyncio.sleep(1.5)
        assert await svc.queue.claim("deliveries", "other-node", 10, 1.0) == []
        async with asyncio.timeout(5):
            while worker.in_flight:  # noqa: ASYNC110 (a state, no event)
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    done = await job(svc, job_id)
    assert (done.state, done.attempts) == (JobState.DONE, 1)
    assert len(sink.requests) == 1
    assert recorder.states() == ["DELIVERED"]


async def test_a_stop_gives_unfinished_jobs_back_without_spending_attempts(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    sink.on("/stuck", Behaviour.hang())
    stored = await add_integration(svc, sink.url("/stuck"))
    job_ids = await enqueue(svc, stored, await publish(svc, 3))
    worker = worker_of(svc, recorder, concurrency=2, destination_concurrency=1, grace_seconds=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await sink.wait_for(1, timeout=5)
    await asyncio.sleep(0.1)
    stop.set()
    async with asyncio.timeout(5):
        await running
    for job_id in job_ids:
        waiting = await job(svc, job_id)
        assert (waiting.state, waiting.attempts) == (JobState.READY, 0)
    assert await log_rows(svc) == []


# ---------------------------------------------------------------- claiming in the commit


def claims_in_commits(worker: DeliveryWorker) -> list[tuple[bool, int]]:
    """Watch the worker's commits: (whether it asked for a claim, jobs it got) per commit.
    The real committer still does the work."""
    seen: list[tuple[bool, int]] = []
    commit = worker.committer.commit

    async def watched(
        outcomes: Sequence[AttemptOutcome], claim: ClaimRequest | None = None
    ) -> Committed:
        committed = await commit(outcomes, claim)
        seen.append((claim is not None, len(committed.claimed)))
        return committed

    worker.committer.commit = watched  # type: ignore[method-assign]
    return seen


@dataclass
class FailsOnce:
    """A listener whose first call fails, rolling back the whole batch's transaction."""

    failed: bool = False

    def concerns(self, job: DeliveryJob, state: FinalState) -> bool:
        return True

    async def on_final(
        self, conn: AsyncConnection, job: DeliveryJob, outcome: DeliveryOutcome
    ) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a listener failed")


async def test_a_backlog_is_claimed_in_the_commits_and_each_job_is_delivered_once(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/hook"))
    job_ids = await enqueue(svc, stored, await publish(svc, 60))
    # Two slots hold twelve claims: the backlog takes several cycles.
    worker = worker_of(svc, recorder, concurrency=2, destination_concurrency=2)
    commits = claims_in_commits(worker)

    await worker.run_until_idle(timeout=30)

    sent = [request.header("webhook-id") for request in sink.requests]
    assert len(sent) == len(set(sent)) == 60
    assert sum(got for _, got in commits) > 0  # most of the backlog came with commits
    for job_id in job_ids:
        done = await job(svc, job_id)
        assert (done.state, done.attempts) == (JobState.DONE, 1)
    assert len(await log_rows(svc)) == 60
    assert recorder.states() == ["DELIVERED"] * 60


async def test_a_claim_in_a_failed_commit_is_not_taken_on(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(svc, sink.url("/hook"))
    job_ids = await enqueue(svc, stored, await publish(svc, 30))
    worker = DeliveryWorker(
        svc,
        node_id="test-node",
        listeners=[FailsOnce(), recorder],
        breaker_config=CALM,
        concurrency=2,
        destination_concurrency=2,
    )
    commits = claims_in_commits(worker)

    await worker.run_until_idle(timeout=30)

    assert commits[0] == (True, 0)  # it asked for a claim; the transaction rolled back
    sent = [request.header("webhook-id") for request in sink.requests]
    assert len(sent) == len(set(sent)) == 30
    for job_id in job_ids:  # the rolled-back claim spent no attempt
        done = await job(svc, job_id)
        assert (done.state, done.attempts) == (JobState.DONE, 1)
    assert len(await log_rows(svc)) == 30


# ---------------------------------------------------------------- multi-action, OAuth2


async def test_actions_run_in_order_with_their_delay(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    stored = await add_integration(
        svc,
        sink.url("/first"),
        actions=[
            {"name": "create", "targetUrl": sink.url("/first")},
            {"name": "notify", "targetUrl": sink.url("/second"), "delayMs": 300},
        ],
    )
    [event] = await publish(svc)
    await enqueue(svc, stored, [event])

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    [first] = sink.requests_to("/first")
    [second] = sink.requests_to("/second")
    assert second.received_at - first.received_at >= 0.3
    assert first.header("webhook-id") == delivery_of(stored, event).message_id
    assert second.header("webhook-id") == delivery_of(stored, event, action=1).message_id
    rows = await log_rows(svc)
    assert [(r["action_index"], r["action_name"], r["status"]) for r in rows] == [
        (0, "create", "SUCCESS"),
        (1, "notify", "SUCCESS"),
    ]
    assert recorder.states() == ["DELIVERED", "DELIVERED"]


async def test_oauth2_token_is_refreshed_once_on_401(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    token = {"Content-Type": "application/json"}
    sink.on(
        "/token",
        Behaviour(200, orjson.dumps({"access_token": "tok-1", "expires_in": 3600}), token),
        Behaviour(200, orjson.dumps({"access_token": "tok-2", "expires_in": 3600}), token),
    )
    sink.on("/api", Behaviour(401), Behaviour(200))
    stored = await add_integration(
        svc,
        sink.url("/api"),
        outgoingAuthType="OAUTH2",
        outgoingAuthConfig={
            "tokenUrl": sink.url("/token"),
            "clientId": "client",
            "clientSecret": "client-secret-123",
        },
    )
    [job_id] = await enqueue(svc, stored, await publish(svc))

    await worker_of(svc, recorder).run_until_idle(timeout=10)

    first, second = sink.requests_to("/api")
    assert first.header("authorization") == "Bearer tok-1"
    assert second.header("authorization") == "Bearer tok-2"
    assert (await job(svc, job_id)).attempts == 1
    [row] = await log_rows(svc)
    assert row["status"] == "SUCCESS"
    assert "tok-2" not in orjson.dumps(row["request_headers"]).decode()
    assert "tok-2" not in orjson.dumps(row["steps"]).decode()


# ---------------------------------------------------------------- with the real listeners


async def test_a_job_never_gets_more_attempts_than_the_queue_allows(
    svc: Services, sink: RecordingSink, recorder: Recorder
) -> None:
    """A DLQ redrive is one attempt, whatever the integration's retry policy says."""
    sink.on("/down", Behaviour(503))
    stored = await add_integration(svc, sink.url("/down"))  # maxRetries 2
    [job_id] = await enqueue(svc, stored, await publish(svc), max_attempts=1)
    await worker_of(svc, recorder).run_until_idle(timeout=10)
    assert len(sink.requests) == 1
    assert (await job(svc, job_id)).state is JobState.DEAD
    assert recorder.states() == ["DEAD_LETTERED"]


async def test_a_final_failure_lands_in_the_dlq_with_its_trace(
    svc: Services, sink: RecordingSink
) -> None:
    sink.on("/nope", Behaviour(422, body=b'{"error": "bad"}'))
    stored = await add_integration(svc, sink.url("/nope"))
    [event] = await publish(svc)
    await enqueue(svc, stored, [event])
    worker = DeliveryWorker(svc, node_id="n1", listeners=[svc.dlq, svc.schedules])
    await worker.run_until_idle(timeout=10)
    async with svc.db.read() as conn:
        [entry] = (await conn.execute(select(dlq_entries))).mappings().all()
    [row] = await log_rows(svc)
    assert entry["delivery_id"] == delivery_of(stored, event).message_id
    assert (entry["status"], entry["error_category"]) == ("PENDING_RETRY", "CLIENT_ERROR")
    assert entry["trace_id"] == row["trace_id"]
    assert row["response_body"] == '{"error": "bad"}'


class _Broken(HttpDestination):
    """A destination with a bug: it raises what no destination should."""

    async def execute(self, request: PreparedRequest, *, timeout: float) -> DestinationResult:  # noqa: ASYNC109
        raise RuntimeError("bug in a destination")


async def test_an_unexpected_error_is_a_visible_failed_attempt(
    svc: Services, recorder: Recorder
) -> None:
    stored = await add_integration(svc, "https://hooks.example.com/x")
    [job_id] = await enqueue(svc, stored, await publish(svc), max_attempts=1)
    broken = _Broken(svc.http)
    await worker_of(svc, recorder, destination=broken).run_until_idle(timeout=10)
    [row] = await log_rows(svc)
    assert (row["status"], row["error_category"]) == ("FAILED", "INTERNAL_ERROR")
    assert "RuntimeError" in row["error_message"]
    assert (await job(svc, job_id)).state is JobState.DEAD
    assert recorder.states() == ["DEAD_LETTERED"]


async def test_idle_destination_lanes_are_forgotten(svc: Services, recorder: Recorder) -> None:
    """A worker serves many destinations over its life: a lane idle for ten minutes leaves
    memory (a busy one never does)."""
    worker = worker_of(svc, recorder)
    start = time.monotonic()
    idle, busy = worker._lane("https://a.example:443", start), worker._lane("https://b:443", start)
    busy.running = 1

    worker._forget_idle_lanes(start + LANE_IDLE_SECONDS - 1)
    assert set(worker._lanes) == {idle.name, busy.name}
    worker._forget_idle_lanes(start + LANE_IDLE_SECONDS + 61)
    assert set(worker._lanes) == {busy.name}
