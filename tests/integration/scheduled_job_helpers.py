"""Set-up shared by the scheduled job tests: a two-tenant world whose SSRF guard lets a
recording sink through, external databases with a ``bills`` table, and running queued runs."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import httpx
from tests.support import World, make_settings

from junctionbox.api.app import create_app
from junctionbox.engine.scheduled_jobs import ScheduledJobWorker
from junctionbox.runtime import build_services
from junctionbox.services.container import Services
from junctionbox.testing import RecordingSink

BASE = "/api/v1/scheduled-jobs"
TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
# id, org, day, amount: two of org 100 yesterday, one of org 100 today, one of org 200.
BILLS = [
    (1, 100, YESTERDAY, "12.50"),
    (2, 100, YESTERDAY, "7.25"),
    (3, 100, TODAY, "1.00"),
    (4, 200, YESTERDAY, "99.00"),
]


@asynccontextmanager
async def sink_world(
    db_url: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[World, RecordingSink]]:
    async with RecordingSink() as sink:
        services = build_services(
            make_settings(db_url, tmp_path, ssrf_allowlist=sink.allowlist_entry, **settings)
        )
        transport = httpx.ASGITransport(app=create_app(services))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield await World(c, services).build(), sink
        finally:
            await services.close()


async def run_queued(services: Services) -> int:
    """Run every queued run to its end (as the worker role would); how many ran."""
    worker = ScheduledJobWorker(
        services.scheduled_jobs, services.queue, node_id="test", concurrency=8, lease_seconds=30
    )
    count = 0
    while tasks := await worker.run_once():
        await asyncio.gather(*tasks)
        count += len(tasks)
    return count


async def call(
    world: World, method: str, path: str, caller: str = "admin", **kwargs: Any
) -> httpx.Response:
    """A request as ``caller``; the admin acts for organization 100."""
    if caller == "admin":
        kwargs["params"] = {**kwargs.get("params", {}), "orgId": 100}
    return await world.client.request(method, path, headers=world.headers[caller], **kwargs)


def job_body(target: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": fields.pop("name", f"export-{uuid.uuid4().hex[:6]}"),
        "targetUrl": target,
        "schedule": {"type": "CRON", "expression": "0 2 * * *", "timezone": "UTC"},
        "dataSource": {"type": "SQL", "query": "SELECT id, name FROM entities WHERE id = 100"},
        "retryPolicy": {"maxRetries": 1, "initialDelay": 1, "maxDelay": 5},
        **fields,
    }


def problems(response: httpx.Response) -> dict[tuple[Any, ...], str]:
    assert response.status_code == 400, response.text
    return {tuple(p["loc"]): p["message"] for p in response.json().get("details") or []}


# --- external databases with a bills table ---


def sqlite_bills(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE bills (id INTEGER, org INTEGER, day TEXT, amount NUMERIC)")
        conn.executemany(
            "INSERT INTO bills VALUES (?, ?, ?, ?)",
            [(i, o, d.isoformat(), a) for i, o, d, a in BILLS],
        )
    return f"sqlite:///{path}"


async def maria(statements: list[str], rows: list[tuple[Any, ...]] | None = None) -> None:
    conn = await aiomysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", db="test", autocommit=True
    )
    try:
        async with conn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
            if rows:
                table = statements[-1].split()[2]
                await cursor.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",  # noqa: S608 (our own table)
                    rows,
                )
    finally:
        conn.close()


async def pg(dsn: str, statements: list[str], rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
        await conn.executemany("INSERT INTO bills VALUES ($1, $2, $3, $4::numeric)", rows)
    finally:
        await conn.close()
