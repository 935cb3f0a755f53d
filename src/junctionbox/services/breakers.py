"""Circuit breakers per (tenant, destination origin), persisted in ``destination_breakers``.

The rule is :mod:`junctionbox.domain.circuit_breaker` (seed 001: CLOSED -> OPEN after
``failure_threshold`` consecutive transient failures, a probe after ``reset_timeout``,
CLOSED again after ``success_threshold`` successful probes). This module keeps each
breaker in process memory, where every delivery consults it without a database round
trip, and writes it to the table whenever its stored form changes (a failure counted, a
trip, a probe's verdict), inside the delivery worker's batch transaction.

Other nodes' changes are picked up by :meth:`Breakers.refresh`, which re-reads entries older
than ``refresh_seconds``: a breaker tripped by one node stops the others within that time.
In-flight probe counts are per process (not stored): in a cluster each node may send its
own probe when the reset timeout ends. Concurrent nodes overwrite each other's counts
(last writer wins); the threshold is then approximate, never ignored.

Keys are ``(org_id, origin)``: the integration owner's tenant and ``scheme://host:port`` of
the target, so one tenant's failing endpoint never opens another tenant's circuit.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.circuit_breaker import (
    Breaker,
    BreakerConfig,
    CircuitState,
    allow,
    record_failure,
    record_success,
)
from junctionbox.store.queries.destination_breakers import BreakerRow, load_breakers, save_breakers

BreakerKey = tuple[int, str]  # (org_id, origin)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=4096)
def origin_of(url: str) -> str:
    """``scheme://host:port`` (lower case, explicit port) of a URL (a pure function,
    remembered: the delivery worker asks for every job's target)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go out; if not, the epoch second to try again."""

    allowed: bool
    retry_at: float = 0.0
    state: CircuitState = CircuitState.CLOSED
    probe: bool = False  # this request is a HALF_OPEN probe


@dataclass
class _Entry:
    breaker: Breaker
    loaded_at: float  # monotonic, when last read from (or written to) the table
    stored: tuple[object, ...]  # the persisted form last read or written


# A breaker not read or written this long is dropped from memory (the table keeps its state):
# a process serves many destinations over its life, and must not keep one entry for each.
IDLE_SECONDS: Final = 600.0
_SWEEP_SECONDS: Final = 60.0


