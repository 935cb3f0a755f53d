"""Pure pieces of the requests-in pages: form <-> body mapping, model problems by field, the
inbound curl example, the live transformation and the dry run's header lines."""

from __future__ import annotations

import shlex

from pydantic import BaseModel, Field

from junctionbox.console.pages.gateway_routes import _headers
from junctionbox.console.pages.inbound import curl_example, run_transform
from junctionbox.console.specforms import Spec, body_of, validated, values_of

SPECS = (
    Spec("name", "Name"),
    Spec("timeoutMs", "Timeout", "number"),
    Spec("methods", "Methods", "list"),
    Spec("limits", "Limits", "json"),
    Spec("on", "On", "check"),
)


def test_body_of_maps_each_kind_and_leaves_empty_fields_out() -> None:
    body, problems = body_of(
        SPECS, {"name": "a", "timeoutMs": "50", "methods": "GET, POST\nPUT", "limits": '{"a": 1}'}
    )
    assert problems == {}
    assert body == {
        "name": "a",
        "timeoutMs": 50,
        "methods": ["GET", "POST", "PUT"],
        "limits": {"a": 1},
        "on": False,
    }
    body, problems = body_of(SPECS, {"timeoutMs": "soon", "limits": "{", "on": "on"})
    assert body == {"timeoutMs": "soon", "on": True}  # the model says what is wrong with it
    assert problems["limits"].startswith("not valid JSON")


def test_values_of_round_trips() -> None:
    document = {"name": "a", "timeoutMs": 50, "methods": ["GET"], "limits": {"a": 1}, "on": True}
    values = values_of(SPECS, document)
    assert values["methods"] == "GET"
    assert values["on"] == "on"
    assert body_of(SPECS, values) == (document, {})
    assert values_of(SPECS, {"limits": {}})["limits"] == ""


class Inner(BaseModel):
    max_requests: int = Field(alias="maxRequests", ge=1)


class Outer(BaseModel):
    timeout_ms: int = Field(alias="timeoutMs")
    limits: Inner | None = None


def test_model_problems_are_keyed_by_field_and_nested_path() -> None:
    parsed, problems = validated(Outer, {"timeoutMs": "x", "limits": {"maxRequests": 0}})
    assert parsed is None
    assert "integer" in problems["timeoutMs"]
    assert problems["limits"].startswith("maxRequests: ")
    assert "limits.maxRequests" in problems
    parsed, problems = validated(Outer, {"timeoutMs": 5})
    assert parsed is not None
    assert problems == {}


def test_curl_example_quotes_and_names_the_route_credential() -> None:
    view = {
        "httpMethod": "POST",
        "proxyUrl": "/api/v1/integrations/x?orgId=1",
        "inboundAuthType": "API_KEY",
        "inboundAuthConfig": {"name": "X-Key", "value": "****"},
    }
    words = shlex.split(curl_example("http://h", view))
    assert words[:4] == ["curl", "-X", "POST", "http://h/api/v1/integrations/x?orgId=1"]
    assert "X-Key: $INTEGRATION_KEY" in words
    assert "X-API-Key: $JB_API_KEY" in words
    assert "****" not in " ".join(words)
    basic = curl_example("http://h", {**view, "httpMethod": "GET", "inboundAuthType": "BASIC"})
    assert "-u" in shlex.split(basic)
    assert "-d" not in shlex.split(basic)


def test_run_transform_shows_the_output_or_the_error() -> None:
    output, error = run_transform("JSONATA", '{"b": a}', "", '{"a": 1}')
    assert error is None
    assert '"b": 1' in output
    output, error = run_transform(
        "SIMPLE", "", '[{"sourceField": "a", "targetField": "c"}]', '{"a": 2}'
    )
    assert error is None
    assert '"c": 2' in output
    assert run_transform("", "", "", '{"a": 1}') == ('{\n  "a": 1\n}', None)
    assert run_transform("JSONATA", "{{", "", "{}")[1]
    assert "not valid JSON" in (run_transform("JSONATA", "a", "", "{")[1] or "")


def test_header_lines() -> None:
    assert _headers("X-A: 1\n\nX-B:two: three") == ({"X-A": "1", "X-B": "two: three"}, None)
    assert _headers("no colon")[1]
