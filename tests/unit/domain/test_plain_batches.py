"""A batch of plain events is read by msgspec, with exactly the walk's outcome; anything it
is unsure of goes the other ways."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from junctionbox.domain import event_envelope
from junctionbox.domain.event_envelope import EnvelopeLimits, Item, parse_publish
from junctionbox.domain.events import UNDECODED, EventDraft
from junctionbox.errors import ValidationError

JSON = {"content-type": "application/json"}
LIMITS = EnvelopeLimits(max_batch=50, max_event_bytes=4096, max_depth=8)
PLAIN = [
    {"type": "a.b", "data": {"n": 1, "f": 1.5, "s": "é ✓ \u2028 😀", "l": [1, [2, {"x": None}]]}},
    {"type": "a.b", "data": "text", "partitionKey": "k", "subject": "s", "id": "i-1"},
    {"type": "a.b", "data": None, "source": "/s", "dataschema": "https://s/1"},
    {"type": "a.b", "data": {}, "id": "i" * 200, "subject": None, "partitionkey": "p"},
    {"type": "a.b", "data": [1, 2], "datacontenttype": "application/json; charset=utf-8"},
    {"type": "a.b", "data": {"a": 1}, "datacontenttype": None, "partitionKey": None},
    {"type": "c.d", "data": 1234567890123456789, "source": "s" * 500},
    {"type": "c.d", "data": [-0.0, 1.0e-7, 0.1]},
    {"type": "é.✓", "data": {"path": "C:\\\\u"}},
]
# The same events written the way other JSON libraries do (spaces, escapes, number spelling).
SPACED = (
    b'{ "events" : [\n  {"type": "a.b", "data": { "n" : 1.50, "e": "\\u00e9\\ud83d\\ude00" } },'
    b'\n  {"data": [ 1 , 2 ], "type": "a.b", "id": "x"} ,'
    b'\n  {"type": "a.b", "type": "b.c", "data": "\\"quoted\\""},'
    b'\n  {"type": "c.d", "data": [123456789012345678901234567890, 1e999, 1E2, -0]}\n] }\n'
)


def decoded(items: list[Item]) -> list[Item]:
    """The items with every draft's value decoded, as the walk gives them."""
    return [
        dataclasses.replace(item, value=item.json_value()) if isinstance(item, EventDraft) else item
        for item in items
    ]


