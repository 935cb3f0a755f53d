"""Health checks and the store-derived metrics (seed 001's Health Check System).

Each component check says ``pass``, ``warn`` or ``fail``; the overall status is
``healthy`` when every check passes, ``unhealthy`` when any fails, ``degraded`` otherwise
(seed 001's ``determineOverallStatus``).

* ``database``: a round trip (fail when it does not answer).
* ``queue``: the age of the oldest job due and not claimed (warn / fail past the
  ``health_lag_*`` settings).
* ``dispatcher``: events not yet dispatched, warn when some wait and no dispatcher is alive.
* ``workers``: per role, processes whose heartbeat is fresh; a role that had processes
  lately but has none alive fails ("worker stopped"). Roles never seen are not checked (a
  deployment without, say, a scheduler yet).
* ``redis``: a PING when ``JB_REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from junctionbox.errors import ServiceUnavailableError
from junctionbox.observability.metrics import Metrics, StoreSnapshot
from junctionbox.services.streams import DISPATCHER_GROUP
from junctionbox.settings import Settings
from junctionbox.store.database import Database
from junctionbox.store.queries import observability as q
from junctionbox.store.types import utcnow

PASS, WARN, FAIL = "pass", "warn", "fail"
ROLES = ("dispatcher", "worker", "scheduler", "api")
RECENT_FACTOR = 30  # a role is "expected" when a node of it was seen in stale * this
SCRAPE_CACHE_SECONDS = 5.0


@dataclass
class Check:
    status: str
    latency_ms: float | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def out(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.latency_ms is not None:
            body["latencyMs"] = self.latency_ms
        if self.message:
            body["message"] = self.message
        if self.details:
            body["details"] = self.details
        return body


def overall(checks: dict[str, Check]) -> str:
    statuses = [c.status for c in checks.values()]
    if all(s == PASS for s in statuses):
        return "healthy"
    if any(s == FAIL for s in statuses):
        return "unhealthy"
    return "degraded"


class Monitor:
    def __init__(self, db: Database, settings: Settings, metrics: Metrics) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self._scraped_at = 0.0
        self._scrape_lock = asyncio.Lock()

    # ------------------------------------------------------------ health

    async def database(self) -> Check:
        try:
            seconds = await self.db.ping()
        except ServiceUnavailableError as exc:
            return Check(FAIL, message=exc.message)
        return Check(PASS, latency_ms=round(seconds * 1000, 2))

    async def health(self) -> dict[str, Check]:
        checks = {"database": await self.database()}
        if checks["database"].status == PASS:
            try:
                checks.update(await self._store_checks())
            except Exception as exc:  # the store went away between the checks
                checks["queue"] = Check(FAIL, message=f"store read failed: {type(exc).__name__}")
        if self.settings.redis_url is not None:
            checks["redis"] = self._redis_severity(
                await redis_check(self.settings.redis_url.get_secret_value())
            )
        return checks

    def _redis_severity(self, check: Check) -> Check:
        """Redis down only stops the node when the API's rate limits live there and fail
        closed; otherwise the node serves on (degraded), see docs/rate-limits.md."""
        settings = self.settings
        fails_closed = settings.rate_limit_backend == "redis" and not settings.rate_limit_fail_open
        if check.status == FAIL and not fails_closed:
            return Check(WARN, latency_ms=check.latency_ms, message=check.message)
        return check

    async def _store_checks(self) -> dict[str, Check]:
        now = utcnow()
        stale = timedelta(seconds=self.settings.node_stale_seconds)
        async with self.db.read() as conn:
            due = await q.oldest_due(conn, now)
            lag = await q.dispatcher_lag(conn, DISPATCHER_GROUP)
            seen = await q.nodes(conn, now - stale * RECENT_FACTOR)
        alive = _alive_by_role(seen, now - stale)
        return {
            "queue": self._queue_check(due, now),
            "dispatcher": _dispatcher_check(lag, alive),
            "workers": _workers_check(seen, alive),
        }

    def _queue_check(self, due: dict[str, datetime], now: datetime) -> Check:
        ages = {queue: round((now - when).total_seconds(), 1) for queue, when in due.items()}
        worst = max(ages.values(), default=0.0)
        status = PASS
        if worst > self.settings.health_lag_fail_seconds:
            status = FAIL
        elif worst > self.settings.health_lag_warn_seconds:
            status = WARN
        message = f"oldest due job waits {worst:.0f}s" if status != PASS else None
        return Check(status, message=message, details={"oldestDueSeconds": ages})

    # ------------------------------------------------------------ metrics

    async def refresh_gauges(self, *, force: bool = False) -> None:
        """Re-read the store-derived gauges, at most once per few seconds."""
        async with self._scrape_lock:
            if not force and time.monotonic() - self._scraped_at < SCRAPE_CACHE_SECONDS:
                return
            self.metrics.store.snapshot = await self._snapshot()
            self._scraped_at = time.monotonic()

    async def _snapshot(self) -> StoreSnapshot:
        now = utcnow()
        stale = timedelta(seconds=self.settings.node_stale_seconds)
        try:
            async with self.db.read() as conn:
                depth = await q.queue_depth(conn)
                due = await q.oldest_due(conn, now)
                lag = await q.dispatcher_lag(conn, DISPATCHER_GROUP)
                dlq = await q.dlq_size(conn)
                circuits = await q.open_circuits(conn)
                seen = await q.nodes(conn, now - stale)
        except Exception:  # a scrape must still answer (with the failure flagged)
            return StoreSnapshot(scrape_ok=False)
        return StoreSnapshot(
            queue_depth=depth,
            oldest_ready_age={k: (now - v).total_seconds() for k, v in due.items()},
            dispatcher_lag=lag,
            dlq_size=dlq,
            workers_alive=_alive_by_role(seen, now - stale),
            circuits_open=len(circuits),
        )


def _alive_by_role(rows: list[Any], since: datetime) -> dict[str, int]:
    alive: dict[str, int] = {}
    for row in rows:
        if row["stopped_at"] is None and row["last_seen"] >= since:
            for role in str(row["roles"]).split(","):
                alive[role] = alive.get(role, 0) + 1
    return alive


def _dispatcher_check(lag: dict[str, int], alive: dict[str, int]) -> Check:
    waiting = sum(lag.values())
    if waiting and not alive.get("dispatcher"):
        return Check(WARN, message=f"{waiting} events wait and no dispatcher is alive")
    return Check(PASS, details={"undispatchedEvents": waiting})


def _workers_check(seen: list[Any], alive: dict[str, int]) -> Check:
    expected = {role for row in seen for role in str(row["roles"]).split(",")}
    missing = sorted(r for r in expected if r != "api" and not alive.get(r))
    details = {role: alive.get(role, 0) for role in ROLES if role in expected}
    if missing:
        return Check(FAIL, message=f"no live process for: {', '.join(missing)}", details=details)
    return Check(PASS, details=details)


async def redis_check(url: str, timeout: float = 2.0) -> Check:  # noqa: ASYNC109
    """PING over a raw connection (no client library needed for a health check). The URL
    (it may hold a password) never appears in the answer."""
    parts = urlsplit(url)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname or "127.0.0.1", parts.port or 6379
            )
            try:
                if parts.password:
                    user = parts.username or "default"
                    writer.write(_resp("AUTH", user, parts.password))
                    await reader.readline()
                writer.write(_resp("PING"))
                await writer.drain()
                answer = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return Check(FAIL, message=f"redis unreachable ({type(exc).__name__})")
    latency = round((time.perf_counter() - started) * 1000, 2)
    if not answer.startswith(b"+PONG"):
        return Check(FAIL, latency_ms=latency, message="redis did not answer PONG")
    return Check(PASS, latency_ms=latency)


def _resp(*words: str) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
