"""An explicit, bounded cache of compiled expressions (no module-level caches in ``expr``).

The service layer keeps one per process (or per role) and keys it by whatever identifies a
configuration version, e.g. ``(integration_id, updated_at, "request")``. Compilation happens
outside the lock, so a slow compile never blocks hits; two threads missing the same key at
once both compile and the first stored result wins.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ExpressionCache:
    """A thread-safe LRU of compiled transformers/predicates."""

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compile(self, key: Hashable, build: Callable[[], T]) -> T:
        """The cached value for ``key``, or ``build()`` stored under it.

        Compile errors propagate and are not cached.
        """
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                found: T = self._items[key]
                return found
            self.misses += 1
        value = build()
        with self._lock:
            if key in self._items:
                existing: T = self._items[key]
                return existing
            self._items[key] = value
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return value

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
