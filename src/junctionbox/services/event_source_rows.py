"""Rows of a source's table turned into event drafts (or the reason a row is skipped), and
the in-memory dedupe window of seed 003 (5 minutes, keyed by type, payload id and tenant)."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson

from junctionbox.connectors.sql_source import (
    checkpoint_text,
)
from junctionbox.domain.events import JSON_CONTENT_TYPE, EventDraft
from junctionbox.services.event_source_config import SourceConfig
from junctionbox.store.queries.event_sources import SourceRecord

DEDUP_WINDOW: Final = timedelta(minutes=5)
DEDUP_MAX_KEYS: Final = 10_000
_TYPE = re.compile(r"^\S{1,200}$")
_MAX_ATTRIBUTE = 500
_MAX_EVENT_ID = 200


# --- the dedupe window ---


class DedupWindow:
    """Keys seen in the last ``window``, at most ``max_keys`` (the oldest are forgotten first)."""

    def __init__(self, window: timedelta = DEDUP_WINDOW, max_keys: int = DEDUP_MAX_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, datetime] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def contains(self, key: str, now: datetime) -> bool:
        seen = self._seen.get(key)
        return seen is not None and now - seen < self.window

    def remember(self, keys: Iterable[str], now: datetime) -> None:
        for key in keys:
            self._seen[key] = now
            self._seen.move_to_end(key)
        while self._seen and (
            len(self._seen) > self.max_keys or now - next(iter(self._seen.values())) >= self.window
        ):
            self._seen.popitem(last=False)


@dataclass(frozen=True)
class Skip:
    reason: str
    detail: str


@dataclass(frozen=True)
class Mapped:
    row_id: str
    tenant_id: int
    draft: EventDraft
    dedupe_key: str


class RowMapper:
    """Turns rows (``{config field: value}``) into drafts, or says why a row is skipped."""

    def __init__(self, record: SourceRecord, config: SourceConfig, max_event_bytes: int) -> None:
        self.record = record
        self.config = config
        self.max_event_bytes = max_event_bytes
        self.source = f"sql:{record.name}"

    def map(self, row: Mapping[str, Any]) -> Mapped | Skip:
        row_id = checkpoint_text(row["idColumn"])
        event_type = _text(row["typeColumn"])
        if event_type is None or not _TYPE.match(event_type):
            return Skip("invalid", "event type must be 1-200 characters without whitespace")
        tenant = _tenant(row["tenantColumn"])
        if tenant is None:
            return Skip("invalid", "tenant column is not an entity id")
        payload = _payload(row["payloadColumn"])
        if payload is None:
            return Skip("invalid", "payload is not JSON")
        raw, value = payload
        if len(raw) > self.max_event_bytes:
            return Skip("too_large", f"payload over {self.max_event_bytes} bytes")
        try:
            moment = _time(row.get("timestampColumn"))
        except ValueError:
            return Skip("invalid", "timestamp is not a date and time")
        attributes = self._attributes(row)
        if isinstance(attributes, Skip):
            return attributes
        subject, partition_key = attributes
        event_id = f"{self.record.id}:{row_id}"
        if len(event_id) > _MAX_EVENT_ID:
            return Skip("invalid", "row id too long for an event id")
        draft = EventDraft(
            type=event_type,
            payload=raw,
            value=value,
            has_value=True,
            event_id=event_id,
            source=self.source,
            subject=subject,
            time=moment,
            stream=self.config.stream,
            partition_key=partition_key,
            data_content_type=JSON_CONTENT_TYPE,
        )
        payload_id = _dig(value, self.config.payload_id_path)
        key_id = f"row:{row_id}" if payload_id is None else payload_id
        return Mapped(row_id, tenant, draft, f"{event_type}:{key_id}:{tenant}")

    def _attributes(self, row: Mapping[str, Any]) -> tuple[str | None, str | None] | Skip:
        subject = _text(row.get("subjectColumn"))
        partition_key = _text(row.get("partitionKeyColumn"))
        for name, value in (("subject", subject), ("partition key", partition_key)):
            if value is not None and (len(value) > _MAX_ATTRIBUTE or "\x00" in value):
                return Skip("invalid", f"{name} over {_MAX_ATTRIBUTE} characters")
        return subject, partition_key


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    return str(value)


def _tenant(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, Decimal | float) and value == int(value):
        return int(value) if value > 0 else None
    text = _text(value)
    if text is not None and text.strip().isdigit():
        return int(text.strip()) or None
    return None


def _payload(value: Any) -> tuple[bytes, Any] | None:
    """The payload's JSON bytes as stored (text columns) or serialised (JSON values), and the
    decoded value; None when it is not JSON. A NULL payload is JSON ``null``."""
    if value is None:
        return b"null", None
    if isinstance(value, dict | list):
        return orjson.dumps(value), value
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        return None
    try:
        return value, orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _time(value: Any) -> datetime | None:
    """A timestamp column's value as UTC. Naive values (DATETIME, timestamp without time
    zone, SQLite text) are taken as UTC; numbers as Unix seconds (milliseconds if huge)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = float(value)
        moment = datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
    else:
        text = _text(value)
        if text is None:
            raise ValueError("not a timestamp")
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _dig(value: Any, path: str) -> str | None:
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)
