"""Active health checks of registered services, on a timer, in every process with the api role.

Each round (when the next service is due, and at least every 5 s to notice new ones) GETs
the health-check URL of every ACTIVE service whose interval has passed, through the guarded
HTTP client (the SSRF guard applies), and stores each probed URL's state: a 2xx or 3xx answer
is a success, anything else (other statuses, refusals, timeouts, network errors) a failure;
``unhealthyThreshold`` failures in a row mark the URL down and ``healthyThreshold`` successes
in a row mark it up again. When a URL changes state, this node drops the tenant's gateway
route table at once; other nodes see it at their next table reload (within 5 s).

With several api nodes every node probes every service (there is no leader): a service is
probed about once per interval per node, and the counts in a row are shared through the
stored state, so N nodes reach a threshold up to N times sooner. Two nodes finishing a probe
of the same service at the same moment may each overwrite the other's count (last write
wins); both saw the same service, so the state stays right to within one probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.service_registry import (
    HealthCheckPolicy,
    ProbeState,
    probe_urls,
    probes_of,
)
from junctionbox.engine.periodic import run_every
from junctionbox.errors import JunctionboxError
from junctionbox.services.service_registry import ServiceRegistry, endpoints_of
from junctionbox.store.queries.service_registry import ServiceRecord
from junctionbox.store.types import utcnow

log = logging.getLogger(__name__)


class ServiceHealthChecker:
    def __init__(
        self,
        registry: ServiceRegistry,
        http: GuardedHttpClient,
        *,
        on_change: Callable[[int], None] | None = None,
        tick_seconds: float = 1.0,
        max_sleep_seconds: float = 5.0,
        concurrency: int = 16,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.registry = registry
        self.http = http
        self.on_change = on_change
        self.tick_seconds = tick_seconds
        self.max_sleep_seconds = max_sleep_seconds
        self._sleep = tick_seconds
        self._slots = asyncio.Semaphore(concurrency)
        self._clock = clock

    async def run_once(self, *, force: bool = False) -> int:
        """Probe the services that are due (all of them when ``force``); return how many."""
        now = self._clock()
        records = await self.registry.with_health_checks()
        due = [r for r in records if force or _due(r, now)]
        await asyncio.gather(*(self._check(record) for record in due))
        checked = {r.id for r in due}
        waits = [_interval(r) if r.id in checked else _seconds_to_due(r, now) for r in records]
        # Sleep until the next service is due, but wake within max_sleep_seconds to pick up
        # services registered meanwhile (one query per round, whatever the count).
        self._sleep = max(self.tick_seconds, min([self.max_sleep_seconds, *waits]))
        return len(due)

    async def run(self, stop: asyncio.Event) -> None:
        await run_every(stop, self._sleep, self.run_once, "service health-check round failed", log)

    async def _check(self, record: ServiceRecord) -> None:
        policy = HealthCheckPolicy.from_config(record.configuration.get("healthCheck"))
        before = probes_of(record.health)
        urls = list(probe_urls(endpoints_of(record), record.health_check_url))
        results = await asyncio.gather(*(self._probe(url, policy) for url in urls))
        now = self._clock()
        after = {
            url: before.get(url, ProbeState()).after(ok, status, error, now, policy)
            for url, (ok, status, error) in zip(urls, results, strict=True)
        }
        health = {
            "checkedAt": now.isoformat(),
            "probes": {u: s.as_json() for u, s in after.items()},
        }
        await self.registry.save_health(record, health)
        flipped = [u for u, s in after.items() if s.healthy != before.get(u, ProbeState()).healthy]
        if flipped:
            log.info(
                "service health changed",
                extra={"service_id": record.id, "org_id": record.org_id, "urls": flipped},
            )
            if self.on_change is not None:
                self.on_change(record.org_id)

    async def _probe(
        self, url: str, policy: HealthCheckPolicy
    ) -> tuple[bool, int | None, str | None]:
        async with self._slots:
            try:
                result = await self.http.send("GET", url, timeout_seconds=policy.timeout_seconds)
            except JunctionboxError as exc:
                return False, None, exc.message
        ok = 200 <= result.status < 400
        return ok, result.status, None if ok else f"HTTP {result.status}"


def _interval(record: ServiceRecord) -> float:
    return HealthCheckPolicy.from_config(record.configuration.get("healthCheck")).interval_seconds


def _seconds_to_due(record: ServiceRecord, now: datetime) -> float:
    checked: Any = record.health.get("checkedAt")
    if not checked:
        return 0.0
    due_at = datetime.fromisoformat(str(checked)) + timedelta(seconds=_interval(record))
    return (due_at - now).total_seconds()


def _due(record: ServiceRecord, now: datetime) -> bool:
    return _seconds_to_due(record, now) <= 0
