"""What the delivery worker reads and writes in bulk.

Writes: one ``delivery_logs`` row per attempt, inserted in batches inside the transaction
that also finishes the attempts' jobs. Bodies and headers are capped at 64 KB each (seed
003), and NUL characters, which PostgreSQL refuses in text and JSONB, are replaced.

Reads: for a batch of claimed jobs at once, the integrations' change stamps (so that a
cached, already parsed integration is reused until it changes), the events by log
position, and the parents of tenants.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.events import StoredEvent
from junctionbox.store.queries.events import stored_event
from junctionbox.store.tables import entities, events, outbound_integrations

MAX_LOGGED_BYTES: Final = 64 * 1024
MAX_LOGGED_URL_BYTES: Final = 8192
TRUNCATION_MARK: Final = "\n…[truncated]"
_CHUNK: Final = 200  # keys per IN (...) look-up: far below every driver's parameter limit
_REPLACEMENT: Final = "\ufffd"

Position = tuple[int, str, int, int]  # (org_id, stream, partition, offset)


# ---------------------------------------------------------------- capping


def cap_text(value: bytes | str | None, limit: int = MAX_LOGGED_BYTES) -> str | None:
    """Text of at most ``limit`` UTF-8 bytes (plus a mark when cut); bytes are decoded
    leniently, NUL replaced."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) * 4 <= limit:  # short: only NUL to mind
        return value.replace("\x00", _REPLACEMENT) if "\x00" in value else value
    raw = value if isinstance(value, bytes) else value.encode("utf-8", errors="replace")
    cut = len(raw) > limit
    text = raw[:limit].decode("utf-8", errors="ignore" if cut else "replace")
    if cut:
        text += TRUNCATION_MARK
    return text.replace("\x00", _REPLACEMENT) if "\x00" in text else text


def cap_headers(
    headers: Iterable[tuple[str, str]] | None, limit: int = MAX_LOGGED_BYTES
) -> dict[str, str] | None:
    """Headers as a JSON object (repeated names joined with ``, ``), at most ``limit``
    bytes of names and values; headers past the cap are left out and counted."""
    if headers is None:
        return None
    merged: dict[str, str] = {}
    for raw_name, value in headers:
        name = str(raw_name)  # plain str: aiohttp's names are ``istr``, which orjson refuses
        merged[name] = f"{merged[name]}, {value}" if name in merged else str(value)
    # Nearly always: under the cap and no NUL anywhere, so every header is kept as it is.
    text = "".join(merged) + "".join(merged.values())
    if len(text) + 4 * len(merged) <= limit and "\x00" not in text:
        return merged
    kept: dict[str, str] = {}
    size = 0
    for name, value in merged.items():
        size += len(name) + len(value) + 4
        if size > limit:
            kept["x-jb-omitted-headers"] = str(len(merged) - len(kept))
            break
        kept[_clean(name)] = _clean(value)
    return kept


def _clean(text: str) -> str:
    return text.replace("\x00", _REPLACEMENT) if "\x00" in text else text


# ---------------------------------------------------------------- delivery logs


@dataclass(slots=True)
class AttemptRow:
    """One ``delivery_logs`` row; texts and headers are capped when inserted. (Not frozen:
    a frozen dataclass of 32 fields costs several microseconds per row to build.)"""

    id: str
    org_id: int
    integration_id: str | None
    integration_name: str | None
    delivery_id: str | None
    job_id: str | None
    event_id: str | None
    event_type: str | None
    status: str
    target_url: str | None
    http_method: str | None
    response_status: int | None
    response_time_ms: int | None
    attempt_count: int
    error_message: str | None
    error_category: str | None
    original_payload: bytes | str | None
    request_headers: Sequence[tuple[str, str]] | None
    request_body: bytes | str | None
    response_headers: Sequence[tuple[str, str]] | None
    response_body: bytes | str | None
    correlation_id: str | None
    trace_id: str | None
    signature: str | None
    trigger_type: str
    action_name: str | None
    action_index: int | None
    should_retry: bool
    steps: list[dict[str, Any]] | None
    created_at: datetime
    delivered_at: datetime | None
    direction: str = "OUTBOUND"


