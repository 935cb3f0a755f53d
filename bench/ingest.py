"""Ingest benchmark: publishing 1 KiB events over HTTP against raw inserts of the same rows.

Run: ``python bench/ingest.py [--quick] [--backend sqlite|postgres|both]``.

For each backend it starts ``junctionbox serve --roles api`` as a subprocess on a free port
and reports, in the same run:

- batched publish (1000 events per request) in events/s, against the raw rate of inserting
  the same rows into the same ``events`` table with the same driver (aiosqlite / asyncpg
  ``executemany``, one transaction per 1000), and on PostgreSQL also against ``COPY``;
- single-event publish latency p50/p99 with requests sent at a fixed rate (open loop, so a
  slow response does not slow the sender down and hide the queueing).

The client runs on the same machine as the server, so both share its cores, and other work
on the machine moves the rates. So each phase also reports CPU time per event: of the server
process (utime + stime of all its threads, from ``/proc/<pid>/stat``) against the raw
baseline's process, and on PostgreSQL of the database's backends serving either. CPU per
event barely moves with the machine's load; rates and latencies do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from benchkit import free_port, open_loop, own_cpu_seconds, process_cpu_seconds

from junctionbox.store import migrate
from junctionbox.store.database import Database
from junctionbox.store.queries.events import INSERT_COLUMNS

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
DATA = {"patient": {"id": "p-1", "name": "A" * 900}, "ward": "north", "n": 0}


def event(n: int) -> dict[str, object]:
    return {"type": "patient.updated", "data": {**DATA, "n": n}, "partitionKey": f"p{n % 64}"}


async def backends_cpu(admin: asyncpg.Connection, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to ``database``."""
    rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    found = {}
    for row in rows:
        with contextlib.suppress(FileNotFoundError):  # the backend ended meanwhile
            found[row["pid"]] = process_cpu_seconds(row["pid"])
    return found


def backends_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two samples; a backend new in ``after`` counts from zero."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


@dataclass
class Cost:
    """CPU milliseconds per event of one phase: the process measured and the database's."""

    process_ms: float
    database_ms: float | None = None

    def __str__(self) -> str:
        text = f"{self.process_ms:.3f} ms CPU/event"
        if self.database_ms is not None:
            text += f" (+ PostgreSQL {self.database_ms:.3f})"
        return text


class Meter:
    """Measures one phase's CPU: of a process (by pid, or this one) and of the database."""

    def __init__(
        self, pid: int | None, admin: asyncpg.Connection | None = None, database: str = ""
    ) -> None:
        self.pid, self.admin, self.database = pid, admin, database

    def _process(self) -> float:
        return own_cpu_seconds() if self.pid is None else process_cpu_seconds(self.pid)

    async def start(self) -> None:
        self._started = self._process()
        self._backends = await backends_cpu(self.admin, self.database) if self.admin else {}

    async def stop(self, events: int) -> Cost:
        used = self._process() - self._started
        database = None
        if self.admin:
            after = await backends_cpu(self.admin, self.database)
            database = backends_used(self._backends, after) * 1000 / events
        return Cost(used * 1000 / events, database)


# --- raw baselines ---


def raw_rows(count: int) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    payload = orjson.dumps(DATA)
    return [
        (
            1,
            "default",
            n % 4,
            n,
            f"evt_{n}",
            "junctionbox",
            "patient.updated",
            None,
            None,
            now,
            f"p{n % 64}",
            "application/json",
            None,
            None,
            payload,
            len(payload),
        )
        for n in range(count)
    ]


COLUMNS = INSERT_COLUMNS  # the same columns, in the order the service inserts them


async def raw_sqlite(path: Path, batches: int) -> tuple[float, Cost]:
    import aiosqlite

    db = Database(f"sqlite+aiosqlite:///{path}")
    await migrate.upgrade(db)
    await db.dispose()
    rows = raw_rows(batches * 1000)
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608 (fixed column names)
    meter = Meter(None)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await meter.start()
        started = time.perf_counter()
        for i in range(batches):
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(
                sql,
                [(*r[:9], r[9].isoformat(" "), *r[10:]) for r in rows[i * 1000 : (i + 1) * 1000]],
            )
            await conn.commit()
        rate = batches * 1000 / (time.perf_counter() - started)
        return rate, await meter.stop(batches * 1000)


async def raw_postgres(
    admin: asyncpg.Connection, database: str, batches: int
) -> dict[str, tuple[float, Cost]]:
    rows = raw_rows(batches * 1000)
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    meter = Meter(None, admin, database)
    try:
        placeholders = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608 (fixed column names)
        await meter.start()
        started = time.perf_counter()
        for i in range(batches):
            async with conn.transaction():
                await conn.executemany(sql, rows[i * 1000 : (i + 1) * 1000])
        insert_rate = batches * 1000 / (time.perf_counter() - started)
        insert_cost = await meter.stop(batches * 1000)
        await conn.execute("TRUNCATE events")
        await meter.start()
        started = time.perf_counter()
        for i in range(batches):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "events", records=rows[i * 1000 : (i + 1) * 1000], columns=COLUMNS
                )
        copy_rate = batches * 1000 / (time.perf_counter() - started)
        copy_cost = await meter.stop(batches * 1000)
        return {"executemany": (insert_rate, insert_cost), "COPY": (copy_rate, copy_cost)}
    finally:
        await conn.close()