class Breakers:
    """The process's breakers. Not thread-safe: one event loop."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        refresh_seconds: float = 2.0,
        probe_retry_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or BreakerConfig()
        self.refresh_seconds = refresh_seconds
        self.probe_retry_seconds = probe_retry_seconds
        self._monotonic = monotonic
        self._entries: dict[BreakerKey, _Entry] = {}
        self._dirty: set[BreakerKey] = set()
        self._swept = monotonic()

    # ------------------------------------------------------------ the table

    async def refresh(self, conn: AsyncConnection, keys: Iterable[BreakerKey]) -> None:
        """Load unknown keys and re-read stale ones (not those with unsaved changes)."""
        self.forget_idle()
        wanted = self._to_refresh(keys)
        if not wanted:
            return
        found = {(row.org_id, row.destination): row for row in await load_breakers(conn, wanted)}
        loaded_at = self._monotonic()
        for key in wanted:
            self._adopt(key, found.get(key), loaded_at)

    def forget_idle(self) -> None:
        """Drop (once a minute) the breakers idle for ``IDLE_SECONDS``: nothing unsaved, no
        probe out."""
        now = self._monotonic()
        if now - self._swept < _SWEEP_SECONDS:
            return
        self._swept = now
        idle_since = now - IDLE_SECONDS
        for key, entry in list(self._entries.items()):
            if (
                entry.loaded_at < idle_since
                and key not in self._dirty
                and entry.breaker.probes_in_flight == 0
            ):
                del self._entries[key]

    def needs_refresh(self, keys: Iterable[BreakerKey]) -> bool:
        """Whether :meth:`refresh` of ``keys`` would read anything."""
        return bool(self._to_refresh(keys))

    def _to_refresh(self, keys: Iterable[BreakerKey]) -> set[BreakerKey]:
        due = self._monotonic() - self.refresh_seconds
        return {
            key
            for key in keys
            if key not in self._dirty
            and ((entry := self._entries.get(key)) is None or entry.loaded_at <= due)
        }

    def _adopt(self, key: BreakerKey, row: BreakerRow | None, loaded_at: float) -> None:
        entry = self._entries.get(key)
        stored = _stored_form_of_row(row)
        if entry is not None and entry.stored == stored:
            entry.loaded_at = loaded_at  # nobody changed it: keep our probe bookkeeping
            return
        breaker = self._breaker_of(row)
        self._entries[key] = _Entry(breaker, loaded_at, stored)

    def dirty_rows(self, now: float) -> list[BreakerRow]:
        """Rows to write: breakers whose stored form changed since last read or written."""
        return [
            _row_of(key, self._entries[key].breaker, now)
            for key in sorted(self._dirty)
            if key in self._entries
        ]

    async def save(self, conn: AsyncConnection, rows: list[BreakerRow]) -> None:
        """Write ``rows`` (from :meth:`dirty_rows`) in the caller's transaction; call
        :meth:`saved` once it committed."""
        await save_breakers(conn, rows)

    def saved(self, rows: Collection[BreakerRow]) -> None:
        """The transaction that wrote ``rows`` committed: that is what the table holds now
        (a breaker that changed again meanwhile stays dirty)."""
        loaded_at = self._monotonic()
        for row in rows:
            key = (row.org_id, row.destination)
            entry = self._entries.get(key)
            if entry is None:
                continue
            entry.stored = _stored_form_of_row(row)
            entry.loaded_at = loaded_at
            if _stored_form(entry.breaker) == entry.stored:
                self._dirty.discard(key)

    # ------------------------------------------------------------ decisions

    def check(self, key: BreakerKey, now: float) -> Verdict:
        """May a request go to ``key`` now? A HALF_OPEN probe slot is taken if so."""
        entry = self._entry(key)
        before = entry.breaker
        after, allowed = allow(before, now)
        self._set(key, entry, after)
        if allowed:
            return Verdict(True, state=after.state, probe=after.state is CircuitState.HALF_OPEN)
        if after.state is CircuitState.OPEN:
            return Verdict(False, after.open_until, after.state)
        # HALF_OPEN with its probe in flight: look again shortly.
        wait = min(self.probe_retry_seconds, after.config.reset_timeout)
        return Verdict(False, now + wait, after.state)

    def record(self, key: BreakerKey, *, failed: bool, now: float) -> CircuitState:
        """The verdict of a request that went out: ``failed`` for transient failures only
        (network errors, timeouts, 408, 429, 5xx). Returns the new state."""
        entry = self._entry(key)
        after = (record_failure if failed else record_success)(entry.breaker, now)
        self._set(key, entry, after)
        return after.state

    def cancel_probe(self, key: BreakerKey) -> None:
        """A probe slot was taken but no request went out (e.g. the transformation failed)."""
        entry = self._entries.get(key)
        if entry is None or entry.breaker.probes_in_flight == 0:
            return
        breaker = entry.breaker
        entry.breaker = replace(breaker, probes_in_flight=breaker.probes_in_flight - 1)

    def state(self, key: BreakerKey) -> Breaker:
        return self._entry(key).breaker

    # ------------------------------------------------------------ internals

    def _entry(self, key: BreakerKey) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            # Not refreshed yet (a test, or a key first seen mid-batch): start CLOSED.
            entry = _Entry(Breaker(self.config), float("-inf"), _NEVER_STORED)
            self._entries[key] = entry
        return entry

    def _set(self, key: BreakerKey, entry: _Entry, breaker: Breaker) -> None:
        entry.breaker = breaker
        if _stored_form(breaker) != entry.stored:
            self._dirty.add(key)
        else:
            self._dirty.discard(key)

    def _breaker_of(self, row: BreakerRow | None) -> Breaker:
        if row is None:
            return Breaker(self.config)
        state = CircuitState[row.state] if row.state in CircuitState.__members__ else None
        if state is None:
            return Breaker(self.config)
        changed = (row.opened_at or row.updated_at).timestamp()
        open_until = changed + self.config.reset_timeout if state is CircuitState.OPEN else 0.0
        return Breaker(
            config=self.config,
            state=state,
            failures=row.failures if state is CircuitState.CLOSED else 0,
            successes=row.successes if state is CircuitState.HALF_OPEN else 0,
            open_until=open_until,
            changed_at=changed,
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(epoch_seconds: float) -> int:
    return round(epoch_seconds * 1_000_000)


def _stored_form(breaker: Breaker) -> tuple[object, ...]:
    """What the table keeps of a breaker (probe bookkeeping is per process); instants in
    whole microseconds, as the table stores them."""
    opened = _micros(breaker.changed_at) if breaker.state is not CircuitState.CLOSED else None
    return (breaker.state.name, breaker.failures, breaker.successes, opened)


_NEVER_STORED = (CircuitState.CLOSED.name, 0, 0, None)  # a missing row reads as CLOSED


def _stored_form_of_row(row: BreakerRow | None) -> tuple[object, ...]:
    if row is None:
        return _NEVER_STORED
    opened = (row.opened_at - _EPOCH) // _MICROSECOND if row.opened_at is not None else None
    return (row.state, row.failures, row.successes, opened)


def _row_of(key: BreakerKey, breaker: Breaker, now: float) -> BreakerRow:
    opened = None
    if breaker.state is not CircuitState.CLOSED:
        opened = _EPOCH + timedelta(microseconds=_micros(breaker.changed_at))
    return BreakerRow(
        org_id=key[0],
        destination=key[1],
        state=breaker.state.name,
        failures=breaker.failures,
        successes=breaker.successes,
        opened_at=opened,
        updated_at=datetime.fromtimestamp(now, UTC),
    )