def walked(body: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, str, list[Item]]:
    with monkeypatch.context() as patch:
        patch.setattr(event_envelope, "_plain_single", lambda *_: None)
        patch.setattr(event_envelope, "_plain_batch", lambda *_: None)
        patch.setattr(event_envelope, "_compact_batch", lambda *_: None)
        result = parse_publish(body, JSON, LIMITS)
    return result.batch, result.base, result.items


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps({"events": PLAIN}),
        orjson.dumps(PLAIN),
        orjson.dumps(PLAIN, option=orjson.OPT_INDENT_2),
        b" \n" + orjson.dumps({"events": PLAIN[:3]}),
        SPACED,
    ],
    ids=["object", "array", "indented", "leading-space", "spaced"],
)
def test_the_plain_way_and_the_walk_agree(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = event_envelope._plain_batch(body, "application/json", LIMITS)
    assert fast is not None
    assert all(isinstance(i, EventDraft) and i.value is UNDECODED for i in fast.items)
    batch, base, items = walked(body, monkeypatch)
    assert (fast.batch, fast.base) == (batch, base)
    assert decoded(fast.items) == items
    assert parse_publish(body, JSON, LIMITS).items == fast.items


def test_each_event_keeps_its_data_exactly_as_sent() -> None:
    parsed = parse_publish(SPACED, JSON, LIMITS)
    payloads = [item.payload for item in parsed.items if isinstance(item, EventDraft)]
    assert payloads == [
        b'{ "n" : 1.50, "e": "\\u00e9\\ud83d\\ude00" }',
        b"[ 1 , 2 ]",
        b'"\\"quoted\\""',
        b"[123456789012345678901234567890, 1e999, 1E2, -0]",
    ]
    assert [item.type for item in parsed.items if isinstance(item, EventDraft)][2] == "b.c"


@pytest.mark.parametrize(
    ("why", "body"),
    [
        ("an unknown member", orjson.dumps([{"type": "a.b", "data": {}, "ext": "v"}])),
        ("a time", orjson.dumps([{"type": "a.b", "data": {}, "time": "2024-05-01T10:00:00Z"}])),
        ("a stream", orjson.dumps([{"type": "a.b", "data": {}, "stream": "orders"}])),
        ("no data", orjson.dumps([{"type": "a.b"}])),
        ("no type", orjson.dumps([{"data": {}}])),
        ("a bad type", orjson.dumps([{"type": "a b", "data": {}}])),
        ("a number for a type", orjson.dumps([{"type": 7, "data": {}}])),
        ("an empty attribute", orjson.dumps([{"type": "a.b", "data": {}, "subject": ""}])),
        ("a long attribute", orjson.dumps([{"type": "a.b", "data": {}, "id": "i" * 201}])),
        (
            "both keys",
            orjson.dumps([{"type": "a.b", "data": {}, "partitionKey": "1", "partitionkey": "2"}]),
        ),
        (
            "text data",
            orjson.dumps([{"type": "a.b", "data": "t", "datacontenttype": "text/plain"}]),
        ),
        ("data too large", orjson.dumps([{"type": "a.b", "data": "x" * 5000}])),
        ("data perhaps too deep", orjson.dumps([{"type": "a.b", "data": [[[[[[[[[1]]]]]]]]]}])),
        ("an escaped NUL", orjson.dumps([{"type": "a.b", "data": {"nul": "\u0000"}}])),
        ("a text that looks like one", orjson.dumps([{"type": "a.b", "data": "C:\\\\u0000"}])),
        ("invalid UTF-8", b'[{"type":"a.b","data":"\xff"}]'),
        ("an encoded surrogate", b'[{"type":"a.b","data":"\xed\xa0\x80"}]'),
        ("a lone surrogate", b'[{"type":"a.b","data":"\\ud800"}]'),
        ("NaN", b'[{"type":"a.b","data":NaN}]'),
        ("not an object", orjson.dumps([1, {"type": "a.b", "data": {}}])),
        ("an empty batch", b"[]"),
        ("too many events", orjson.dumps([{"type": "a.b", "data": {}}] * 51)),
        (
            "a member besides events",
            orjson.dumps({"events": [{"type": "a.b", "data": {}}], "x": 1}),
        ),
        ("one event", orjson.dumps({"type": "a.b", "data": {}})),
        ("malformed", b'[{"type":"a.b","data":{}]'),
    ],
)
def test_the_plain_way_leaves_to_the_others_what_it_is_unsure_of(
    why: str, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert event_envelope._plain_batch(body, "application/json", LIMITS) is None, why
    with monkeypatch.context() as patch:
        patch.setattr(event_envelope, "_plain_batch", lambda *_: None)
        try:
            expected: object = parse_publish(body, JSON, LIMITS)
        except Exception as exc:  # the walk's explanation, which must stay the same
            expected = repr(exc)
    try:
        outcome: object = parse_publish(body, JSON, LIMITS)
    except Exception as exc:
        outcome = repr(exc)
    assert outcome == expected


def test_a_cloudevents_batch_media_type_wants_an_array() -> None:
    body = orjson.dumps({"events": [{"type": "a.b", "data": {}}]})
    assert event_envelope._plain_batch(body, "application/cloudevents-batch+json", LIMITS) is None
    assert event_envelope._plain_batch(body, "application/cloudevents+json", LIMITS) is None
    assert (
        event_envelope._plain_batch(b"[" + body + b"]", "application/cloudevents+json", LIMITS)
        is None
    )
    array = orjson.dumps([{"type": "a.b", "data": {}}])
    assert event_envelope._plain_batch(array, "application/cloudevents-batch+json", LIMITS)


def test_a_value_left_undecoded_is_decoded_as_the_walk_would() -> None:
    draft = EventDraft(
        "a.b", b'{"big": 123456789012345678901234567890, "inf": 1e999}', UNDECODED, True
    )
    assert draft.json_value() == {"big": 123456789012345678901234567890, "inf": float("inf")}
    assert EventDraft("a.b", b"[1]", [1], True).json_value() == [1]


# --- single events ---


@pytest.mark.parametrize("event", PLAIN, ids=[f"plain-{n}" for n in range(len(PLAIN))])
def test_a_plain_single_event_is_read_as_the_walk_reads_it(
    event: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    for body in (orjson.dumps(event), b" " + orjson.dumps(event, option=orjson.OPT_INDENT_2)):
        fast = event_envelope._plain_single(body, "application/json", LIMITS)
        assert fast is not None
        batch, base, items = walked(body, monkeypatch)
        assert (fast.batch, fast.base) == (batch, base) == (False, "")
        assert decoded(fast.items) == items
        assert parse_publish(body, JSON, LIMITS).items == fast.items


@pytest.mark.parametrize(
    ("why", "body"),
    [
        ("an unknown member", orjson.dumps({"type": "a.b", "data": {}, "ext": "v"})),
        ("a time", orjson.dumps({"type": "a.b", "data": {}, "time": "2024-05-01T10:00:00Z"})),
        ("no data", orjson.dumps({"type": "a.b"})),
        ("a bad type", orjson.dumps({"type": "a b", "data": {}})),
        ("an empty attribute", orjson.dumps({"type": "a.b", "data": {}, "subject": ""})),
        ("data too large", orjson.dumps({"type": "a.b", "data": "x" * 5000})),
        ("an escaped NUL", orjson.dumps({"type": "a.b", "data": {"nul": "\u0000"}})),
        ("invalid UTF-8", b'{"type":"a.b","data":"\xff"}'),
        ("a lone surrogate", b'{"type":"a.b","data":"\\ud800"}'),
        ("text after it", b'{"type":"a.b","data":{}} x'),
        ("a batch", orjson.dumps({"events": [{"type": "a.b", "data": {}}]})),
        ("an array", orjson.dumps([{"type": "a.b", "data": {}}])),
        ("a CloudEvent", orjson.dumps({"specversion": "1.0", "type": "a.b", "id": "1"})),
    ],
)
def test_a_single_event_the_plain_way_is_unsure_of_goes_the_other_ways(
    why: str, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert event_envelope._plain_single(body, "application/json", LIMITS) is None, why
    try:
        expected: object = walked(body, monkeypatch)
    except Exception as exc:  # the walk's explanation
        expected = repr(exc)
    try:
        parsed = parse_publish(body, JSON, LIMITS)
        outcome: object = (parsed.batch, parsed.base, decoded(parsed.items))
    except Exception as exc:
        outcome = repr(exc)
    assert outcome == expected


def test_a_single_event_under_a_cloudevents_media_type_is_left_to_the_walk() -> None:
    body = orjson.dumps({"type": "a.b", "data": {}})
    for media in ("application/cloudevents+json", "application/cloudevents-batch+json"):
        assert event_envelope._plain_single(body, media, LIMITS) is None


@pytest.mark.parametrize("shape", ["single", "batch", "array"])
def test_data_nested_too_deeply_for_msgspec_is_left_to_the_walk(shape: str) -> None:
    # msgspec raises RecursionError even in the data it skips; the walk explains (a 400).
    data = b"[" * 10_000 + b"]" * 10_000
    event = b'{"type": "a.b", "data": ' + data + b"}"
    body = {"single": event, "batch": b'{"events": [' + event + b"]}", "array": b"[" + event + b"]"}
    assert event_envelope._plain_single(body[shape], "application/json", LIMITS) is None
    assert event_envelope._plain_batch(body[shape], "application/json", LIMITS) is None
    with pytest.raises(ValidationError, match="nests too deeply"):
        parse_publish(body[shape], JSON, EnvelopeLimits(max_depth=20_000))
