"""Prometheus metrics: one registry per application, never the process-wide default.

Seed 001's integration metrics keep their names and labels (``adapter_id`` is the
integration id). Label values are bounded: an ``adapter_id`` beyond ``max_adapters``
distinct ones is counted as ``other``, routes are templates (``/api/v1/dlq/{entry_id}``),
never raw paths, and nothing is labelled by event, delivery or tenant id.

Figures that live in the database (queue depth, DLQ size, dispatcher lag, live workers)
are read at scrape time by :class:`StoreGauges` (see ``observability.store_gauges``), at
most once per ``refresh_seconds`` whatever the scrape rate.

Several processes: each process serves its own ``/metrics`` and Prometheus scrapes every
process (per-process counters, summed in PromQL). The store-derived gauges are the same
in every process; aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seed 001's buckets for integration_request_duration_seconds.
SEED_BUCKETS: Final = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER: Final = "other"
UNMATCHED_ROUTE: Final = "unmatched"
_MAX_HTTP_CHILDREN: Final = 4096
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


class BoundedLabel:
    """Passes values through until ``limit`` distinct ones were seen, then ``other``."""

    __slots__ = ("limit", "seen")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(value)
        return value


@dataclass
class StoreSnapshot:
    """Gauges read from the store at scrape time, with their labels."""

    queue_depth: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, state)
    oldest_ready_age: dict[str, float] = field(default_factory=dict)  # queue -> seconds
    dispatcher_lag: dict[str, int] = field(default_factory=dict)  # stream -> events
    dlq_size: dict[str, int] = field(default_factory=dict)  # status -> entries
    workers_alive: dict[str, int] = field(default_factory=dict)  # role -> nodes
    circuits_open: int = 0
    scrape_ok: bool = True


class StoreCollector(Collector):
    """Yields the latest :class:`StoreSnapshot` (refreshed by the scrape handler)."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot()

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        yield _family(
            "junctionbox_queue_jobs",
            "Jobs in the queue by queue and state",
            ["queue", "state"],
            {k: float(v) for k, v in s.queue_depth.items()},
        )
        yield _family(
            "junctionbox_queue_oldest_ready_age_seconds",
            "Age of the oldest job due and not yet claimed, by queue",
            ["queue"],
            {(k,): v for k, v in s.oldest_ready_age.items()},
        )
        yield _family(
            "junctionbox_dispatcher_lag_events",
            "Events in the log not yet dispatched, by stream name",
            ["stream"],
            {(k,): float(v) for k, v in s.dispatcher_lag.items()},
        )
        yield _family(
            "junctionbox_dlq_entries",
            "Dead-letter queue entries by status",
            ["status"],
            {(k,): float(v) for k, v in s.dlq_size.items()},
        )
        yield _family(
            "junctionbox_nodes_alive",
            "Processes whose heartbeat is fresh, by role",
            ["role"],
            {(k,): float(v) for k, v in s.workers_alive.items()},
        )
        yield _family(
            "junctionbox_circuits_open",
            "Destination circuit breakers open",
            [],
            {(): s.circuits_open},
        )
        yield _family(
            "junctionbox_store_scrape_ok",
            "1 when the store-derived gauges could be read at the last refresh",
            [],
            {(): 1.0 if s.scrape_ok else 0.0},
        )


