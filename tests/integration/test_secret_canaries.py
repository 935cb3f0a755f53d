"""Canary secrets through every path, then a scan of everything junctionbox writes outside
the encrypted store: logs, traces, metrics, error bodies, API answers, stored records.

Canaries: an API key, a login JWT, a ``whsec_`` signing secret, an outgoing OAuth/bearer
token, ``Authorization`` and ``Cookie`` request headers, a database URL and a Redis URL
with passwords. The destination itself (the recording sink) legitimately receives the
bearer token; nothing else may show any canary.
"""

from __future__ import annotations

import io
import logging
import secrets
from pathlib import Path

import orjson
from pydantic import SecretStr
from sqlalchemy import select
from tests.integration.obs_helpers import Obs, observed

from junctionbox.observability.logging import configure_logging
from junctionbox.store.tables import metadata
from junctionbox.testing import RecordingSink

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