# --- the server ---


class Server:
    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "JB_DATABASE_URL": database_url,
            "JB_DATA_DIR": str(data_dir),
            "JB_SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
            "JB_ADMIN_EMAIL": EMAIL,
            "JB_ADMIN_PASSWORD": PASSWORD,
            "JB_PORT": str(self.port),
            "JB_LOG_LEVEL": "WARNING",
            "JB_RATE_LIMIT_ENABLED": "false",  # a load test is not abuse
            "JB_ROLES": "api",
            "JB_MAX_BODY_BYTES": str(8 * 1024 * 1024),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "junctionbox.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def ready(self, http: aiohttp.ClientSession) -> dict[str, str]:
        for _ in range(1200):  # a loaded machine can take a minute to start the server
            try:
                async with http.get(f"{self.url}/api/v1/health/ready") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the server did not become ready in 120 s")
        async with http.post(
            f"{self.url}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
        ) as response:
            token = (await response.json())["token"]
        headers = {"authorization": f"Bearer {token}"}
        async with http.post(
            f"{self.url}/api/v1/admin/orgs", json={"orgId": 1, "name": "bench"}, headers=headers
        ):
            pass
        return headers

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def batched_rate(
    http: aiohttp.ClientSession,
    server: Server,
    headers: dict[str, str],
    batches: int,
    meter: Meter,
) -> tuple[float, Cost]:
    bodies = [
        orjson.dumps({"events": [event(b * 1000 + n) for n in range(1000)]}) for b in range(batches)
    ]
    send_headers = {**headers, "content-type": "application/json"}
    url = f"{server.url}/api/v1/integration/events/publish?orgId=1"

    async def send(body: bytes) -> None:
        async with http.post(url, data=body, headers=send_headers) as response:
            assert response.status == 201, await response.text()
            await response.read()

    await send(bodies[0])  # warm-up
    await meter.start()
    started = time.perf_counter()
    for body in bodies[1:]:
        await send(body)
    rate = (batches - 1) * 1000 / (time.perf_counter() - started)
    return rate, await meter.stop((batches - 1) * 1000)


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    failures: int
    cost: Cost


async def single_latency(
    http: aiohttp.ClientSession,
    server: Server,
    headers: dict[str, str],
    rate: int,
    seconds: float,
    meter: Meter,
) -> Latency:
    url = f"{server.url}/api/v1/integration/events/publish?orgId=1"
    send_headers = {**headers, "content-type": "application/json"}
    latencies: list[float] = []
    failures = 0

    async def one(n: int) -> None:
        nonlocal failures
        started = time.perf_counter()
        async with http.post(url, data=orjson.dumps(event(n)), headers=send_headers) as response:
            await response.read()
            if response.status != 201:
                failures += 1
        latencies.append(time.perf_counter() - started)

    total = int(rate * seconds)
    await meter.start()
    await open_loop(rate, total, one)
    cost = await meter.stop(total)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return Latency(statistics.median(latencies) * 1000, p99 * 1000, failures, cost)


async def run_backend(backend: str, quick: bool) -> None:
    batches = 6 if quick else 21
    rate, seconds = 1000, (2.0 if quick else 5.0)
    admin: asyncpg.Connection | None = None
    bench_db = ""
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            raw = {"executemany": await raw_sqlite(Path(tmp) / "raw.db", batches)}
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        else:
            raw_db, bench_db = (
                f"jb_bench_raw_{uuid.uuid4().hex[:6]}",
                f"jb_bench_{uuid.uuid4().hex[:6]}",
            )
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{raw_db}"')
            await admin.execute(f'CREATE DATABASE "{bench_db}"')
            try:
                db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{raw_db}")
                await migrate.upgrade(db)
                await db.dispose()
                raw = await raw_postgres(admin, raw_db, batches)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{raw_db}" WITH (FORCE)')
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{bench_db}"
        server = Server(url, Path(tmp))
        try:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as http:
                headers = await server.ready(http)
                meter = Meter(server.process.pid, admin, bench_db)
                published, batch_cost = await batched_rate(http, server, headers, batches, meter)
                single = await single_latency(http, server, headers, rate, seconds, meter)
        finally:
            server.stop()
            if admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')
                await admin.close()
    print(f"\n[{backend}] batched publish, 1000 x 1 KiB events per request")
    print(f"  {'published over HTTP':<34} {published:>10,.0f} events/s   server {batch_cost}")
    for name, (value, cost) in raw.items():
        print(
            f"  {'raw ' + name + ' (same rows, same driver)':<34} {value:>10,.0f} events/s"
            f"   ratio {published / value:.2f}   raw client {cost}"
        )
    print(f"[{backend}] single-event publish at {rate}/s for {seconds:.0f} s (open loop)")
    print(
        f"  p50 {single.p50_ms:.2f} ms   p99 {single.p99_ms:.2f} ms   failures {single.failures}"
        f"   server {single.cost}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        asyncio.run(run_backend(backend, args.quick))


if __name__ == "__main__":
    main()