def _family(
    name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


class _Adapter:
    """The children of one adapter id, looked up once (``labels()`` takes a lock)."""

    __slots__ = ("duration", "failure", "retries", "success")

    def __init__(self, m: Metrics, adapter_id: str) -> None:
        self.success = m.requests.labels(adapter_id, "success")
        self.failure = m.requests.labels(adapter_id, "failure")
        self.duration = m.duration.labels(adapter_id)
        self.retries = m.retries.labels(adapter_id)


class Metrics:
    """The process's metrics; the recording methods are the facade other modules call."""

    def __init__(self, *, max_adapters: int = 1000, max_routes: int = 500) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._adapter_label = BoundedLabel(max_adapters)
        self._route_label = BoundedLabel(max_routes)
        self._adapters: dict[str, _Adapter] = {}
        self._runs: dict[tuple[str, bool], tuple[Counter, Histogram]] = {}
        self._http: dict[tuple[str, str | None, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "integration_requests_total",
            "Total number of integration requests",
            ["adapter_id", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "integration_request_duration_seconds",
            "Integration request duration in seconds",
            ["adapter_id"],
            buckets=SEED_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "integration_errors_total",
            "Total number of integration errors",
            ["adapter_id", "error_type"],
            registry=r,
        )
        self.breaker = Gauge(
            "integration_circuit_breaker_state",
            "Circuit breaker state (0=CLOSED, 1=HALF_OPEN, 2=OPEN)",
            ["adapter_id"],
            registry=r,
        )
        self.retries = Counter(
            "integration_retries_total",
            "Total number of retry attempts",
            ["adapter_id"],
            registry=r,
        )
        self.events_ingested = Counter(
            "junctionbox_events_ingested_total", "Events appended to the event log", registry=r
        )
        self.http_requests = Counter(
            "junctionbox_http_requests_total",
            "HTTP requests served, by route template",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "junctionbox_http_request_duration_seconds",
            "HTTP request latency, by route template",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.slots_busy = Gauge(
            "junctionbox_worker_slots_busy", "Delivery attempts running in this process", registry=r
        )
        self.slots_total = Gauge(
            "junctionbox_worker_slots", "Delivery attempt slots of this process", registry=r
        )
        self.runs = Counter(
            "junctionbox_runs_total",
            "Runs of other work (proxy calls, scheduled runs), by kind and outcome",
            ["kind", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "junctionbox_run_duration_seconds",
            "Duration of other work (proxy calls, scheduled runs), by kind",
            ["kind"],
            buckets=SEED_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "junctionbox_webhooks_received_total",
            "Webhooks received, by outcome and (refused) reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.store = StoreCollector()
        r.register(self.store)

    # ------------------------------------------------------------ recording

    def _adapter(self, adapter_id: str) -> _Adapter:
        found = self._adapters.get(adapter_id)
        if found is None:
            label = self._adapter_label(adapter_id)
            found = self._adapters.get(label) or _Adapter(self, label)
            self._adapters[adapter_id] = found
        return found

    def integration_request(
        self,
        adapter_id: str,
        *,
        success: bool,
        seconds: float | None,
        error_type: str | None = None,
        retry: bool = False,
    ) -> None:
        """One attempt that reached (or tried to reach) a destination."""
        a = self._adapter(adapter_id)
        (a.success if success else a.failure).inc()
        if seconds is not None:
            a.duration.observe(seconds)
        if error_type is not None:
            self.errors.labels(self._adapter_label(adapter_id), error_type).inc()
        if retry:
            a.retries.inc()

    def retried(self, adapter_id: str, count: int) -> None:
        """``count`` retries of one call (the proxies retry within a call)."""
        self._adapter(adapter_id).retries.inc(count)

    def webhook_received(self, outcome: str, reason: str = "") -> None:
        """One received webhook: ``accepted``, ``duplicate`` or ``refused`` with the error
        code as ``reason`` (a fixed set: NOT_FOUND, UNAUTHORIZED, CONFLICT, ...)."""
        self.webhooks.labels(outcome, reason).inc()

    def integration_error(self, adapter_id: str, error_type: str) -> None:
        """A failure without a request (circuit open, transform error, ...)."""
        self.errors.labels(self._adapter_label(adapter_id), error_type).inc()

    def circuit_state(self, adapter_id: str, state: int) -> None:
        self.breaker.labels(self._adapter_label(adapter_id)).set(state)

    def watch_slots(self, total: int, busy: Callable[[], int]) -> None:
        """The delivery worker's slots, read at scrape time (nothing on the hot path)."""
        self.slots_total.set(total)
        self.slots_busy.set_function(lambda: float(busy()))

    def http_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        # The label children are looked up once per (method, route, status), as ``run``
        # does: two ``labels()`` calls (a lock, a tuple, a dict) on every API request.
        key = (method, route, status)
        children = self._http.get(key)
        if children is None:
            template = self._route_label(route) if route else UNMATCHED_ROUTE
            if len(self._http) >= _MAX_HTTP_CHILDREN:
                self._http.clear()  # bounded; the children themselves stay registered
            children = self._http[key] = (
                self.http_requests.labels(method, template, str(status)),
                self.http_duration.labels(method, template),
            )
        children[0].inc()
        children[1].observe(seconds)

    def run(self, kind: str, *, success: bool, seconds: float) -> None:
        """The hook for proxy calls and scheduled runs: ``kind`` is a fixed name. The label
        children are looked up once per (kind, outcome): ``labels()`` takes a lock."""
        key = (kind, success)
        children = self._runs.get(key)
        if children is None:
            outcome = "success" if success else "failure"
            children = self._runs[key] = (
                self.runs.labels(kind, outcome),
                self.run_duration.labels(kind),
            )
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
