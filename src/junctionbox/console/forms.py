"""HTML form fields <-> the API's JSON documents (pure; no I/O).

The console builds exactly the body the API takes and hands it to the same service method,
so a form is validated by the same rules as an API call; problems come back keyed by field
and are shown beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

JSON_FIELDS = ("fieldMappings", "outgoingAuthConfig", "actions", "schedulingConfig", "rateLimits")
TEXT_FIELDS = ("name", "eventType", "targetUrl", "httpMethod", "description", "filter")
RETRY_FIELDS = ("maxRetries", "initialDelay", "maxDelay")
FORM_FIELDS = (
    *TEXT_FIELDS,
    "transformationMode",
    "transformScript",
    "outgoingAuthType",
    "schedulingMode",
    "timeoutMs",
    *JSON_FIELDS,
    *(f"retryPolicy.{k}" for k in RETRY_FIELDS),
)


def form_number(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw  # the service says what is wrong with it


def integration_body(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body for the submitted fields, and the problems found before the service
    (JSON that does not parse)."""
    body: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key in TEXT_FIELDS:
        body[key] = values.get(key) or None
    body["httpMethod"] = body["httpMethod"] or "POST"
    body["transformationMode"] = values.get("transformationMode") or None
    body["transformScript"] = values.get("transformScript") or None
    body["outgoingAuthType"] = values.get("outgoingAuthType") or "NONE"
    body["schedulingMode"] = values.get("schedulingMode") or "IMMEDIATE"
    if values.get("timeoutMs"):
        body["timeoutMs"] = form_number(values["timeoutMs"])
    for key in JSON_FIELDS:
        raw = (values.get(key) or "").strip()
        if not raw:
            body[key] = None
            continue
        try:
            body[key] = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problems[key] = f"not valid JSON: {exc}"
    retry = {
        k: form_number(values[f"retryPolicy.{k}"])
        for k in RETRY_FIELDS
        if values.get(f"retryPolicy.{k}")
    }
    if retry:
        body["retryPolicy"] = retry
    if body["outgoingAuthType"] == "NONE":
        body["outgoingAuthConfig"] = None
    if body["schedulingMode"] == "IMMEDIATE":
        body["schedulingConfig"] = None
    return body, problems


def integration_values(document: Mapping[str, Any]) -> dict[str, str]:
    """Form values of an integration document (credentials already masked by the caller)."""
    values = {key: form_text(document.get(key)) for key in (*TEXT_FIELDS, "transformScript")}
    values["transformationMode"] = form_text(document.get("transformationMode"))
    values["outgoingAuthType"] = form_text(document.get("outgoingAuthType")) or "NONE"
    values["schedulingMode"] = form_text(document.get("schedulingMode")) or "IMMEDIATE"
    values["timeoutMs"] = form_text(document.get("timeoutMs"))
    for key in JSON_FIELDS:
        value = document.get(key)
        values[key] = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if value else ""
    retry = document.get("retryPolicy") or {}
    for key in RETRY_FIELDS:
        values[f"retryPolicy.{key}"] = form_text(retry.get(key))
    return values


def form_text(value: Any) -> str:
    return "" if value is None else str(value)


def parse_json_text(raw: str, what: str) -> tuple[Any, str | None]:
    """A JSON value typed into a textarea, or the reason it is not one."""
    if not raw.strip():
        return None, f"{what} is empty"
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, f"{what} is not valid JSON: {exc}"


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()
