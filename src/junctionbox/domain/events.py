"""Events: the drafts producers send and the records the log keeps.

An event's ``payload`` is its data exactly as received (the JSON text of ``data``, the body
of a binary-mode CloudEvent, or the decoded ``data_base64``); its other CloudEvents attributes
are separate fields. ``StoredEvent.to_cloudevent`` gives it back in CloudEvents' JSON format.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

DEFAULT_STREAM = "default"
DEFAULT_SOURCE = "junctionbox"
JSON_CONTENT_TYPE = "application/json"

# The three records below are built once per event on the publish path, so they are not
# ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, which made
# building them three times slower (about 1 µs per record). Nothing changes them once built.


def is_json_content_type(content_type: str | None) -> bool:
    """``application/json``, ``text/json`` and any ``+json`` type (parameters ignored)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in {"application/json", "text/json"} or media.endswith("+json")


class _Undecoded:
    def __repr__(self) -> str:
        return "UNDECODED"


# A draft's ``value`` when the reader checked the JSON text of ``data`` without building
# the value: only schema validation needs it, and most event types have no schema.
UNDECODED: Any = _Undecoded()


def decode_json_text(text: bytes) -> Any:
    """The value of a JSON text that the envelope reader accepted: what its walk (the
    standard library's scanner) makes of it. orjson gives the same value faster for every
    text it accepts; it refuses a few the scanner takes (integers beyond 64 bits, numbers
    too large for a float), which the standard library then decodes."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(slots=True)
class EventDraft:
    """An event accepted at the door and not yet in the log.

    ``value`` is the decoded JSON data (for schema validation), ``UNDECODED`` when the
    reader left it for :meth:`json_value` to decode, or ``None`` when the data is not JSON;
    ``has_value`` tells a JSON ``null`` from no JSON at all.
    """

    type: str
    payload: bytes
    value: Any = None
    has_value: bool = False
    event_id: str | None = None
    source: str | None = None
    subject: str | None = None
    time: datetime | None = None
    stream: str | None = None
    partition_key: str | None = None
    data_content_type: str | None = None
    data_schema: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)

    def json_value(self) -> Any:
        """The decoded JSON data (decoded from ``payload`` now when the reader left it)."""
        return decode_json_text(self.payload) if self.value is UNDECODED else self.value


@dataclass(slots=True)
class StoredEvent:
    """One event of the log, at its (tenant, stream, partition, offset)."""

    org_id: int
    stream: str
    partition: int
    offset: int
    event_id: str
    source: str
    type: str
    subject: str | None
    time: datetime | None
    received_at: datetime
    partition_key: str | None
    data_content_type: str | None
    data_schema: str | None
    extensions: dict[str, Any]
    payload: bytes

    @property
    def size(self) -> int:
        return len(self.payload)

    @property
    def position(self) -> str:
        """A resumable cursor: ``<partition>:<offset>``, the SSE event id."""
        return f"{self.partition}:{self.offset}"

    def data(self) -> Any:
        """The data as JSON when it is JSON, else the payload as text (or base64 if binary)."""
        if is_json_content_type(self.data_content_type):
            return orjson.loads(self.payload) if self.payload else None
        try:
            return self.payload.decode()
        except UnicodeDecodeError:
            return base64.b64encode(self.payload).decode()

    def to_cloudevent(self) -> dict[str, Any]:
        """The event in CloudEvents 1.0 JSON format, with its log position as extensions."""
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.event_id,
            "source": self.source,
            "type": self.type,
        }
        optional = {
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z") if self.time else None,
            "datacontenttype": self.data_content_type,
            "dataschema": self.data_schema,
            "partitionkey": self.partition_key,
        }
        event.update({k: v for k, v in optional.items() if v is not None})
        event.update(self.extensions)
        event.update(
            {"jbstream": self.stream, "jbpartition": self.partition, "jboffset": self.offset}
        )
        self._put_data(event)
        return event

    def _put_data(self, event: dict[str, Any]) -> None:
        if not self.payload:
            return
        if is_json_content_type(self.data_content_type):
            event["data"] = orjson.Fragment(self.payload)
            return
        try:
            event["data"] = self.payload.decode()
        except UnicodeDecodeError:
            event["data_base64"] = base64.b64encode(self.payload).decode()


@dataclass(slots=True)
class AppendResult:
    """Where an event landed; ``duplicate`` when its (source, id) was already in the log."""

    event_id: str
    stream: str
    partition: int
    offset: int
    duplicate: bool = False
