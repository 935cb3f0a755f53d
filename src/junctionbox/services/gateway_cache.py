"""The gateway's response cache for GET routes with caching on: per node, in memory,
bounded by entries and by bytes, each entry kept for its route's TTL.

Only complete 200 responses up to ``max_entry_bytes`` are stored, never one with
``Set-Cookie`` or ``Cache-Control: no-store/private``. The key is the route, the upstream
path and query, and, on routes that authenticate, the caller: one client's answer is never
served to another. Changing or deleting a route drops its entries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CachedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires_at: float


def cacheable(status: int, headers: Sequence[tuple[str, str]], size: int, limit: int) -> bool:
    if status != 200 or size > limit:
        return False
    for key, value in headers:
        lowered = key.lower()
        if lowered == "set-cookie":
            return False
        if lowered == "cache-control" and any(
            token in value.lower() for token in ("no-store", "private", "no-cache")
        ):
            return False
    return True


class ResponseCache:
    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[str, ...], CachedResponse] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self.max_entry_bytes = max(1024, max_bytes // 64)

    def get(self, key: tuple[str, ...]) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self, key: tuple[str, ...], status: int, headers: Sequence[tuple[str, str]], body: bytes,
        ttl: float,
    ) -> None:  # fmt: skip
        self._drop(key)
        self._entries[key] = CachedResponse(status, tuple(headers), body, time.monotonic() + ttl)
        self._bytes += len(body)
        while self._entries and (
            len(self._entries) > self._max_entries or self._bytes > self._max_bytes
        ):
            self._drop(next(iter(self._entries)))

    def forget_route(self, route_id: str) -> None:
        for key in [k for k in self._entries if k[0] == route_id]:
            self._drop(key)

    def _drop(self, key: tuple[str, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)
