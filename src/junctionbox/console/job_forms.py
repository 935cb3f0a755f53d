"""Scheduled job form fields <-> the ``/api/v1/scheduled-jobs`` body (pure; no I/O).

Field names are the API's dotted paths (``schedule.expression``, ``dataSource.url``), so the
service's validation problems (located by the same path) land beside the right field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from junctionbox.console.forms import RETRY_FIELDS, form_number, form_text

SCHEDULE_FIELDS = ("type", "expression", "intervalMs", "timezone", "catchUp")
SOURCE_FIELDS = ("type", "url", "method", "headers", "body", "query", "connectionString")
JOB_FIELDS = (
    "name",
    "description",
    "targetUrl",
    "httpMethod",
    "timeoutMs",
    "outgoingAuthType",
    "outgoingAuthConfig",
    "transformation.mode",
    "transformation.script",
    *(f"schedule.{k}" for k in SCHEDULE_FIELDS),
    *(f"dataSource.{k}" for k in SOURCE_FIELDS),
    *(f"retryPolicy.{k}" for k in RETRY_FIELDS),
)


def _json(values: Mapping[str, str], key: str, problems: dict[str, str]) -> Any:
    raw = (values.get(key) or "").strip()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problems[key] = f"not valid JSON: {exc}"
        return None


def source_body(values: Mapping[str, str], problems: dict[str, str]) -> dict[str, Any]:
    """The ``dataSource`` object: only the fields of its type (SQL or API)."""
    kind = values.get("dataSource.type") or "API"
    if kind == "SQL":
        source: dict[str, Any] = {"type": "SQL", "query": values.get("dataSource.query") or None}
        if values.get("dataSource.connectionString"):
            source["connectionString"] = values["dataSource.connectionString"]
        return source
    source = {
        "type": kind,
        "url": values.get("dataSource.url") or None,
        "method": values.get("dataSource.method") or "GET",
    }
    headers = _json(values, "dataSource.headers", problems)
    if headers is not None:
        source["headers"] = headers
    body = _json(values, "dataSource.body", problems)
    if body is not None:
        source["body"] = body
    return source


def schedule_body(values: Mapping[str, str]) -> dict[str, Any]:
    kind = values.get("schedule.type") or "CRON"
    schedule: dict[str, Any] = {
        "type": kind,
        "timezone": values.get("schedule.timezone") or None,
        "catchUp": values.get("schedule.catchUp") or "ONCE",
    }
    if kind == "INTERVAL":
        raw = values.get("schedule.intervalMs") or ""
        schedule["intervalMs"] = form_number(raw) if raw else None
    else:
        schedule["expression"] = values.get("schedule.expression") or None
    return schedule


def job_body(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body for the submitted fields, and the problems found before the service
    (JSON that does not parse)."""
    problems: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": values.get("name") or None,
        "description": values.get("description") or None,
        "targetUrl": values.get("targetUrl") or None,
        "httpMethod": values.get("httpMethod") or "POST",
        "schedule": schedule_body(values),
        "dataSource": source_body(values, problems),
        "outgoingAuthType": values.get("outgoingAuthType") or "NONE",
    }
    if values.get("timeoutMs"):
        body["timeoutMs"] = form_number(values["timeoutMs"])
    mode = values.get("transformation.mode") or ""
    body["transformation"] = (
        {"mode": mode, "script": values.get("transformation.script") or None} if mode else None
    )
    auth = _json(values, "outgoingAuthConfig", problems)
    body["outgoingAuthConfig"] = None if body["outgoingAuthType"] == "NONE" else auth
    retry = {
        k: form_number(values[f"retryPolicy.{k}"])
        for k in RETRY_FIELDS
        if values.get(f"retryPolicy.{k}")
    }
    if retry:
        body["retryPolicy"] = retry
    return body, problems


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if value else ""


def job_values(view: Mapping[str, Any]) -> dict[str, str]:
    """Form values of a job's API view (its credentials are masked already)."""
    values = {
        key: form_text(view.get(key))
        for key in ("name", "description", "targetUrl", "httpMethod", "timeoutMs")
    }
    values["outgoingAuthType"] = form_text(view.get("outgoingAuthType")) or "NONE"
    values["outgoingAuthConfig"] = _pretty(view.get("outgoingAuthConfig"))
    transformation = view.get("transformation") or {}
    values["transformation.mode"] = form_text(transformation.get("mode"))
    values["transformation.script"] = form_text(transformation.get("script"))
    schedule = view.get("schedule") or {}
    for key in SCHEDULE_FIELDS:
        values[f"schedule.{key}"] = form_text(schedule.get(key))
    source = view.get("dataSource") or {}
    for key in SOURCE_FIELDS:
        value = source.get(key)
        if key in ("headers", "body"):
            values[f"dataSource.{key}"] = _pretty(value)
        else:
            values[f"dataSource.{key}"] = form_text(value)
    retry = view.get("retryPolicy") or {}
    for key in RETRY_FIELDS:
        values[f"retryPolicy.{key}"] = form_text(retry.get(key))
    return values