def attempt_values(row: AttemptRow) -> dict[str, Any]:
    """The column values of ``row``, capped."""
    values = {name: getattr(row, name) for name in _ROW_FIELDS}
    for name in ("original_payload", "request_body", "response_body", "error_message"):
        values[name] = cap_text(values[name])
    values["target_url"] = cap_text(row.target_url, MAX_LOGGED_URL_BYTES)
    values["request_headers"] = cap_headers(row.request_headers)
    values["response_headers"] = cap_headers(row.response_headers)
    # ``steps`` are capped by their maker (the worker's trace): walking every row's JSON
    # again costs more than the rest of the row.
    for name, size in _STRING_SIZES:
        if values[name]:
            values[name] = values[name][:size]
    return values


_ROW_FIELDS: Final = tuple(f.name for f in fields(AttemptRow))
_STRING_SIZES: Final = (
    ("integration_name", 200),
    ("action_name", 200),
    ("correlation_id", 100),
    ("event_id", 200),
    ("event_type", 200),
    ("trace_id", 64),
)


# ---------------------------------------------------------------- the worker's reads

IntegrationStamp = tuple[int, datetime, bool]  # (version, updated_at, is_active)


async def integration_stamps(
    conn: AsyncConnection, integration_ids: Collection[str]
) -> dict[str, IntegrationStamp]:
    """What changes whenever an integration does: its version (edits), ``updated_at``
    (engine-side disabling) and whether it is active. Missing ids were deleted."""
    table = outbound_integrations
    found: dict[str, IntegrationStamp] = {}
    ordered = sorted(set(integration_ids))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(table.c.id, table.c.version, table.c.updated_at, table.c.is_active).where(
            table.c.id.in_(chunk)
        )
        for row in await conn.execute(query):
            found[row.id] = (row.version, row.updated_at, bool(row.is_active))
    return found


async def events_at(
    conn: AsyncConnection, positions: Collection[Position]
) -> dict[Position, StoredEvent]:
    """The events at these log positions; positions trimmed away are missing."""
    found: dict[Position, StoredEvent] = {}
    ordered = sorted(set(positions))
    for start in range(0, len(ordered), _CHUNK):
        by_partition: dict[tuple[int, str, int], list[int]] = {}
        for org_id, stream, partition, offset in ordered[start : start + _CHUNK]:
            by_partition.setdefault((org_id, stream, partition), []).append(offset)
        values: dict[str, Any] = {}
        for i, ((org_id, stream, partition), offsets) in enumerate(by_partition.items()):
            values |= {f"o{i}": org_id, f"s{i}": stream, f"p{i}": partition, f"x{i}": offsets}
        for row in await conn.execute(_events_at_query(len(by_partition)), values):
            event = stored_event(row)
            found[(event.org_id, event.stream, event.partition, event.offset)] = event
    return found


@functools.lru_cache(maxsize=64)
def _events_at_query(partitions: int) -> Any:
    """One SELECT per partition, ``org_id = :oN AND stream = :sN AND partition = :pN AND
    log_offset IN :xN``, joined by UNION ALL: exact, a primary-key search on both
    databases, and one bound value per event instead of the four of a row-value IN (which
    SQLAlchemy processes one by one in Python, and which SQLite answers by scanning the
    whole log). OR-ed terms instead of the union would let SQLite pick the (org_id, stream)
    index and scan the stream. Built once per number of partitions."""
    selects = [
        select(events).where(
            events.c.org_id == bindparam(f"o{i}"),
            events.c.stream == bindparam(f"s{i}"),
            events.c.partition == bindparam(f"p{i}"),
            events.c.log_offset.in_(bindparam(f"x{i}", expanding=True)),
        )
        for i in range(partitions)
    ]
    return selects[0] if partitions == 1 else union_all(*selects)


async def parents_of(conn: AsyncConnection, org_ids: Collection[int]) -> dict[int, int | None]:
    """Each known entity's parent (None for an organization); unknown ids are missing."""
    found: dict[int, int | None] = {}
    ordered = sorted(set(org_ids))
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        query = select(entities.c.id, entities.c.parent_id).where(entities.c.id.in_(chunk))
        found.update({row.id: row.parent_id for row in await conn.execute(query)})
    return found
