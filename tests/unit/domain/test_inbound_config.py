"""Parsing inbound integrations and checking callers' credentials (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from junctionbox.domain.inbound import (
    InboundAuthType,
    InboundCheck,
    ProxyMethod,
    ProxyRetry,
    inbound_document,
    masked_inbound_config,
    parse_inbound,
    restore_masked_inbound,
    with_inbound_secrets,
)
from junctionbox.errors import ValidationError

KEY = "partner-key-0123456789"


def body(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "Booking",
        "type": "appointment-booking",
        "targetUrl": "https://partner.example.com/api",
    }
    document.update(changes)
    return document


def test_defaults() -> None:
    parsed = parse_inbound(body())
    assert parsed.http_method is ProxyMethod.POST
    assert parsed.allowed_methods == (ProxyMethod.POST,)
    assert parsed.timeout_ms == 30_000
    assert parsed.retry == ProxyRetry()
    assert parsed.inbound_auth.type is InboundAuthType.NONE
    assert parsed.request_transformation.mode is None


def test_document_round_trip_with_secrets() -> None:
    parsed = parse_inbound(
        body(
            httpMethod="get",
            allowedMethods=["GET", "post"],
            inboundAuthType="BASIC",
            inboundAuthConfig={"username": "partner", "password": KEY},
            outgoingAuthType="API_KEY",
            outgoingAuthConfig={"name": "X-Key", "value": "upstream-secret"},
            requestFieldMappings=[{"sourceField": "a", "targetField": "b"}],
            responseTransformationMode="JSONATA",
            responseTransformScript="{'x': y}",
            rateLimits={"enabled": True, "maxRequests": 5, "windowSeconds": 1},
            retryPolicy={"maxRetries": 1, "initialDelay": 50, "retryNonIdempotent": True},
        )
    )
    document = inbound_document(parsed)
    assert "password" not in str(document)
    assert "upstream-secret" not in str(document)
    again = parse_inbound(
        with_inbound_secrets(document, parsed.auth.secrets, parsed.inbound_auth.secrets)
    )
    assert again == parsed
    assert document["requestTransformationMode"] == "SIMPLE"
    assert document["allowedMethods"] == ["GET", "POST"]
    assert masked_inbound_config(parsed.inbound_auth) == {
        "username": "partner",
        "password": "****6789",
    }


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"type": "a/b"}, "type"),
        ({"type": "../x"}, "type"),
        ({"name": ""}, "name"),
        ({"targetUrl": "ftp://x"}, "targetUrl"),
        ({"allowedMethods": ["GET"]}, "allowedMethods"),
        ({"allowedMethods": ["POST", "BREW"]}, "allowedMethods"),
        ({"inboundAuthType": "DIGEST"}, "inboundAuthType"),
        ({"inboundAuthType": "BEARER", "inboundAuthConfig": {}}, "inboundAuthConfig"),
        (
            {"inboundAuthType": "BEARER", "inboundAuthConfig": {"token": "a\r\nb-long-enough"}},
            "inboundAuthConfig",
        ),
        (
            {"inboundAuthType": "API_KEY", "inboundAuthConfig": {"name": "Cookie", "value": KEY}},
            "inboundAuthConfig",
        ),
        (
            {"inboundAuthType": "BASIC", "inboundAuthConfig": {"username": "a:b", "password": KEY}},
            "inboundAuthConfig",
        ),
        ({"requestTransformationMode": "XSLT"}, "requestTransformationMode"),
        ({"responseTransformationMode": "SCRIPT"}, "responseTransformScript"),
        ({"timeoutMs": 0}, "timeoutMs"),
        ({"retryPolicy": {"initialDelay": 500, "maxDelay": 100}}, "retryPolicy"),
    ],
)
def test_invalid(changes: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_inbound(body(**changes))
    assert any(p.loc[1] == where for p in caught.value.problems), caught.value.problems


def test_retry_backoff_is_capped() -> None:
    retry = ProxyRetry(initial_delay=0.1, max_delay=0.3, multiplier=2)
    assert [retry.delay(n) for n in range(4)] == [0.1, 0.2, 0.3, 0.3]


def _check(kind: str, config: dict[str, str]) -> InboundCheck:
    parsed = parse_inbound(body(inboundAuthType=kind, inboundAuthConfig=config))
    return InboundCheck.of(parsed.inbound_auth)


def _reader(headers: dict[str, str]) -> Any:
    return lambda name: headers.get(name)


def test_api_key_check() -> None:
    check = _check("API_KEY", {"value": KEY})
    assert check.header == "x-integration-key"
    assert check.accepts(_reader({"x-integration-key": KEY}))
    assert not check.accepts(_reader({"x-integration-key": KEY[:-1]}))
    assert not check.accepts(_reader({}))


def test_bearer_check() -> None:
    check = _check("BEARER", {"token": KEY})
    assert check.accepts(_reader({"authorization": f"Bearer {KEY}"}))
    assert check.accepts(_reader({"authorization": f"bearer  {KEY}"}))
    assert not check.accepts(_reader({"authorization": f"Basic {KEY}"}))
    assert not check.accepts(_reader({"authorization": "Bearer nope"}))


def test_basic_check() -> None:
    check = _check("BASIC", {"username": "partner", "password": KEY})

    def basic(text: str) -> Any:
        return _reader({"authorization": "Basic " + base64.b64encode(text.encode()).decode()})

    assert check.accepts(basic(f"partner:{KEY}"))
    assert not check.accepts(basic(f"partner:{KEY}x"))
    assert not check.accepts(basic(f"other:{KEY}"))
    assert not check.accepts(basic("partner"))
    assert not check.accepts(_reader({"authorization": "Basic !!not-base64"}))


def test_none_accepts_everyone() -> None:
    assert InboundCheck.of(parse_inbound(body()).inbound_auth).accepts(_reader({}))


def test_masked_values_restore_only_their_own_secret() -> None:
    restored, problems = restore_masked_inbound(
        {"value": "****6789"}, {"value": KEY}, keep_omitted=False
    )
    assert restored == {"value": KEY}
    assert problems == []
    _, problems = restore_masked_inbound({"value": "****0000"}, {"value": KEY}, keep_omitted=False)
    assert problems
    kept, _ = restore_masked_inbound({"name": "X-K"}, {"value": KEY}, keep_omitted=True)
    assert kept == {"name": "X-K", "value": KEY}
