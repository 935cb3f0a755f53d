"""Canary secrets through every path, then a scan of everything junctionbox writes outside
the encrypted store: logs, traces, metrics, error bodies, API answers, stored records.

Canaries: an API key, a login JWT, a ``whsec_`` signing secret, an outgoing OAuth/bearer
token, ``Authorization`` and ``Cookie`` request headers, a database URL and a Redis URL
with passwords. The destination itself (the recording sink) legitimately receives the
bearer token; nothing else may show any canary.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import orjson
from pydantic import SecretStr
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from tests.integration.obs_helpers import Obs, observed
from tests.integration.scheduled_job_helpers import job_body, run_queued

from junctionbox.observability.logging import configure_logging
from junctionbox.store.tables import metadata
from junctionbox.testing import Behaviour, RecordingSink

PROXY = "/api/v1/integrations"

OAUTH = f"oauthcanary{secrets.token_hex(8)}"
COOKIE = f"cookiecanary{secrets.token_hex(8)}"
DB_PASSWORD = f"dbpasscanary{secrets.token_hex(8)}"
REDIS_PASSWORD = f"redispasscanary{secrets.token_hex(8)}"
FAKE_KEY = f"jbk_{secrets.token_hex(16)}"


async def stored_text(obs: Obs) -> str:
    parts = []
    async with obs.services.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(select(table))).mappings():
                parts.append(repr(dict(row)))
    return "\n".join(parts)


async def exercise(obs: Obs, sink: RecordingSink, answers: list[str]) -> str:
    """Every path a canary can take; returns the whsec_ secret handed out once."""
    user = obs.world.headers["user_a"]
    created = await obs.client.post(
        "/api/v1/outbound-integrations",
        json={
            "name": "canary",
            "eventType": "order.created",
            "targetUrl": sink.url("/hook"),
            "outgoingAuthType": "BEARER",
            "outgoingAuthConfig": {"token": OAUTH},
        },
        headers=user,
    )
    assert created.status_code == 201, created.text
    whsec = created.json()["signingSecret"]  # shown once, by design: not scanned
    assert whsec.startswith("whsec_")
    listed = await obs.client.get("/api/v1/outbound-integrations", headers=user)
    answers.append(listed.text)
    cookie = {"cookie": f"session={COOKIE}"}
    await obs.publish({"type": "order.created", "data": {"n": 1}}, **cookie)
    await obs.deliver()
    [received] = sink.requests_to("/hook")
    assert received.header("authorization") == f"Bearer {OAUTH}"  # the destination gets it
    for headers in (
        {"x-api-key": FAKE_KEY, **cookie},
        {"authorization": f"Bearer {obs.world.headers['user_a']['authorization'][7:]}x"},
        {"authorization": f"Basic {OAUTH}"},
    ):
        answers.append((await obs.client.get("/api/v1/dashboard", headers=headers)).text)
    bad = await obs.client.post(
        "/api/v1/outbound-integrations",
        json={
            "name": "x",
            "eventType": "t",
            "targetUrl": "nope",
            "outgoingAuthType": "BEARER",
            "outgoingAuthConfig": {"token": OAUTH},
        },
        headers=user,
    )
    assert bad.status_code == 400
    answers.append(bad.text)
    obs.services.settings = obs.services.settings.model_copy(
        update={"redis_url": SecretStr(f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0")}
    )
    answers.append((await obs.client.get("/api/v1/health")).text)
    for path in (
        "/api/v1/logs",
        "/api/v1/execution-logs",
        "/api/v1/dashboard",
        "/api/v1/analytics",
    ):
        answers.append((await obs.client.get(path, headers=user)).text)
    logging.getLogger("junctionbox.test").warning(
        "connecting to %s", f"postgresql://jb:{DB_PASSWORD}@db.internal:5432/jb"
    )
    logging.getLogger("junctionbox.test").warning(
        "request headers", extra={"headers": {"Authorization": f"Bearer {OAUTH}", "Cookie": COOKIE}}
    )
    return str(whsec)


async def test_no_canary_secret_leaves_the_encrypted_store(db_url: str, tmp_path: Path) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("json", "INFO", stream=buffer)
    answers: list[str] = []
    try:
        async with (
            RecordingSink() as sink,
            observed(db_url, tmp_path, [sink.allowlist_entry]) as obs,
        ):
            whsec = await exercise(obs, sink, answers)
            canaries = {
                "api key": obs.world.headers["key_a"]["x-api-key"],
                "fake api key": FAKE_KEY,
                "jwt": obs.world.headers["user_a"]["authorization"][7:],
                "whsec": whsec,
                "whsec body": whsec.removeprefix("whsec_"),
                "oauth token": OAUTH,
                "cookie": COOKIE,
                "db password": DB_PASSWORD,
                "redis password": REDIS_PASSWORD,
            }
            metrics = (await obs.client.get("/metrics")).text
            spans = "\n".join(s.to_json() for s in obs.spans.get_finished_spans())
            stored = await stored_text(obs)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    places = {
        "logs": buffer.getvalue(),
        "traces": spans,
        "metrics": metrics,
        "answers and error bodies": "\n".join(answers),
        "stored records": stored,
    }
    assert "connecting to postgresql://jb:" in places["logs"]  # the log line was written
    assert spans
    assert metrics
    assert stored
    leaks = [
        (canary, place)
        for canary, value in canaries.items()
        for place, text in places.items()
        if value in text
    ]
    assert leaks == [], leaks
    # Log lines are JSON with the request context on them.
    lines = [orjson.loads(line) for line in places["logs"].splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "junctionbox.access"]
    assert access
    assert all("request_id" in line and "trace_id" in line for line in access)


# --- the requests-in side: inbound proxy, gateway routes, webhook receiver, scheduled jobs ---

INBOUND_KEY = f"inboundkeycanary{secrets.token_hex(8)}"
CLIENT_SECRET = f"clientsecretcanary{secrets.token_hex(8)}"
ACCESS_TOKEN = f"accesstokencanary{secrets.token_hex(8)}"
GATEWAY_JWT_SECRET = f"gwjwtsecretcanary{secrets.token_hex(16)}"
WEBHOOK_SECRET = f"whsec_{base64.b64encode(secrets.token_bytes(24)).decode()}"
JOB_DB_PASSWORD = f"jobdbpasscanary{secrets.token_hex(8)}"
JOB_BEARER = f"jobbearercanary{secrets.token_hex(8)}"


async def exercise_requests_in(obs: Obs, sink: RecordingSink, answers: list[str]) -> str:
    """The proxy (inbound key, OAuth client secret and token), a gateway JWT route, a
    webhook source, scheduled jobs (a connection string with a password, a bearer token);
    returns the gateway JWT the client sent."""
    user, key = obs.world.headers["user_a"], obs.world.headers["key_a"]
    token_type = {"Content-Type": "application/json"}
    grant = orjson.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3600})
    sink.on("/token", Behaviour(200, grant, token_type))
    sink.on("/book", Behaviour(201, b"{}"), Behaviour(500))
    created = await obs.client.post(
        "/api/v1/inbound-integrations?orgId=100",
        json={
            "name": "canary proxy",
            "type": "canary-proxy",
            "targetUrl": sink.url("/book"),
            "httpMethod": "POST",
            "inboundAuthType": "API_KEY",
            "inboundAuthConfig": {"value": INBOUND_KEY},
            "outgoingAuthType": "OAUTH2",
            "outgoingAuthConfig": {
                "tokenUrl": sink.url("/token"),
                "clientId": "client",
                "clientSecret": CLIENT_SECRET,
            },
        },
        headers=user,
    )
    assert created.status_code == 201, created.text
    answers.append(created.text)
    answers.append((await obs.client.get("/api/v1/inbound-integrations", headers=user)).text)
    proxied = f"{PROXY}/canary-proxy?orgId=100"
    for inbound in (INBOUND_KEY, INBOUND_KEY, INBOUND_KEY + "x"):
        headers = {**key, "x-integration-key": inbound, "cookie": f"s={COOKIE}"}
        answers.append((await obs.client.post(proxied, content=b"{}", headers=headers)).text)
    booked = sink.requests_to("/book")
    assert booked[0].header("authorization") == f"Bearer {ACCESS_TOKEN}"  # the upstream gets it
    await obs.services.proxy.logs.flush()

    route = {
        "path": "/reports",
        "targetUrl": sink.url("/gw"),
        "authentication": {"type": "JWT", "jwt": {"secret": GATEWAY_JWT_SECRET}},
    }
    configured = await obs.client.post(
        "/api/v1/integration/api-gateway/configure?orgId=100", json=route, headers=user
    )
    assert configured.status_code in (200, 201), configured.text
    answers.append(configured.text)
    client_jwt = jwt.encode({"sub": "c1", "exp": int(time.time()) + 300}, GATEWAY_JWT_SECRET)
    ok = await obs.client.get("/gw/100/reports", headers={"authorization": f"Bearer {client_jwt}"})
    assert ok.status_code == 200, ok.text
    bad = jwt.encode({"sub": "c1"}, GATEWAY_JWT_SECRET + "x")
    answers.append(
        (await obs.client.get("/gw/100/reports", headers={"authorization": f"Bearer {bad}"})).text
    )

    source = await obs.client.post(
        "/api/v1/webhook-sources",
        json={
            "name": "canary source",
            "eventType": "order.paid",
            "verification": {"scheme": "STANDARD_WEBHOOKS", "secret": WEBHOOK_SECRET},
        },
        headers=user,
    )
    assert source.status_code == 201, source.text
    answers.append(source.text)
    body = b'{"paid": 1}'
    sent = datetime.now(UTC)
    signed = {
        "webhook-id": "msg_canary",
        "webhook-timestamp": str(int(sent.timestamp())),
        "webhook-signature": Webhook(WEBHOOK_SECRET).sign("msg_canary", sent, body),
        "content-type": "application/json",
    }
    path = f"/api/v1/webhooks/{source.json()['id']}"
    accepted = await obs.client.post(path, content=body, headers=signed)
    assert accepted.status_code == 202, accepted.text
    forged = {**signed, "webhook-id": "msg_forged", "authorization": f"Bearer {OAUTH}"}
    answers.append((await obs.client.post(path, content=body, headers=forged)).text)

    admin = obs.world.headers["admin"]  # SQL data sources need the ADMIN role
    for data_source, target in (
        (
            {
                "type": "SQL",
                "query": "SELECT 1 AS one",
                "connectionString": f"postgresql://jb:{JOB_DB_PASSWORD}@127.0.0.1:1/jb",
            },
            sink.url("/job"),
        ),
        ({"type": "SQL", "query": "SELECT id FROM entities WHERE id = 100"}, sink.url("/job")),
    ):
        job = await obs.client.post(
            "/api/v1/scheduled-jobs?orgId=100",
            json=job_body(
                target,
                dataSource=data_source,
                outgoingAuthType="BEARER",
                outgoingAuthConfig={"token": JOB_BEARER},
            ),
            headers=admin,
        )
        assert job.status_code == 201, job.text
        answers.append(job.text)
        await obs.client.post(
            f"/api/v1/scheduled-jobs/{job.json()['id']}/execute?orgId=100", headers=admin
        )
    assert await run_queued(obs.services) == 2
    assert sink.requests_to("/job")[0].header("authorization") == f"Bearer {JOB_BEARER}"
    answers.append((await obs.client.get("/api/v1/scheduled-jobs?orgId=100", headers=admin)).text)
    for path in ("/api/v1/logs", "/api/v1/logs?direction=INBOUND", "/api/v1/dlq"):
        answers.append((await obs.client.get(path, headers=admin)).text)
    return client_jwt


async def test_no_canary_leaves_through_the_requests_in_side(db_url: str, tmp_path: Path) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("json", "INFO", stream=buffer)
    answers: list[str] = []
    try:
        async with (
            RecordingSink() as sink,
            observed(db_url, tmp_path, [sink.allowlist_entry]) as obs,
        ):
            obs.services.scheduled_jobs.runner.sleep = _no_sleep
            client_jwt = await exercise_requests_in(obs, sink, answers)
            metrics = (await obs.client.get("/metrics")).text
            spans = "\n".join(s.to_json() for s in obs.spans.get_finished_spans())
            stored = await stored_text(obs)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    canaries = {
        "inbound api key": INBOUND_KEY,
        "oauth client secret": CLIENT_SECRET,
        "oauth access token": ACCESS_TOKEN,
        "gateway jwt secret": GATEWAY_JWT_SECRET,
        "gateway client jwt": client_jwt,
        "webhook secret": WEBHOOK_SECRET,
        "webhook secret body": WEBHOOK_SECRET.removeprefix("whsec_"),
        "job db password": JOB_DB_PASSWORD,
        "job bearer": JOB_BEARER,
        "cookie": COOKIE,
        "authorization": OAUTH,
    }
    places = {
        "logs": buffer.getvalue(),
        "traces": spans,
        "metrics": metrics,
        "answers and error bodies": "\n".join(answers),
        "stored records": stored,
    }
    assert "proxy.call" in spans
    assert "gateway.call" in spans
    assert "webhook.receive" in spans
    assert "scheduled_job.run" in spans
    leaks = [
        (canary, place)
        for canary, value in canaries.items()
        for place, text in places.items()
        if value in text
    ]
    assert leaks == [], leaks


async def _no_sleep(_: float) -> None:
    return None
