"""The outbound integration model: parse_integration, integration_document and masking."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junctionbox.domain.outbound import (
    AuthType,
    HttpMethod,
    OrderingMode,
    SchedulingMode,
    Scope,
    SigningAlgorithm,
    SigningKey,
    StoredIntegration,
    event_type_matches,
    integration_document,
    mask_secret,
    masked_auth_config,
    parse_integration,
    restore_masked,
    with_secrets,
)
from junctionbox.errors import ValidationError

MINIMAL = {"name": "n", "eventType": "order.created", "targetUrl": "https://r.example.com/h"}


def locs(body: dict[str, Any]) -> set[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        parse_integration(body)
    return {p.loc for p in caught.value.problems}


def round_trip(body: dict[str, Any]) -> None:
    integration = parse_integration(body)
    document = integration_document(integration)
    again = parse_integration(with_secrets(document, integration.auth.secrets))
    assert again == integration
    assert integration_document(again) == document


def test_minimal_body_gets_the_defaults() -> None:
    i = parse_integration(MINIMAL)
    assert i.http_method is HttpMethod.POST
    assert i.is_active is True
    assert i.auth.type is AuthType.NONE
    assert i.scheduling.mode is SchedulingMode.IMMEDIATE
    assert i.scope is Scope.ALL_ENTITIES
    assert i.signing.algorithm is SigningAlgorithm.HMAC_SHA256
    assert i.ordering.mode is OrderingMode.NONE
    assert i.filter is None
    assert i.timeout_ms == 30_000
    assert i.disable_after_failures == 5
    (action,) = i.effective_actions()
    assert (action.index, action.target_url, action.delay_ms) == (0, i.target_url, 0)


FULL: dict[str, Any] = {
    **MINIMAL,
    "description": "everything set",
    "eventType": "order.*",
    "isActive": False,
    "httpMethod": "put",
    "transformationMode": "SIMPLE",
    "fieldMappings": [{"sourceField": "a", "targetField": "b", "transform": ["trim", "upper"]}],
    "outgoingAuthType": "OAUTH2",
    "outgoingAuthConfig": {
        "tokenUrl": "https://auth.example.com/token",
        "clientId": "c",
        "clientSecret": "s3cr3t",
        "scope": "write",
    },
    "schedulingMode": "RECURRING",
    "schedulingConfig": {
        "type": "CRON",
        "expression": "0 8 * * 1-5",
        "timezone": "Europe/London",
        "maxOccurrences": 3,
        "endAt": "2027-01-01T00:00:00Z",
    },
    "actions": [
        {"name": "first"},
        {
            "name": "second",
            "targetUrl": "https://other.example.com/x",
            "httpMethod": "PATCH",
            "delayMs": 5000,
            "transformationMode": "JSONATA",
            "transformScript": "{'x': a}",
        },
    ],
    "rateLimits": {"enabled": True, "maxRequests": 10, "windowSeconds": 2.5},
    "scope": "ENTITY_ONLY",
    "excludedEntityRids": [5, 6, 5],
    "filter": "event.data.total > 10",
    "retryPolicy": {
        "maxRetries": 7,
        "initialDelay": 500,
        "maxDelay": 60000,
        "multiplier": 3,
        "jitterFactor": 0.1,
    },
    "timeoutMs": 5000,
    "ordering": {"mode": "FIFO", "key": "data.customerId"},
    "signing": {"algorithm": "ED25519", "hexHeader": True, "rotationOverlapSeconds": 60},
    "disableAfterFailures": 0,
}


def test_every_field_is_read() -> None:
    i = parse_integration(FULL)
    assert i.http_method is HttpMethod.PUT
    assert i.is_active is False
    assert i.transformation.mode == "SIMPLE"
    assert i.auth.settings == {
        "tokenUrl": "https://auth.example.com/token",
        "clientId": "c",
        "scope": "write",
    }
    assert i.auth.secrets == {"clientSecret": "s3cr3t"}
    assert i.scheduling.expression == "0 8 * * 1-5"
    assert i.scheduling.end_at == datetime(2027, 1, 1, tzinfo=UTC)
    first, second = i.actions
    assert first.transformation == i.transformation  # inherited
    assert first.http_method is HttpMethod.PUT
    assert second.transformation.mode == "JSONATA"
    assert (second.delay_ms, second.http_method) == (5000, HttpMethod.PATCH)
    assert i.rate_limit.max_requests == 10
    assert i.excluded_entity_rids == (5, 6)
    assert i.retry_policy.base_delay == 0.5
    assert i.ordering.key == "data.customerId"
    assert i.signing.rotation_overlap_seconds == 60
    assert i.disable_after_failures == 0


@pytest.mark.parametrize(
    "body",
    [
        MINIMAL,
        FULL,
        {**MINIMAL, "schedulingMode": "DELAYED", "schedulingConfig": {"delayMs": 1000}},
        {
            **MINIMAL,
            "schedulingMode": "DELAYED",
            "schedulingConfig": {"at": "2026-05-01T09:00:00+02:00"},
        },
        {
            **MINIMAL,
            "schedulingMode": "RECURRING",
            "schedulingConfig": {"type": "INTERVAL", "intervalMs": 60000},
        },
        {
            **MINIMAL,
            "outgoingAuthType": "CUSTOM_HEADERS",
            "outgoingAuthConfig": {"headers": {"X-A": "1", "X-B": "2"}},
        },
        {
            **MINIMAL,
            "outgoingAuthType": "API_KEY",
            "outgoingAuthConfig": {"name": "k", "value": "v", "in": "query"},
        },
        {**MINIMAL, "transformationMode": "SCRIPT", "transformScript": "return payload;"},
    ],
)
def test_document_round_trips(body: dict[str, Any]) -> None:
    round_trip(body)


def test_the_document_holds_no_credentials() -> None:
    document = integration_document(parse_integration(FULL))
    assert "s3cr3t" not in str(document)
    assert document["outgoingAuthConfig"] == {
        "tokenUrl": "https://auth.example.com/token",
        "clientId": "c",
        "scope": "write",
    }


def test_auth_aliases_and_stray_credentials() -> None:
    api_key = parse_integration(
        {
            **MINIMAL,
            "outgoingAuthType": "api_key",
            "outgoingAuthConfig": {"headerName": "X-Key", "apiKey": "secret-1", "token": "old"},
        }
    ).auth
    assert api_key.type is AuthType.API_KEY
    assert api_key.settings == {"name": "X-Key", "in": "header"}  # the BEARER token is dropped
    assert api_key.secrets == {"value": "secret-1"}
    oauth = parse_integration(
        {
            **MINIMAL,
            "outgoingAuthType": "OAUTH2",
            "outgoingAuthConfig": {
                "tokenUrl": "https://a.example.com/t",
                "clientId": "c",
                "clientSecret": "s",
                "refreshToken": "r",
            },
        }
    ).auth
    assert oauth.secrets == {"clientSecret": "s", "refreshToken": "r"}  # sealed, not plain
    assert oauth.settings == {"tokenUrl": "https://a.example.com/t", "clientId": "c"}


def test_problems_are_collected_with_their_locations() -> None:
    found = locs(
        {
            "eventType": "bad type!",
            "targetUrl": "http://user:pw@h.example.com/",
            "httpMethod": "GET",
            "outgoingAuthType": "BEARER",
            "timeoutMs": 10**9,
            "rateLimits": {"enabled": True, "windowSeconds": 0},
            "excludedEntityRids": ["x"],
            "retryPolicy": {"maxRetries": -1},
            "ordering": {"mode": "FIFO", "key": ""},
            "signing": {"algorithm": "RSA"},
            "actions": [{"targetUrl": "nope"}],
        }
    )
    assert {
        ("body", "name"),
        ("body", "eventType"),
        ("body", "targetUrl"),
        ("body", "httpMethod"),
        ("body", "outgoingAuthConfig", "token"),
        ("body", "timeoutMs"),
        ("body", "rateLimits", "windowSeconds"),
        ("body", "excludedEntityRids"),
        ("body", "retryPolicy", "maxRetries"),
        ("body", "ordering", "key"),
        ("body", "signing", "algorithm"),
        ("body", "actions", 0, "targetUrl"),
    } <= found


@pytest.mark.parametrize(
    ("config", "loc"),
    [
        ({"headers": {"X-A": "v\r\nX-Evil: 1"}}, ("body", "outgoingAuthConfig", "headers", "X-A")),
        ({"headers": {"X A": "v"}}, ("body", "outgoingAuthConfig", "headers", "X A")),
        ({"headers": {"X-A": 5}}, ("body", "outgoingAuthConfig", "headers", "X-A")),
        ({"headers": ["X-A"]}, ("body", "outgoingAuthConfig", "headers")),
    ],
)
def test_header_injection_is_refused(config: dict[str, Any], loc: tuple[Any, ...]) -> None:
    body = {**MINIMAL, "outgoingAuthType": "CUSTOM_HEADERS", "outgoingAuthConfig": config}
    assert loc in locs(body)


def test_api_key_header_name_and_values_without_newlines() -> None:
    body = {
        **MINIMAL,
        "outgoingAuthType": "API_KEY",
        "outgoingAuthConfig": {"name": "X Key", "value": "a\nb"},
    }
    assert {
        ("body", "outgoingAuthConfig", "name"),
        ("body", "outgoingAuthConfig", "value"),
    } <= locs(body)


@pytest.mark.parametrize(
    ("mode", "config", "loc"),
    [
        ("DELAYED", None, ("body", "schedulingConfig")),
        ("DELAYED", {}, ("body", "schedulingConfig")),
        ("DELAYED", {"delayMs": 1, "at": "2026-01-01T00:00:00Z"}, ("body", "schedulingConfig")),
        ("DELAYED", {"at": "2026-01-01T00:00:00"}, ("body", "schedulingConfig", "at")),
        ("DELAYED", {"at": "tomorrow"}, ("body", "schedulingConfig", "at")),
        ("RECURRING", {"expression": "* * *"}, ("body", "schedulingConfig", "expression")),
        ("RECURRING", {"type": "INTERVAL"}, ("body", "schedulingConfig", "intervalMs")),
        (
            "RECURRING",
            {"type": "INTERVAL", "intervalMs": 10},
            ("body", "schedulingConfig", "intervalMs"),
        ),
        ("RECURRING", {"type": "WEEKLY"}, ("body", "schedulingConfig", "type")),
        (
            "RECURRING",
            {"expression": "0 8 * * *", "timezone": "Mars/Olympus"},
            ("body", "schedulingConfig", "timezone"),
        ),
        ("SOMETIMES", {}, ("body", "schedulingMode")),
    ],
)
def test_scheduling_is_checked(mode: str, config: Any, loc: tuple[Any, ...]) -> None:
    assert loc in locs({**MINIMAL, "schedulingMode": mode, "schedulingConfig": config})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.5, "5", True])
def test_non_integers_are_problems_not_crashes(value: Any) -> None:
    assert ("body", "timeoutMs") in locs({**MINIMAL, "timeoutMs": value})


def test_transformation_shapes() -> None:
    assert ("body", "transformScript") in locs({**MINIMAL, "transformationMode": "JSONATA"})
    assert ("body", "transformationMode") in locs({**MINIMAL, "transformationMode": "XSLT"})
    assert ("body", "fieldMappings") in locs({**MINIMAL, "fieldMappings": "a->b"})
    implied = parse_integration({**MINIMAL, "fieldMappings": [{"targetField": "x"}]})
    assert implied.transformation.mode == "SIMPLE"


def test_an_empty_filter_is_no_filter() -> None:
    assert parse_integration({**MINIMAL, "filter": "  "}).filter is None
    assert parse_integration({**MINIMAL, "filter": " event.x "}).filter == "event.x"


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.v2", False),
        ("order.*", "order.created", True),
        ("order.*", "order.line.added", True),
        ("order.*", "order", False),
        ("order.*", "orders.created", False),
        ("*", "anything", True),
    ],
)
def test_event_type_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert event_type_matches(pattern, event_type) is matches


def test_not_an_object() -> None:
    with pytest.raises(ValidationError):
        parse_integration([])  # type: ignore[arg-type]


# --- masking ---


def test_masks_show_at_most_the_last_four_characters() -> None:
    assert mask_secret("short") == "****"
    assert mask_secret("exactly-11c") == "****"
    assert mask_secret("a-long-secret-value") == "****alue"
    auth = parse_integration(
        {
            **MINIMAL,
            "outgoingAuthType": "CUSTOM_HEADERS",
            "outgoingAuthConfig": {"headers": {"X-A": "0123456789abcdef", "X-B": "x"}},
        }
    ).auth
    assert masked_auth_config(auth) == {"headers": {"X-A": "****cdef", "X-B": "****"}}


def test_restore_masked_keeps_matching_masks_only() -> None:
    stored = {"token": "0123456789abcdef", "headers": {"X-A": "0123456789abcdef"}}
    assert restore_masked({"token": "****cdef"}, stored, keep_omitted=False) == {
        "token": "0123456789abcdef"
    }
    assert restore_masked({"token": "new"}, stored, keep_omitted=False) == {"token": "new"}
    assert restore_masked({}, stored, keep_omitted=True) == stored
    assert restore_masked(None, stored, keep_omitted=False) == {}
    headers = restore_masked(
        {"headers": {"X-A": "****cdef", "X-New": "n"}}, stored, keep_omitted=False
    )
    assert headers == {"headers": {"X-A": "0123456789abcdef", "X-New": "n"}}
    aliased = restore_masked({"accessToken": "****cdef"}, stored, keep_omitted=False)
    assert aliased == {"token": "0123456789abcdef"}
    with pytest.raises(ValidationError) as caught:
        restore_masked(
            {"token": "****zzzz", "headers": {"X-B": "****"}}, stored, keep_omitted=False
        )
    assert {p.loc for p in caught.value.problems} == {
        ("body", "outgoingAuthConfig", "token"),
        ("body", "outgoingAuthConfig", "headers", "X-B"),
    }


def test_keys_at_includes_keys_in_their_overlap() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stored = StoredIntegration(
        id="int_1",
        org_id=1,
        version=1,
        integration=parse_integration(MINIMAL),
        signing_keys=(
            SigningKey("whsec_old", now, now + timedelta(hours=1)),
            SigningKey("whsec_gone", now, now),
            SigningKey("whsec_new", now),
        ),
        consecutive_failures=0,
        disabled_reason=None,
        disabled_at=None,
        created_by=None,
        created_at=now,
        updated_at=now,
    )
    assert stored.keys_at(now) == ["whsec_old", "whsec_new"]
    assert stored.keys_at(now + timedelta(hours=2)) == ["whsec_new"]


# --- property: any accepted body round-trips ---

_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20
)
_bodies = st.fixed_dictionaries(
    {
        "name": _names,
        "eventType": st.sampled_from(["a", "a.b", "a.*", "*", "x-y.z_1"]),
        "targetUrl": st.sampled_from(["https://a.example.com/", "http://b.example.org:8080/p?q=1"]),
    },
    optional={
        "httpMethod": st.sampled_from(["POST", "PUT", "PATCH"]),
        "isActive": st.booleans(),
        "timeoutMs": st.integers(1, 300_000),
        "scope": st.sampled_from(["ALL_ENTITIES", "ENTITY_ONLY"]),
        "excludedEntityRids": st.lists(st.integers(1, 10**6), max_size=4),
        "rateLimits": st.fixed_dictionaries(
            {
                "enabled": st.booleans(),
                "maxRequests": st.integers(1, 1000),
                "windowSeconds": st.floats(0.001, 86_400),
            }
        ),
        "retryPolicy": st.fixed_dictionaries(
            {
                "maxRetries": st.integers(0, 50),
                "initialDelay": st.integers(1, 10_000),
                "multiplier": st.floats(1, 10),
                "jitterFactor": st.floats(0, 1),
            }
        ),
        "outgoingAuthType": st.just("BASIC"),
        "outgoingAuthConfig": st.fixed_dictionaries({"username": _names, "password": _names}),
        "signing": st.fixed_dictionaries(
            {"algorithm": st.sampled_from(["HMAC_SHA256", "ED25519", "NONE"])}
        ),
    },
)


@settings(max_examples=60, deadline=None)
@given(_bodies)
def test_accepted_bodies_round_trip(body: dict[str, Any]) -> None:
    try:
        parse_integration(body)
    except ValidationError:
        return  # e.g. BASIC without its config, or a maxDelay below the initial delay
    round_trip(body)
