"""The bookkeeping floor of ``bench/deliver.py``: the least any durable delivery worker does,
measured in the same run as the raw client and the real worker.

The raw aiohttp client only sends. A worker that promises at-least-once delivery and a log of
every attempt must also, for each delivery, lease the job, write the attempt's log row (the
request and response, seed 003's ``delivery_logs``) and mark the job done, durably. Here that
is done with nothing else: junctionbox's own ``jobs`` and ``delivery_logs`` tables and indexes
in a database of their own, one claim statement per 256 jobs, one transaction per 256
outcomes (a multi-row ``INSERT`` on SQLite, run on the loop's thread; a binary ``COPY`` on
PostgreSQL), a Standard Webhooks signature per request, and junctionbox's bare HTTP/1.1
client (no SSRF guard), the fastest client here, with 64 requests in flight as the raw
client has. No retries, breakers, rate limits, traces, metrics or fairness.

Its rate over the raw client's is the highest ratio a worker can reach on the machine with
this data model: the worker's target (0.70) is read against it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from benchkit import own_cpu_seconds
from junctionbox.connectors.http1 import Http1Client, request_head
from junctionbox.domain.signing import generate_secret, webhook_headers
from junctionbox.store.tables import delivery_logs, jobs, metadata
from junctionbox.store.types import sqlite_utc_text

BATCH = 256  # jobs per claim, outcomes per commit
IN_FLIGHT = 64  # requests in flight, as the raw client's pool
SECRET = generate_secret()  # whsec_…, as an integration's
LOG_COLUMNS = (
    "id",
    "org_id",
    "integration_id",
    "integration_name",
    "direction",
    "delivery_id",
    "job_id",
    "event_id",
    "event_type",
    "status",
    "target_url",
    "http_method",
    "response_status",
    "response_time_ms",
    "attempt_count",
    "original_payload",
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "trace_id",
    "signature",
    "trigger_type",
    "should_retry",
    "created_at",
    "delivered_at",
)
_JOB_COLUMNS = (
    "id, org_id, kind, queue, state, priority, payload, attempts, max_attempts, run_at, "
    "created_at, updated_at"
)
_DUE = (
    "SELECT id FROM jobs WHERE queue = 'delivery' AND state = 'ready' "
    "ORDER BY priority DESC, run_at, created_at, id LIMIT 256"  # BATCH
)
# Every statement below is made of the constants above (S608 does not see that).
_SQLITE_INSERT_JOBS = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
_SQLITE_INSERT_LOGS = (
    f"INSERT INTO delivery_logs ({', '.join(LOG_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
)
_SQLITE_CLAIM = (
    "UPDATE jobs SET state = 'running', lease_token = ?, leased_until = ? "  # noqa: S608
    f"WHERE id IN ({_DUE}) RETURNING id, payload"
)
_PG_CLAIM = (
    "UPDATE jobs SET state = 'running', lease_token = $1, leased_until = $2 "  # noqa: S608
    f"WHERE id IN ({_DUE} FOR UPDATE SKIP LOCKED) RETURNING id, payload"
)


@dataclass
class Outcome:
    job_id: str
    token: str
    event_id: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    response_headers: list[tuple[str, str]]
    response_body: bytes
    seconds: float


@dataclass
class Job:
    id: str
    token: str
    payload: dict[str, Any]


class FloorStore(Protocol):
    """Lease, log and complete on one database (one connection)."""

    async def claim(self, token: str) -> list[Job]: ...

    async def settle(self, outcomes: Sequence[Outcome], url: str) -> None: ...

    async def logged(self) -> int: ...

    async def close(self) -> None: ...


def _job_rows(count: int, filler: str) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    return [
        (
            uuid.uuid4().hex,
            1,
            "delivery",
            "delivery",
            "ready",
            0,
            json.dumps({"eventId": f"evt_{n}", "body": {"n": n, "filler": filler}}),
            0,
            5,
            now,
            now,
            now,
        )
        for n in range(count)
    ]


def _log_row(outcome: Outcome, url: str, now: datetime) -> tuple[Any, ...]:
    body = outcome.body.decode()
    return (
        uuid.uuid4().hex,
        1,
        "floor",
        "bench floor",
        "OUTBOUND",
        outcome.job_id,
        outcome.job_id,
        outcome.event_id,
        "bench.delivered",
        "SUCCESS" if outcome.status < 300 else "FAILED",
        url,
        "POST",
        outcome.status,
        int(outcome.seconds * 1000),
        1,
        body,
        orjson.dumps(dict(outcome.headers)).decode(),
        body,
        orjson.dumps(dict(outcome.response_headers)).decode(),
        outcome.response_body.decode("utf-8", "replace"),
        uuid.uuid4().hex,
        dict(outcome.headers)["webhook-signature"],
        "EVENT",
        False,
        now,
        now,
    )


class SqliteFloor:
    def __init__(self, path: str, count: int, filler: str) -> None:
        engine = create_engine(f"sqlite:///{path}")
        metadata.create_all(engine, tables=[jobs, delivery_logs])
        engine.dispose()
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # as junctionbox runs SQLite
        rows = [_sqlite_moments(row) for row in _job_rows(count, filler)]
        self.db.execute("BEGIN")
        self.db.executemany(_SQLITE_INSERT_JOBS, rows)
        self.db.execute("COMMIT")

    async def claim(self, token: str) -> list[Job]:
        until = sqlite_utc_text(datetime.now(UTC) + timedelta(minutes=5))
        self.db.execute("BEGIN IMMEDIATE")
        rows = self.db.execute(_SQLITE_CLAIM, (token, until)).fetchall()
        self.db.execute("COMMIT")
        return [Job(id, token, orjson.loads(payload)) for id, payload in rows]

    async def settle(self, outcomes: Sequence[Outcome], url: str) -> None:
        now = datetime.now(UTC)
        rows = [_sqlite_moments(_log_row(outcome, url, now)) for outcome in outcomes]
        done = [(sqlite_utc_text(now), o.job_id, o.token) for o in outcomes]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(_SQLITE_INSERT_LOGS, rows)
        self.db.executemany(
            "UPDATE jobs SET state = 'done', finished_at = ?, lease_token = NULL "
            "WHERE id = ? AND lease_token = ?",
            done,
        )
        self.db.execute("COMMIT")

    async def logged(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM delivery_logs").fetchone()[0])

    async def close(self) -> None:
        self.db.close()


def _sqlite_moments(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(sqlite_utc_text(v) if isinstance(v, datetime) else v for v in row)


class PostgresFloor:
    @classmethod
    async def create(cls, url: str, count: int, filler: str) -> PostgresFloor:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: metadata.create_all(sync, tables=[jobs, delivery_logs])
            )
        await engine.dispose()
        db = await asyncpg.connect(url.replace("+asyncpg", ""))
        rows = _job_rows(count, filler)
        await db.copy_records_to_table("jobs", columns=_JOB_COLUMNS.split(", "), records=rows)
        await db.execute("ANALYZE jobs")
        return cls(db)

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db

    async def claim(self, token: str) -> list[Job]:
        until = datetime.now(UTC) + timedelta(minutes=5)
        rows = await self.db.fetch(_PG_CLAIM, token, until)
        return [Job(row[0], token, orjson.loads(row[1])) for row in rows]

    async def settle(self, outcomes: Sequence[Outcome], url: str) -> None:
        now = datetime.now(UTC)
        rows = [_log_row(outcome, url, now) for outcome in outcomes]
        async with self.db.transaction():
            await self.db.copy_records_to_table("delivery_logs", columns=LOG_COLUMNS, records=rows)
            await self.db.execute(
                "UPDATE jobs SET state = 'done', finished_at = $1, lease_token = NULL "
                "FROM unnest($2::text[], $3::text[]) AS settled(id, token) "
                "WHERE jobs.id = settled.id AND jobs.lease_token = settled.token",
                now,
                [o.job_id for o in outcomes],
                [o.token for o in outcomes],
            )

    async def logged(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM delivery_logs"))

    async def close(self) -> None:
        await self.db.close()


def _signed_headers(event_id: str, body: bytes) -> list[tuple[str, str]]:
    signed = webhook_headers(event_id, int(time.time()), body, [SECRET])
    return [("content-type", "application/json"), *signed.items()]


async def floor_rate(store: FloorStore, port: int, count: int) -> tuple[float, float]:
    """Deliveries/s and CPU µs per delivery of this process, delivering ``count`` jobs of
    ``store`` to the sink on ``port`` (path ``/hook``)."""
    url = f"http://127.0.0.1:{port}/hook"
    origin = ("http", "127.0.0.1", port)

    async def resolve(host: str, _port: int) -> str:
        return host

    client = Http1Client(resolve, limit=IN_FLIGHT)
    queue: asyncio.Queue[Job | None] = asyncio.Queue()
    outcomes: list[Outcome] = []

    async def sender() -> None:
        while (job := await queue.get()) is not None:
            body = orjson.dumps(job.payload["body"])
            headers = _signed_headers(job.payload["eventId"], body)
            head = request_head("POST", "/hook", f"127.0.0.1:{port}", headers, len(body))
            started = time.perf_counter()
            response = await client.request(origin, "POST", head, body)
            chunks = []
            try:
                while chunk := await response.next_chunk():
                    chunks.append(chunk)
            finally:
                response.release()
            outcomes.append(
                Outcome(
                    job.id,
                    job.token,
                    job.payload["eventId"],
                    headers,
                    body,
                    response.status,
                    response.headers,
                    b"".join(chunks),
                    time.perf_counter() - started,
                )
            )

    senders = [asyncio.create_task(sender()) for _ in range(IN_FLIGHT)]
    started, cpu = time.perf_counter(), own_cpu_seconds()
    claimed = settled = 0
    while settled < count:
        if queue.qsize() < BATCH and claimed < count:
            for job in await store.claim(uuid.uuid4().hex):
                queue.put_nowait(job)
                claimed += 1
        if len(outcomes) >= BATCH or (claimed >= count and outcomes):
            batch, outcomes[:] = list(outcomes), []
            await store.settle(batch, url)
            settled += len(batch)
        await asyncio.sleep(0.001)
    elapsed, used = time.perf_counter() - started, own_cpu_seconds() - cpu
    for _ in senders:
        queue.put_nowait(None)
    await asyncio.gather(*senders)
    if await store.logged() != count:
        raise RuntimeError("the floor did not log every delivery")
    return count / elapsed, used / count * 1e6
