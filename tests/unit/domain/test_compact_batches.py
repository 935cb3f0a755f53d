"""A batch in compact JSON is read the fast way, with exactly the walk's outcome."""

from __future__ import annotations

import orjson
import pytest

from junctionbox.domain import event_envelope
from junctionbox.domain.event_envelope import EnvelopeLimits, parse_publish

JSON = {"content-type": "application/json"}
LIMITS = EnvelopeLimits(max_batch=50, max_event_bytes=4096, max_depth=8)
EVENTS = [
    {"type": "a.b", "data": {"n": 1, "f": 1.5, "s": "é ✓ \u2028", "l": [1, [2, {"x": None}]]}},
    {"type": "a.b", "data": "text", "partitionKey": "k", "subject": "s", "id": "i-1"},
    {"type": "a.b", "time": "2024-05-01T10:00:00Z", "stream": "orders", "data": None},
    {"type": "a.b", "data": {"deep": [[[[[[[[[[1]]]]]]]]]]}},  # too deep
    {"type": "a.b", "data": {"nul": "\u0000"}},
    {"type": "a.b", "data": "x" * 5000},  # too large
    {"type": "a b", "data": {}},
    {"data": {}},
    {"type": "a.b", "unknown": 1},
    {"specversion": "1.0", "id": "c-1", "source": "/s", "type": "a.b", "ext1": "v", "data": {}},
    {"specversion": "1.0", "id": "c-2", "source": "/s", "type": "a.b", "data_base64": "AAE="},
    {"type": "a.b", "data": {"data": {"data": 1}}, "subject": '"data":'},
    {"type": "a.b", "stream": "bad stream"},
    {"type": "a.b", "time": "yesterday"},
    {"type": "a.b", "partitionKey": "k\u0000"},
    # the plain events' own way: attributes at and past their limits, null ones, both
    # spellings of the partition key, JSON and non-JSON content types, an escaped backslash
    {"type": "a.b", "data": {}, "id": "i" * 200, "subject": None, "partitionkey": "p"},
    {"type": "a.b", "data": {}, "id": "i" * 201},
    {"type": "a.b", "data": {}, "subject": ""},
    {"type": "a.b", "data": {}, "partitionkey": "one", "partitionKey": "two"},
    {"type": "a.b", "data": {"a": 1}, "datacontenttype": "application/json; charset=utf-8"},
    {"type": "a.b", "data": "plain text", "datacontenttype": "text/plain"},
    {"type": "a.b", "data": {"a": 1}, "datacontenttype": None, "source": "/s"},
    {"type": "a.b", "data": {"path": "C:\\u0000"}},
    {"type": 7, "data": {}},
    {"type": "a.b", "data": {}, "unknown": None},
    {"type": "a.b", "data": {}, "subject": "s\u0000"},
    {"type": "a.b", "data": {}, "source": 5},
]


def parsed(body: bytes) -> tuple[bool, str, list[object]]:
    result = parse_publish(body, JSON, LIMITS)
    return result.batch, result.base, list(result.items)


# A body with a NUL anywhere keeps every event off the plain events' shortest way.
WITHOUT_NUL = [e for e in EVENTS if b"\\u0000" not in orjson.dumps(e)]


@pytest.mark.parametrize("events", [EVENTS, WITHOUT_NUL], ids=["all", "without-nul"])
@pytest.mark.parametrize("wrap", ["object", "array"])
def test_the_fast_way_and_the_walk_agree(
    wrap: str, events: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    document = {"events": events} if wrap == "object" else events
    compact = orjson.dumps(document)
    assert event_envelope._compact_batch(compact, "application/json", LIMITS) is not None
    fast = parsed(compact)
    monkeypatch.setattr(event_envelope, "_compact_batch", lambda *_: None)
    assert parsed(compact) == fast
    assert parsed(b" " + compact) == fast


def test_the_fast_way_is_taken_only_for_compact_bodies() -> None:
    compact = orjson.dumps({"events": EVENTS[:3]})
    assert event_envelope._compact_batch(compact, "application/json", LIMITS) is not None
    for body in (
        b" " + compact,
        compact.replace(b'"n":1', b'"n": 1'),
        compact.replace(b"1.5", b"1.50"),
        compact.replace(
            b'{"type":"a.b","data":"text"', b'{"type":"a.b","type":"a.b","data":"text"'
        ),
        compact[:-1] + b',"x":1}',
        orjson.dumps([1, *EVENTS[:2]]),
        orjson.dumps({"events": []}),
    ):
        assert event_envelope._compact_batch(body, "application/json", LIMITS) is None
    # and the walk keeps exact text: a payload is what was sent
    spaced = compact.replace(b'"f":1.5', b'"f": 1.50')
    first = parse_publish(spaced, JSON, LIMITS).items[0]
    assert not isinstance(first, list)
    assert b'"f": 1.50' in first.payload


def test_whole_request_problems_still_raise() -> None:
    too_many = orjson.dumps({"events": [{"type": "a.b"}] * 51})
    with pytest.raises(Exception, match="at most 50"):
        parse_publish(too_many, JSON, LIMITS)
    batch = orjson.dumps({"events": EVENTS[:1]})
    with pytest.raises(Exception, match="needs a JSON array"):
        parse_publish(batch, {"content-type": event_envelope.CE_BATCH}, LIMITS)
