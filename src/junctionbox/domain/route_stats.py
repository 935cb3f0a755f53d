"""Per-route request rollups: counts, a fixed-bucket latency histogram and top clients.

Rollups merge by addition, so each node accumulates in memory and adds its rollup to the
stored one; percentiles are read off the merged histogram (upper bound of the bucket that
holds the rank, interpolated linearly inside it), accurate to the bucket width.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Upper bounds in ms; the last bucket is open-ended.
BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000,
)  # fmt: skip
TOP_CLIENTS = 20  # kept per rollup; the tail is dropped when merging
MAX_TRACKED_CLIENTS = 2000  # distinct clients one in-memory rollup counts


@dataclass
class Rollup:
    requests: int = 0
    errors: int = 0  # 5xx, including the gateway's own 502/504
    client_errors: int = 0  # 4xx
    latency_ms_sum: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    clients: dict[str, int] = field(default_factory=dict)

    def record(self, status: int, latency_ms: float, client: str) -> None:
        self.requests += 1
        self.errors += status >= 500
        self.client_errors += 400 <= status < 500
        self.latency_ms_sum += round(latency_ms)
        self.histogram[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1
        self.clients[client] = self.clients.get(client, 0) + 1
        if len(self.clients) > MAX_TRACKED_CLIENTS:
            # Bounded memory under many distinct clients: keep the busiest half (the top
            # list is approximate then, as in any bounded heavy-hitters count).
            self.clients = top_clients(self.clients, MAX_TRACKED_CLIENTS // 2)

    def merge(self, other: Rollup) -> Rollup:
        clients = dict(self.clients)
        for name, count in other.clients.items():
            clients[name] = clients.get(name, 0) + count
        return Rollup(
            self.requests + other.requests,
            self.errors + other.errors,
            self.client_errors + other.client_errors,
            self.latency_ms_sum + other.latency_ms_sum,
            [a + b for a, b in zip(self.histogram, other.histogram, strict=True)],
            top_clients(clients, TOP_CLIENTS * 5),
        )


def top_clients(clients: Mapping[str, int], n: int) -> dict[str, int]:
    ranked = sorted(clients.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:n])


def percentile(histogram: Sequence[int], fraction: float) -> float | None:
    total = sum(histogram)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = 0.0 if index == 0 else BOUNDS_MS[index - 1]
            high = BOUNDS_MS[index] if index < len(BOUNDS_MS) else BOUNDS_MS[-1]
            return round(low + (high - low) * max(0.0, rank - seen) / count, 2)
        seen += count
    return BOUNDS_MS[-1]


def summary(rollup: Rollup) -> dict[str, object]:
    requests = rollup.requests
    return {
        "requests": requests,
        "errors": rollup.errors,
        "clientErrors": rollup.client_errors,
        "errorRate": round(rollup.errors / requests, 4) if requests else 0.0,
        "averageMs": round(rollup.latency_ms_sum / requests, 2) if requests else None,
        "p50Ms": percentile(rollup.histogram, 0.50),
        "p95Ms": percentile(rollup.histogram, 0.95),
        "p99Ms": percentile(rollup.histogram, 0.99),
        "topClients": [
            {"client": name, "requests": count}
            for name, count in top_clients(rollup.clients, 10).items()
        ],
    }
