"""A scheduled job's configuration (seed 003 SCHEDULED), validated: :func:`parse_job`.

The API form::

    {"name", "type"?, "description"?, "isActive"?, "targetUrl", "httpMethod"? (POST|PUT|PATCH),
     "schedule": {"type": "CRON"|"INTERVAL", "expression"?, "timezone"?, "intervalMs"?,
                  "catchUp"?: "ONCE"|"ALL"|"SKIP"},
     "dataSource": {"type": "SQL", "query", "connectionString"?}
                 | {"type": "API", "url", "method"?, "headers"?, "body"?},
     "transformation"?: {"mode": "SCRIPT"|"JSONATA", "script"},
     "outgoingAuthType"?, "outgoingAuthConfig"?, "retryPolicy"?, "timeoutMs"?}

Everything is checked here except what needs engines (compiling the script) or settings
(the environment allowlist, SSRF), which the service adds. Credentials -- the outgoing auth
secrets and ``dataSource.connectionString`` -- travel separately (:class:`JobSecrets`) and
are sealed at rest. ``job_document`` is the inverse of ``parse_job`` without credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from junctionbox.domain.job_timing import CatchUp, ScheduleType
from junctionbox.domain.job_variables import json_strings, refs
from junctionbox.domain.netguard import parse_outbound_url
from junctionbox.domain.outbound import (
    HttpMethod,
    OutgoingAuth,
    masked_auth_config,
    parse_outgoing_auth,
    parse_retry_policy,
)
from junctionbox.domain.retry import RetryPolicy
from junctionbox.domain.sql_guard import SqlNotAllowed, check_read_only
from junctionbox.errors import FieldProblem, JunctionboxError, ValidationError

MAX_NAME: Final = 200
MIN_INTERVAL_MS: Final = 1000
MAX_INTERVAL_MS: Final = 366 * 24 * 3600 * 1000
DEFAULT_TIMEOUT_MS: Final = 30_000
MAX_TIMEOUT_MS: Final = 120_000
MAX_HEADERS: Final = 50
E = TypeVar("E", bound=StrEnum)


class SourceType(StrEnum):
    SQL = "SQL"
    API = "API"


class SourceMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"


@dataclass(frozen=True)
class ScheduleSpec:
    type: ScheduleType
    expression: str | None = None
    interval_ms: int | None = None
    timezone: str | None = None  # None: the organization's zone
    catch_up: CatchUp = CatchUp.ONCE


@dataclass(frozen=True)
class DataSource:
    type: SourceType
    query: str | None = None  # SQL
    external: bool = False  # SQL: an external database (its URL is a credential)
    url: str | None = None  # API
    method: SourceMethod = SourceMethod.GET
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None

    def templates(self) -> list[str]:
        """Every text that may hold variables."""
        texts = [self.query or "", self.url or "", *self.headers.values()]
        return texts + json_strings(self.body)


@dataclass(frozen=True)
class JobTransformation:
    mode: str | None = None  # SCRIPT | JSONATA; None sends the fetched records as they are
    script: str | None = None


@dataclass(frozen=True)
class JobConfig:
    name: str
    type: str | None
    description: str | None
    is_active: bool
    target_url: str
    http_method: HttpMethod
    schedule: ScheduleSpec
    source: DataSource
    transformation: JobTransformation
    auth: OutgoingAuth
    retry_policy: RetryPolicy
    timeout_ms: int


@dataclass(frozen=True)
class JobSecrets:
    """Credentials: the outgoing auth secrets and the external database URL."""

    auth: Mapping[str, Any] = field(default_factory=dict)
    connection_string: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"auth": dict(self.auth), "connectionString": self.connection_string}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSecrets:
        return cls(dict(data.get("auth") or {}), data.get("connectionString"))


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, loc: tuple[str | int, ...], message: str) -> None:
        self.items.append(FieldProblem(("body", *loc), message))

    def absorb(self, exc: ValidationError) -> None:
        self.items.extend(exc.problems or [FieldProblem(("body",), exc.message)])

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            where = ".".join(str(p) for p in first.loc[1:])
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise ValidationError(f"{where}: {first.message}{more}", problems=self.items)


def parse_job(body: Mapping[str, Any]) -> tuple[JobConfig, JobSecrets]:
    """Validate the API form; one ``ValidationError`` lists every problem with its place."""
    if not isinstance(body, Mapping):
        raise ValidationError("the body must be a JSON object")
    p = _Problems()
    name = _text(p, body, "name", required=True, limit=MAX_NAME)
    target = _url(p, body.get("targetUrl"), ("targetUrl",))
    method = _choice(p, body.get("httpMethod"), ("httpMethod",), HttpMethod, HttpMethod.POST)
    auth = OutgoingAuth()
    try:
        auth = parse_outgoing_auth(body)
    except ValidationError as exc:
        p.absorb(exc)
    policy = RetryPolicy()
    try:
        policy = parse_retry_policy(body.get("retryPolicy"))
    except ValidationError as exc:
        p.absorb(exc)
    source, connection = _source(p, body.get("dataSource"))
    config = JobConfig(
        name=name or "",
        type=_text(p, body, "type", limit=100),
        description=_text(p, body, "description", limit=2000),
        is_active=_bool(p, body, "isActive"),
        target_url=target or "",
        http_method=method,
        schedule=_schedule(p, body.get("schedule")),
        source=source,
        transformation=_transformation(p, body.get("transformation")),
        auth=auth,
        retry_policy=policy,
        timeout_ms=_int(p, body, "timeoutMs", DEFAULT_TIMEOUT_MS, 1000, MAX_TIMEOUT_MS, ()),
    )
    p.raise_if_any()
    return config, JobSecrets(dict(auth.secrets), connection)


def parse_source(raw: Any) -> tuple[DataSource, str | None]:
    """A ``dataSource`` alone (test-datasource), with its connection string."""
    p = _Problems()
    found = _source(p, raw)
    p.raise_if_any()
    return found


# --- pieces ---


def _text(
    p: _Problems, body: Mapping[str, Any], key: str, *, required: bool = False, limit: int
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            p.add((key,), "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        p.add((key,), "must be a non-empty string" if required else "must be a string")
        return None
    if len(value) > limit:
        p.add((key,), f"must be at most {limit} characters")
        return None
    return value.strip()


def _bool(p: _Problems, body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, True)
    if value is None:
        return True
    if not isinstance(value, bool):
        p.add((key,), "must be true or false")
        return True
    return value


def _int(
    p: _Problems,
    body: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    high: int,
    loc: tuple[str | int, ...],
) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        p.add((*loc, key), "must be an integer")
        return default
    if not low <= value <= high:
        p.add((*loc, key), f"must be between {low} and {high}")
        return default
    return value


def _choice(
    p: _Problems, value: Any, loc: tuple[str | int, ...], kind: type[E], default: E | None
) -> E:
    if value is None and default is not None:
        return default
    try:
        return kind(str(value).strip().upper())
    except ValueError:
        p.add(loc, f"must be one of {', '.join(m.value for m in kind)}")
        return default if default is not None else next(iter(kind))


def _url(p: _Problems, value: Any, loc: tuple[str | int, ...]) -> str | None:
    if value is None:
        p.add(loc, "is required")
        return None
    if not isinstance(value, str):
        p.add(loc, "must be a URL string")
        return None
    try:
        return parse_outbound_url(value.strip()).url
    except JunctionboxError as exc:
        p.add(loc, exc.message)
        return None


def _schedule(p: _Problems, raw: Any) -> ScheduleSpec:
    loc: tuple[str | int, ...] = ("schedule",)
    if not isinstance(raw, Mapping):
        p.add(
            loc, "is required: {type: CRON, expression, timezone?} or {type: INTERVAL, intervalMs}"
        )
        return ScheduleSpec(ScheduleType.INTERVAL, interval_ms=MIN_INTERVAL_MS)
    kind = _choice(p, raw.get("type"), (*loc, "type"), ScheduleType, None)
    catch_up = _choice(p, raw.get("catchUp"), (*loc, "catchUp"), CatchUp, CatchUp.ONCE)
    timezone = raw.get("timezone")
    if timezone is not None:
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            p.add((*loc, "timezone"), f"unknown time zone {timezone!r} (use an IANA name)")
            timezone = None
    if kind is ScheduleType.CRON:
        expression = raw.get("expression")
        if (
            not isinstance(expression, str)
            or len(expression.split()) != 5
            or not croniter.is_valid(expression)
        ):
            p.add((*loc, "expression"), "must be a valid 5-field cron expression (m h dom mon dow)")
            expression = None
        return ScheduleSpec(kind, expression=expression, timezone=timezone, catch_up=catch_up)
    if raw.get("intervalMs") is None:
        p.add((*loc, "intervalMs"), "is required for INTERVAL")
    interval = _int(p, raw, "intervalMs", MIN_INTERVAL_MS, MIN_INTERVAL_MS, MAX_INTERVAL_MS, loc)
    return ScheduleSpec(kind, interval_ms=interval, timezone=timezone, catch_up=catch_up)


def _source(p: _Problems, raw: Any) -> tuple[DataSource, str | None]:
    loc: tuple[str | int, ...] = ("dataSource",)
    if not isinstance(raw, Mapping):
        p.add(loc, "is required: {type: SQL, query} or {type: API, url}")
        return DataSource(SourceType.API), None
    kind = _choice(p, raw.get("type"), (*loc, "type"), SourceType, None)
    if kind is SourceType.SQL:
        query = raw.get("query")
        if not isinstance(query, str) or not query.strip():
            p.add((*loc, "query"), "is required for SQL")
            query = None
        else:
            try:
                # Checked with tokens replaced: a bound value is not SQL text.
                check_read_only(_without_tokens(query))
            except SqlNotAllowed as exc:
                p.add((*loc, "query"), str(exc))
        connection = raw.get("connectionString")
        if connection is not None and (not isinstance(connection, str) or not connection.strip()):
            p.add((*loc, "connectionString"), "must be a database URL")
            connection = None
        source = DataSource(kind, query=query, external=connection is not None)
        return source, connection.strip() if connection else None
    url = _url(p, raw.get("url"), (*loc, "url"))
    method = _choice(p, raw.get("method"), (*loc, "method"), SourceMethod, SourceMethod.GET)
    headers = raw.get("headers") or {}
    if not isinstance(headers, Mapping) or len(headers) > MAX_HEADERS:
        p.add((*loc, "headers"), f"must be an object of at most {MAX_HEADERS} headers")
        headers = {}
    for name, value in headers.items():
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            p.add((*loc, "headers", str(name)), "must be a string without CR, LF or NUL")
    if raw.get("body") is not None and method is SourceMethod.GET:
        p.add((*loc, "body"), "a GET request has no body")
    clean = {str(k): str(v) for k, v in headers.items()}
    return DataSource(kind, url=url, method=method, headers=clean, body=raw.get("body")), None


def _without_tokens(query: str) -> str:
    parts = []
    position = 0
    for ref in refs(query):
        index = query.find(ref.text, position)
        if index < 0:  # spaced differently ({{ x }}): leave it, the guard sees braces only
            continue
        parts.append(query[position:index] + "0")
        position = index + len(ref.text)
    return "".join(parts) + query[position:]


def _transformation(p: _Problems, raw: Any) -> JobTransformation:
    if raw is None:
        return JobTransformation()
    loc: tuple[str | int, ...] = ("transformation",)
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object {mode: SCRIPT|JSONATA, script}")
        return JobTransformation()
    mode = raw.get("mode") or "SCRIPT"
    if str(mode).upper() not in ("SCRIPT", "JSONATA"):
        p.add((*loc, "mode"), "must be SCRIPT or JSONATA")
        return JobTransformation()
    script = raw.get("script")
    if not isinstance(script, str) or not script.strip():
        p.add((*loc, "script"), f"is required in {str(mode).upper()} mode")
        return JobTransformation()
    return JobTransformation(str(mode).upper(), script)


# --- the stored document ---


def job_document(config: JobConfig) -> dict[str, Any]:
    """The JSON kept in ``scheduled_jobs.config``: the API form without credentials."""
    source: dict[str, Any] = {"type": config.source.type.value}
    if config.source.type is SourceType.SQL:
        source["query"] = config.source.query
    else:
        source.update(
            url=config.source.url,
            method=config.source.method.value,
            headers=dict(config.source.headers),
            body=config.source.body,
        )
    schedule = config.schedule
    policy = config.retry_policy
    return {
        "name": config.name,
        "type": config.type,
        "description": config.description,
        "isActive": config.is_active,
        "targetUrl": config.target_url,
        "httpMethod": config.http_method.value,
        "schedule": {
            "type": schedule.type.value,
            "expression": schedule.expression,
            "intervalMs": schedule.interval_ms,
            "timezone": schedule.timezone,
            "catchUp": schedule.catch_up.value,
        },
        "dataSource": source,
        "transformation": (
            {"mode": config.transformation.mode, "script": config.transformation.script}
            if config.transformation.mode
            else None
        ),
        "outgoingAuthType": config.auth.type.value,
        "outgoingAuthConfig": dict(config.auth.settings),
        "retryPolicy": {
            "maxRetries": policy.max_retries,
            "initialDelay": policy.base_delay * 1000,
            "maxDelay": policy.max_delay * 1000,
            "multiplier": policy.multiplier,
            "jitterFactor": policy.jitter_factor,
        },
        "timeoutMs": config.timeout_ms,
    }


def with_job_secrets(document: Mapping[str, Any], secrets: JobSecrets) -> dict[str, Any]:
    """The document with its credentials put back, ready for :func:`parse_job`."""
    merged = dict(document)
    merged["outgoingAuthConfig"] = {**(document.get("outgoingAuthConfig") or {}), **secrets.auth}
    if secrets.connection_string is not None:
        merged["dataSource"] = {
            **(document.get("dataSource") or {}),
            "connectionString": secrets.connection_string,
        }
    return merged


def masked_auth(config: JobConfig) -> dict[str, Any]:
    return masked_auth_config(config.auth)
