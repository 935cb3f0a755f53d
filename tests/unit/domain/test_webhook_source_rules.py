"""Webhook source rules: configuration checks, event type and message id, rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from junctionbox.domain.webhook_sources import (
    EventTypeFrom,
    SecretEntry,
    active_secrets,
    config_from_json,
    event_type_of,
    logged_headers,
    message_id_of,
    read_path,
    rotate,
    secret_hint,
)
from junctionbox.domain.webhook_verification import Scheme
from junctionbox.errors import ValidationError

LIMIT = 1024 * 1024
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def config(**fields: Any) -> Any:
    document = {"eventType": "partner.event", "verification": {"scheme": "GITHUB"}, **fields}
    return config_from_json(document, max_body_limit=LIMIT)


def problems_of(**fields: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        config(**fields)
    return [".".join(map(str, p.loc[1:])) for p in caught.value.problems]


def test_defaults_and_round_trip() -> None:
    parsed = config()
    assert (parsed.stream, parsed.tolerance_seconds, parsed.max_body_bytes) == (
        "default",
        300,
        LIMIT,
    )
    assert parsed.event_type_from is EventTypeFrom.FIXED
    assert config_from_json(parsed.to_json(), max_body_limit=LIMIT) == parsed


def test_each_bad_field_is_named() -> None:
    assert problems_of(stream="no spaces") == ["stream"]
    assert problems_of(eventType="has space") == ["eventType"]
    assert problems_of(eventTypeFrom="HEADER", eventType="bad header:") == ["eventType"]
    assert problems_of(toleranceSeconds=0) == ["toleranceSeconds"]
    assert problems_of(maxBodyBytes=0) == ["maxBodyBytes"]
    assert problems_of(maxBodyBytes=LIMIT + 1) == ["maxBodyBytes"]
    assert problems_of(messageIdPath="a..b") == ["messageIdPath"]
    assert problems_of(verification={"scheme": "HMAC_SHA256"}) == ["verification.header"]
    assert problems_of(verification={"scheme": "API_KEY"}) == ["verification.header"]
    assert problems_of(verification={"scheme": "BASIC"}) == ["verification.username"]
    assert problems_of(verification={"scheme": "GITHUB", "prefix": "x="}) == ["verification.prefix"]
    with pytest.raises(ValidationError):
        config(verification={"scheme": "NOPE"})


def test_event_type_fixed_header_and_body() -> None:
    assert event_type_of(config(eventTypePrefix="gh."), {}, None) == "gh.partner.event"
    by_header = config(
        eventTypeFrom="HEADER", eventType="X-GitHub-Event", eventTypePrefix="github."
    )
    assert event_type_of(by_header, {"x-github-event": "push"}, None) == "github.push"
    by_body = config(eventTypeFrom="BODY", eventType="$.data.kind")
    assert event_type_of(by_body, {}, {"data": {"kind": "order.paid"}}) == "order.paid"
    assert by_body.needs_json
    with pytest.raises(ValidationError, match="missing"):
        event_type_of(by_header, {}, None)
    with pytest.raises(ValidationError, match="missing"):
        event_type_of(by_body, {}, {"data": {"kind": 3}})
    with pytest.raises(ValidationError, match="not a valid"):
        event_type_of(by_body, {}, {"data": {"kind": "two words"}})


def test_message_id_defaults_per_scheme() -> None:
    github = config()
    assert message_id_of(github, {"x-github-delivery": "g-1"}, None, None) == "g-1"
    stripe = config(verification={"scheme": "STRIPE"})
    assert stripe.needs_json
    assert message_id_of(stripe, {}, {"id": "evt_9"}, None) == "evt_9"
    custom = config(
        verification={"scheme": "API_KEY", "header": "X-Key"}, messageIdHeader="X-Request-Id"
    )
    assert message_id_of(custom, {"x-request-id": "r-1"}, None, None) == "r-1"
    assert message_id_of(custom, {}, None, None) is None
    assert message_id_of(custom, {}, None, "verified") == "verified"
    numeric = config(verification={"scheme": "API_KEY", "header": "X-Key"}, messageIdPath="n")
    assert message_id_of(numeric, {}, {"n": 42}, None) == "42"
    with pytest.raises(ValidationError):
        message_id_of(custom, {"x-request-id": "x" * 201}, None, None)


def test_read_path_walks_objects_and_arrays() -> None:
    document = {"a": [{"b": "x"}, {"b": "y"}]}
    assert read_path(document, "a.1.b") == "y"
    assert read_path(document, "$.a.0.b") == "x"
    assert read_path(document, "a.5.b") is None
    assert read_path("text", "a") is None


def test_rotation_keeps_at_most_two_active() -> None:
    first = [SecretEntry("one", T0)]
    second = rotate(first, "two", T0 + timedelta(hours=1), timedelta(hours=24))
    assert [(e.value, e.expires_at) for e in second] == [
        ("two", None),
        ("one", T0 + timedelta(hours=25)),
    ]
    third = rotate(second, "three", T0 + timedelta(hours=2), timedelta(hours=24))
    assert [e.value for e in third] == ["three", "two"]
    assert active_secrets(third, T0 + timedelta(hours=27)) == ["three"]
    assert [e.value for e in rotate(third, "four", T0, timedelta(0))] == ["four"]


def test_secrets_are_hinted_and_credentials_masked_in_logs() -> None:
    assert secret_hint("whsec_abcdefghijkl") == "…ijkl"
    assert secret_hint("short") == "…"
    headers = {
        "content-type": "application/json",
        "x-partner-key": "k-1",
        "authorization": "Basic abc",
        "stripe-signature": "t=1,v1=aa",
        "user-agent": "partner/1",
        "host": "example.com",
    }
    logged = dict(logged_headers(headers, ["X-Partner-Key"]))
    assert logged == {
        "content-type": "application/json",
        "x-partner-key": "***",
        "authorization": "***",
        "stripe-signature": "***",
        "user-agent": "partner/1",
    }
    assert Scheme.GITHUB.value == "GITHUB"
