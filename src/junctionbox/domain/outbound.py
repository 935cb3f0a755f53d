"""Outbound integrations: the validated configuration of one webhook integration.

``parse_integration(body)`` turns the API's JSON (seed 003's field names) into an
:class:`OutboundIntegration`, or raises one ``ValidationError`` listing every problem with
its location (``("body", "targetUrl")``). ``integration_document`` is the inverse: the JSON
kept in ``outbound_integrations.config`` and returned by the API, without credentials.
Credentials travel separately as :class:`IntegrationSecrets` (sealed at rest).

Expressions (filter, transformations, cron) are compiled here once to validate them; the
engine compiles them again from the stored document and caches the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from junctionbox.domain.redaction import is_secret_key
from junctionbox.domain.retry import RetryPolicy
from junctionbox.errors import FieldProblem, JunctionboxError, ValidationError

MAX_ACTIONS = 10
MAX_NAME = 200
MAX_EVENT_TYPE = 200
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 300_000
MAX_DELAY_MS = 366 * 24 * 3600 * 1000
DEFAULT_ROTATION_OVERLAP_SECONDS = 24 * 3600
DEFAULT_DISABLE_AFTER = 5  # seed 003: auto-disable after 5 consecutive failures

E = TypeVar("E", bound=StrEnum)

_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:/\-]+(\.\*)?|\*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_VALUE_CHARS = re.compile(r"[\r\n\x00]")


class Scope(StrEnum):
    ALL_ENTITIES = "ALL_ENTITIES"  # applies to the entity and its units
    ENTITY_ONLY = "ENTITY_ONLY"


class HttpMethod(StrEnum):
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"


class AuthType(StrEnum):
    NONE = "NONE"
    API_KEY = "API_KEY"
    BEARER = "BEARER"
    BASIC = "BASIC"
    OAUTH2 = "OAUTH2"
    CUSTOM_HEADERS = "CUSTOM_HEADERS"


class SchedulingMode(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    DELAYED = "DELAYED"
    RECURRING = "RECURRING"


class OrderingMode(StrEnum):
    NONE = "NONE"
    FIFO = "FIFO"  # one delivery at a time per ordering key, in log order


class SigningAlgorithm(StrEnum):
    HMAC_SHA256 = "HMAC_SHA256"  # Standard Webhooks v1, whsec_ secret
    ED25519 = "ED25519"  # Standard Webhooks v1a, whsk_ private key
    NONE = "NONE"  # webhook-id and webhook-timestamp only


# Which keys of ``outgoingAuthConfig`` are credentials, per auth type (sealed, masked).
SECRET_AUTH_FIELDS: Mapping[AuthType, tuple[str, ...]] = {
    AuthType.NONE: (),
    AuthType.API_KEY: ("value",),
    AuthType.BEARER: ("token",),
    AuthType.BASIC: ("password",),
    AuthType.OAUTH2: ("clientSecret",),
    AuthType.CUSTOM_HEADERS: ("headers",),
}
REQUIRED_AUTH_FIELDS: Mapping[AuthType, tuple[str, ...]] = {
    AuthType.NONE: (),
    AuthType.API_KEY: ("name", "value"),
    AuthType.BEARER: ("token",),
    AuthType.BASIC: ("username", "password"),
    AuthType.OAUTH2: ("tokenUrl", "clientId", "clientSecret"),
    AuthType.CUSTOM_HEADERS: ("headers",),
}
# Options that are not credentials although their names look like it (``tokenUrl``).
_PLAIN_AUTH_FIELDS = frozenset({"name", "in", "username", "tokenUrl", "clientId", "scope"})
# Accepted spellings from other tools, folded to ours.
_AUTH_ALIASES = {"headerName": "name", "apiKey": "value", "key": "value", "accessToken": "token"}


@dataclass(frozen=True)
class OutgoingAuth:
    """``settings`` are the non-secret options (API_KEY ``in``/``name``, BASIC ``username``,
    OAUTH2 ``tokenUrl``/``clientId``/``scope``/``audience``); ``secrets`` the credentials."""

    type: AuthType = AuthType.NONE
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transformation:
    """``mode`` SIMPLE uses ``field_mappings``; SCRIPT and JSONATA use ``script``. No mode
    (and no mappings) sends the event's data unchanged."""

    mode: str | None = None
    field_mappings: tuple[Mapping[str, Any], ...] = ()
    script: str | None = None


@dataclass(frozen=True)
class Action:
    """One delivery of the integration; several run in order, ``delay_ms`` after the one
    before succeeded. Omitted fields inherit the integration's."""

    index: int
    name: str
    target_url: str
    http_method: HttpMethod
    transformation: Transformation
    delay_ms: int = 0


@dataclass(frozen=True)
class Scheduling:
    mode: SchedulingMode = SchedulingMode.IMMEDIATE
    delay_ms: int | None = None  # DELAYED: after this long ...
    at: datetime | None = None  # ... or at this instant
    recurring_type: str | None = None  # RECURRING: CRON | INTERVAL
    expression: str | None = None
    interval_ms: int | None = None
    timezone: str | None = None  # None: the tenant's
    max_occurrences: int | None = None
    end_at: datetime | None = None


@dataclass(frozen=True)
class RateLimit:
    enabled: bool = False
    max_requests: int = 0
    window_seconds: float = 0.0


@dataclass(frozen=True)
class Ordering:
    mode: OrderingMode = OrderingMode.NONE
    key: str | None = None  # a dot path into the event (``subject``, ``data.patientId``)


@dataclass(frozen=True)
class Signing:
    algorithm: SigningAlgorithm = SigningAlgorithm.HMAC_SHA256
    hex_header: bool = False  # also send seed 001's hex HMAC header
    rotation_overlap_seconds: int = DEFAULT_ROTATION_OVERLAP_SECONDS


@dataclass(frozen=True)
class OutboundIntegration:
    """A validated outbound integration (without id, tenant or version: those are the
    store's)."""

    name: str
    event_type: str
    target_url: str
    http_method: HttpMethod = HttpMethod.POST
    is_active: bool = True
    description: str | None = None
    transformation: Transformation = Transformation()
    auth: OutgoingAuth = OutgoingAuth()
    scheduling: Scheduling = Scheduling()
    actions: tuple[Action, ...] = ()
    rate_limit: RateLimit = RateLimit()
    scope: Scope = Scope.ALL_ENTITIES
    excluded_entity_rids: tuple[int, ...] = ()
    filter: str | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    ordering: Ordering = Ordering()
    signing: Signing = Signing()
    disable_after_failures: int = DEFAULT_DISABLE_AFTER

    def effective_actions(self) -> tuple[Action, ...]:
        """The deliveries to make per event: the declared actions, or one from the
        integration's own target."""
        if self.actions:
            return self.actions
        # Made once per (immutable) integration: the delivery worker asks for every job.
        made: tuple[Action, ...] | None = self.__dict__.get("_implicit_actions")
        if made is None:
            action = Action(0, self.name, self.target_url, self.http_method, self.transformation, 0)
            made = (action,)
            object.__setattr__(self, "_implicit_actions", made)
        return made

    def matches_type(self, event_type: str) -> bool:
        return event_type_matches(self.event_type, event_type)


def event_type_matches(pattern: str, event_type: str) -> bool:
    """Exact, ``*`` (everything) or a prefix pattern ``appointment.*`` (any depth below)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


# ---------------------------------------------------------------- parsing


class Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, loc: Sequence[str | int], message: str) -> None:
        self.items.append(FieldProblem(("body", *loc), message))

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            where = ".".join(str(p) for p in first.loc[1:])
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise ValidationError(f"{where}: {first.message}{more}", problems=self.items)


def parse_integration(body: Mapping[str, Any]) -> OutboundIntegration:
    """Validate the API form of an integration (create, full update or restored version).

    Checks shapes and values, including URL syntax, header names and values (no CR/LF), cron
    expressions and time zones. Expression compilation (CEL, JSONata, JavaScript, SIMPLE) and
    the SSRF check of the URL need engines and settings, so :mod:`services` runs them too.
    """
    if not isinstance(body, Mapping):
        raise ValidationError("the body must be a JSON object")
    p = Problems()
    name = read_text(p, body, "name", required=True, limit=MAX_NAME)
    event_type = read_text(p, body, "eventType", required=True, limit=MAX_EVENT_TYPE)
    if event_type and not _EVENT_TYPE.fullmatch(event_type):
        p.add(["eventType"], "must be an event type, '*' or a prefix pattern such as 'order.*'")
    target_url = read_url(p, body.get("targetUrl"), ["targetUrl"], required=True)
    method = read_enum(p, body, "httpMethod", HttpMethod, HttpMethod.POST)
    transformation = parse_transformation(p, body, [])
    integration = OutboundIntegration(
        name=name or "",
        event_type=event_type or "",
        target_url=target_url or "",
        http_method=method,
        is_active=read_bool(p, body, "isActive", True),
        description=read_text(p, body, "description", limit=2000),
        transformation=transformation,
        auth=parse_auth(p, body),
        scheduling=_scheduling(p, body.get("schedulingMode"), body.get("schedulingConfig")),
        actions=_actions(
            p, body.get("actions"), name or "", target_url or "", method, transformation
        ),
        rate_limit=parse_rate_limit(p, body.get("rateLimits")),
        scope=read_enum(p, body, "scope", Scope, Scope.ALL_ENTITIES),
        excluded_entity_rids=_rids(p, body.get("excludedEntityRids")),
        filter=(read_text(p, body, "filter", limit=4000) or "").strip() or None,  # "": no filter
        retry_policy=_retry_policy(p, body.get("retryPolicy")),
        timeout_ms=read_int(p, body, "timeoutMs", DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
        ordering=_ordering(p, body.get("ordering")),
        signing=_signing(p, body.get("signing")),
        disable_after_failures=read_int(
            p, body, "disableAfterFailures", DEFAULT_DISABLE_AFTER, 0, 1000
        ),
    )
    p.raise_if_any()
    return integration


def read_text(
    p: Problems, body: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 1000
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            p.add([key], "is required")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        p.add([key], "must be a non-empty string" if required else "must be a string")
        return None
    if len(value) > limit:
        p.add([key], f"must be at most {limit} characters")
        return None
    return value.strip() if key in ("name", "eventType") else value


def read_bool(p: Problems, body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        p.add([key], "must be true or false")
        return default
    return value


def read_int(
    p: Problems,
    body: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    high: int,
    loc: Sequence[str | int] = (),
) -> int:
    value = body.get(key)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)  # int() of NaN or infinity raises
        or value != int(value)
    ):
        p.add([*loc, key], "must be an integer")
        return default
    if not low <= value <= high:
        p.add([*loc, key], f"must be between {low} and {high}")
        return default
    return int(value)


def read_number(
    p: Problems,
    body: Mapping[str, Any],
    key: str,
    default: float,
    low: float,
    high: float,
    loc: Sequence[str | int],
) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        p.add([*loc, key], "must be a number")
        return default
    if not low <= value <= high:
        p.add([*loc, key], f"must be between {low} and {high}")
        return default
    return float(value)


def read_enum(
    p: Problems,
    body: Mapping[str, Any],
    key: str,
    kind: type[E],
    default: E,
    loc: Sequence[str | int] = (),
) -> E:
    value = body.get(key)
    if value is None:
        return default
    try:
        return kind(str(value).strip().upper())
    except ValueError:
        p.add([*loc, key], f"must be one of {', '.join(m.value for m in kind)}")
        return default


def read_url(p: Problems, value: Any, loc: list[str | int], *, required: bool) -> str | None:
    # Imported here: netguard pulls in the address tables only where URLs are checked.
    from junctionbox.domain.netguard import parse_outbound_url

    if value is None:
        if required:
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


def parse_transformation(
    p: Problems, body: Mapping[str, Any], loc: list[str | int]
) -> Transformation:
    mode = body.get("transformationMode")
    mappings = body.get("fieldMappings")
    script = body.get("transformScript")
    if mode is not None and not isinstance(mode, str):
        p.add([*loc, "transformationMode"], "must be SIMPLE, SCRIPT or JSONATA")
        mode = None
    chosen = mode.strip().upper() if isinstance(mode, str) else None
    if chosen is not None and chosen not in ("SIMPLE", "SCRIPT", "JSONATA"):
        p.add([*loc, "transformationMode"], "must be SIMPLE, SCRIPT or JSONATA")
        chosen = None
    if mappings is not None and (
        not isinstance(mappings, list) or not all(isinstance(m, Mapping) for m in mappings)
    ):
        p.add([*loc, "fieldMappings"], "must be a list of mapping objects")
        mappings = None
    if script is not None and not isinstance(script, str):
        p.add([*loc, "transformScript"], "must be a string")
        script = None
    if chosen is None and mappings:
        chosen = "SIMPLE"
    if chosen in ("SCRIPT", "JSONATA") and not (script or "").strip():
        p.add([*loc, "transformScript"], f"is required in {chosen} mode")
    return Transformation(chosen, tuple(dict(m) for m in mappings or ()), script)


def parse_auth(p: Problems, body: Mapping[str, Any]) -> OutgoingAuth:
    kind = read_enum(p, body, "outgoingAuthType", AuthType, AuthType.NONE)
    raw = body.get("outgoingAuthConfig") or {}
    loc: list[str | int] = ["outgoingAuthConfig"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return OutgoingAuth(kind)
    config: dict[str, Any] = {str(_AUTH_ALIASES.get(k, k)): v for k, v in raw.items()}
    for key in REQUIRED_AUTH_FIELDS[kind]:
        if config.get(key) in (None, "", {}):
            p.add([*loc, key], f"is required for {kind.value}")
    if kind is AuthType.API_KEY:
        where = str(config.get("in", "header")).lower()
        if where not in ("header", "query"):
            p.add([*loc, "in"], "must be 'header' or 'query'")
        config["in"] = where
        if where == "header" and isinstance(config.get("name"), str):
            _header(p, config["name"], None, [*loc, "name"])
    if kind is AuthType.OAUTH2 and config.get("tokenUrl") is not None:
        config["tokenUrl"] = read_url(p, config["tokenUrl"], [*loc, "tokenUrl"], required=True)
        config = {k: v for k, v in config.items() if v is not None or k != "tokenUrl"}
    if kind is AuthType.CUSTOM_HEADERS:
        headers = config.get("headers")
        if headers is not None and not isinstance(headers, Mapping):
            p.add([*loc, "headers"], "must be an object of header names to values")
        elif headers:
            for name, value in headers.items():
                _header(p, name, value, [*loc, "headers", name])
    for key, value in config.items():
        if isinstance(value, str) and _FORBIDDEN_VALUE_CHARS.search(value):
            p.add([*loc, key], "must not contain CR, LF or NUL")
    secret_keys = _secret_keys_of(kind, config)
    # Another type's credential (left over when the type was switched) is dropped rather
    # than kept: it would otherwise land among the plain-text settings.
    foreign = _ALL_SECRET_FIELDS - set(secret_keys)
    settings = {k: v for k, v in config.items() if k not in secret_keys and k not in foreign}
    secrets = {k: v for k, v in config.items() if k in secret_keys and v is not None}
    return OutgoingAuth(kind, settings, secrets)


_ALL_SECRET_FIELDS = frozenset(k for keys in SECRET_AUTH_FIELDS.values() for k in keys)


def _secret_keys_of(kind: AuthType, config: Mapping[str, Any]) -> tuple[str, ...]:
    """The type's credential fields, plus any extra key whose name says it is secret
    (``refreshToken``, ``privateKey`` ...): those are sealed and masked too, never stored
    in plain text."""
    extra = tuple(
        k
        for k in config
        if k not in SECRET_AUTH_FIELDS[kind]
        and k not in _ALL_SECRET_FIELDS
        and k not in _PLAIN_AUTH_FIELDS
        and is_secret_key(k)
    )
    return (*SECRET_AUTH_FIELDS[kind], *extra)


def _header(p: Problems, name: Any, value: Any, loc: list[str | int]) -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        p.add(loc, "is not a valid header name")
    if value is not None and (not isinstance(value, str) or _FORBIDDEN_VALUE_CHARS.search(value)):
        p.add(loc, "header values must be strings without CR, LF or NUL")


def _scheduling(p: Problems, mode_value: Any, config: Any) -> Scheduling:
    mode = read_enum(
        p,
        {"schedulingMode": mode_value},
        "schedulingMode",
        SchedulingMode,
        SchedulingMode.IMMEDIATE,
    )
    loc: list[str | int] = ["schedulingConfig"]
    if mode is SchedulingMode.IMMEDIATE:
        return Scheduling()
    if not isinstance(config, Mapping):
        p.add(loc, f"is required for {mode.value}")
        return Scheduling(mode)
    if mode is SchedulingMode.DELAYED:
        delay = read_int(p, config, "delayMs", -1, 0, MAX_DELAY_MS, loc)
        at = _instant(p, config.get("at"), [*loc, "at"])
        if (delay >= 0) == (at is not None):
            p.add(loc, "DELAYED needs exactly one of delayMs or at")
        return Scheduling(mode, delay_ms=delay if delay >= 0 else None, at=at)
    kind = str(config.get("type", "CRON")).upper()
    timezone = config.get("timezone")
    if timezone is not None:
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            p.add([*loc, "timezone"], "is not a known IANA time zone")
    expression = config.get("expression")
    interval = None
    if kind == "CRON":
        if not isinstance(expression, str) or not croniter.is_valid(expression):
            p.add([*loc, "expression"], "must be a valid cron expression")
    elif kind == "INTERVAL":
        interval = read_int(p, config, "intervalMs", 0, 1000, MAX_DELAY_MS, loc)
        if config.get("intervalMs") is None:
            p.add([*loc, "intervalMs"], "is required for INTERVAL")
    else:
        p.add([*loc, "type"], "must be CRON or INTERVAL")
    return Scheduling(
        mode,
        recurring_type=kind,
        expression=expression if kind == "CRON" else None,
        interval_ms=interval,
        timezone=str(timezone) if timezone is not None else None,
        max_occurrences=read_int(p, config, "maxOccurrences", 0, 1, 100_000, loc) or None,
        end_at=_instant(p, config.get("endAt"), [*loc, "endAt"]),
    )


def _instant(p: Problems, value: Any, loc: list[str | int]) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        p.add(loc, "must be an ISO 8601 date-time")
        return None
    if moment.tzinfo is None:
        p.add(loc, "must include a UTC offset (e.g. 2026-01-01T09:00:00Z)")
        return None
    return moment


def _actions(
    p: Problems,
    raw: Any,
    name: str,
    target_url: str,
    method: HttpMethod,
    transformation: Transformation,
) -> tuple[Action, ...]:
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list) or not all(isinstance(a, Mapping) for a in raw):
        p.add(["actions"], "must be a list of action objects")
        return ()
    if len(raw) > MAX_ACTIONS:
        p.add(["actions"], f"at most {MAX_ACTIONS} actions")
        return ()
    actions = []
    for index, item in enumerate(raw):
        loc: list[str | int] = ["actions", index]
        url = read_url(p, item.get("targetUrl"), [*loc, "targetUrl"], required=False)
        own = (
            parse_transformation(p, item, loc)
            if (
                "transformationMode" in item or "fieldMappings" in item or "transformScript" in item
            )
            else transformation
        )
        actions.append(
            Action(
                index=index,
                name=str(item.get("name") or f"{name} #{index + 1}")[:MAX_NAME],
                target_url=url or target_url,
                http_method=read_enum(p, item, "httpMethod", HttpMethod, method, loc),
                transformation=own,
                delay_ms=read_int(p, item, "delayMs", 0, 0, MAX_DELAY_MS, loc),
            )
        )
    return tuple(actions)


def parse_rate_limit(p: Problems, raw: Any) -> RateLimit:
    if raw is None:
        return RateLimit()
    loc: list[str | int] = ["rateLimits"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return RateLimit()
    enabled = read_bool(p, raw, "enabled", False)
    if not enabled:
        return RateLimit()
    return RateLimit(
        True,
        read_int(p, raw, "maxRequests", 1, 1, 1_000_000, loc),
        read_number(p, raw, "windowSeconds", 1.0, 0.001, 86_400.0, loc),
    )


def _rids(p: Problems, raw: Any) -> tuple[int, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(
        isinstance(r, int) and not isinstance(r, bool) for r in raw
    ):
        p.add(["excludedEntityRids"], "must be a list of entity ids")
        return ()
    return tuple(dict.fromkeys(raw))


def _retry_policy(p: Problems, raw: Any) -> RetryPolicy:
    """Seed 001's ``RetryConfig`` (milliseconds): maxRetries, initialDelay, maxDelay,
    multiplier, jitterFactor."""
    if raw is None:
        return RetryPolicy()
    loc: list[str | int] = ["retryPolicy"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return RetryPolicy()
    default = RetryPolicy()
    try:
        return RetryPolicy(
            max_retries=read_int(p, raw, "maxRetries", default.max_retries, 0, 50, loc),
            base_delay=read_number(
                p, raw, "initialDelay", default.base_delay * 1000, 1, MAX_DELAY_MS, loc
            )
            / 1000,
            max_delay=read_number(
                p, raw, "maxDelay", default.max_delay * 1000, 1, MAX_DELAY_MS, loc
            )
            / 1000,
            multiplier=read_number(p, raw, "multiplier", default.multiplier, 1, 10, loc),
            jitter_factor=read_number(p, raw, "jitterFactor", default.jitter_factor, 0, 1, loc),
        )
    except ValidationError as exc:
        p.add(loc, exc.message)
        return RetryPolicy()


def _ordering(p: Problems, raw: Any) -> Ordering:
    if raw is None:
        return Ordering()
    loc: list[str | int] = ["ordering"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return Ordering()
    mode = read_enum(p, raw, "mode", OrderingMode, OrderingMode.NONE, loc)
    key = raw.get("key")
    if mode is OrderingMode.FIFO:
        key = key if key is not None else "subject"
        if not isinstance(key, str) or not key.strip():
            p.add([*loc, "key"], "must be a dot path into the event, e.g. 'data.customerId'")
            key = None
    return Ordering(mode, key if mode is OrderingMode.FIFO else None)


def _signing(p: Problems, raw: Any) -> Signing:
    if raw is None:
        return Signing()
    loc: list[str | int] = ["signing"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return Signing()
    return Signing(
        algorithm=read_enum(
            p, raw, "algorithm", SigningAlgorithm, SigningAlgorithm.HMAC_SHA256, loc
        ),
        hex_header=read_bool(p, raw, "hexHeader", False),
        rotation_overlap_seconds=read_int(
            p,
            raw,
            "rotationOverlapSeconds",
            DEFAULT_ROTATION_OVERLAP_SECONDS,
            0,
            30 * 24 * 3600,
            loc,
        ),
    )


# ---------------------------------------------------------------- the stored document


def integration_document(integration: OutboundIntegration) -> dict[str, Any]:
    """The JSON form (API field names) without credentials; ``parse_integration`` of this
    plus the secrets gives the same integration back."""
    i = integration
    return {
        "name": i.name,
        "description": i.description,
        "eventType": i.event_type,
        "isActive": i.is_active,
        "targetUrl": i.target_url,
        "httpMethod": i.http_method.value,
        **_transformation_document(i.transformation),
        "outgoingAuthType": i.auth.type.value,
        "outgoingAuthConfig": dict(i.auth.settings),
        "schedulingMode": i.scheduling.mode.value,
        "schedulingConfig": _scheduling_document(i.scheduling),
        "actions": [
            {
                "name": a.name,
                "targetUrl": a.target_url,
                "httpMethod": a.http_method.value,
                "delayMs": a.delay_ms,
                **_transformation_document(a.transformation),
            }
            for a in i.actions
        ],
        "rateLimits": {
            "enabled": i.rate_limit.enabled,
            "maxRequests": i.rate_limit.max_requests,
            "windowSeconds": i.rate_limit.window_seconds,
        },
        "scope": i.scope.value,
        "excludedEntityRids": list(i.excluded_entity_rids),
        "filter": i.filter,
        "retryPolicy": {
            "maxRetries": i.retry_policy.max_retries,
            "initialDelay": round(i.retry_policy.base_delay * 1000),
            "maxDelay": round(i.retry_policy.max_delay * 1000),
            "multiplier": i.retry_policy.multiplier,
            "jitterFactor": i.retry_policy.jitter_factor,
        },
        "timeoutMs": i.timeout_ms,
        "ordering": {"mode": i.ordering.mode.value, "key": i.ordering.key},
        "signing": {
            "algorithm": i.signing.algorithm.value,
            "hexHeader": i.signing.hex_header,
            "rotationOverlapSeconds": i.signing.rotation_overlap_seconds,
        },
        "disableAfterFailures": i.disable_after_failures,
    }


def _transformation_document(t: Transformation) -> dict[str, Any]:
    return {
        "transformationMode": t.mode,
        "fieldMappings": [dict(m) for m in t.field_mappings],
        "transformScript": t.script,
    }


def _scheduling_document(s: Scheduling) -> dict[str, Any] | None:
    if s.mode is SchedulingMode.IMMEDIATE:
        return None
    if s.mode is SchedulingMode.DELAYED:
        return {"delayMs": s.delay_ms, "at": s.at.isoformat() if s.at else None}
    return {
        "type": s.recurring_type,
        "expression": s.expression,
        "intervalMs": s.interval_ms,
        "timezone": s.timezone,
        "maxOccurrences": s.max_occurrences,
        "endAt": s.end_at.isoformat() if s.end_at else None,
    }


def with_secrets(document: Mapping[str, Any], auth_secrets: Mapping[str, Any]) -> dict[str, Any]:
    """The document with its credentials put back, ready for :func:`parse_integration`."""
    merged = dict(document)
    merged["outgoingAuthConfig"] = {**(document.get("outgoingAuthConfig") or {}), **auth_secrets}
    return merged


# ---------------------------------------------------------------- masked credentials

MASK_PREFIX = "****"
_MASK_VISIBLE = 4
_MASK_MIN_LENGTH = 12  # shorter credentials are masked whole: 4 characters would be a third


def mask_secret(value: Any) -> str:
    """A credential as responses show it: ``****`` and at most its last 4 characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) < _MASK_MIN_LENGTH:
        return MASK_PREFIX
    return MASK_PREFIX + text[-_MASK_VISIBLE:]


def _mask_value(value: Any) -> Any:
    if isinstance(value, Mapping):  # CUSTOM_HEADERS: names shown, values masked
        return {str(name): mask_secret(item) for name, item in value.items()}
    return mask_secret(value)


def masked_auth_config(auth: OutgoingAuth) -> dict[str, Any]:
    """``outgoingAuthConfig`` as every response shows it: options in clear, credentials
    masked."""
    shown = dict(auth.settings)
    shown.update({key: _mask_value(value) for key, value in auth.secrets.items()})
    return shown


def is_masked(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK_PREFIX)


def restore_masked(submitted: Any, stored: Mapping[str, Any], *, keep_omitted: bool) -> Any:
    """The submitted ``outgoingAuthConfig`` with masked credentials put back.

    Credentials are write-only: a value equal to the mask of the stored one means "keep it"
    (what a client sends after reading the integration back); with ``keep_omitted`` (the
    auth type is unchanged), an omitted credential is kept too. A masked value that matches
    nothing stored is refused, so a mask is never saved as if it were the credential.
    """
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, Mapping):
        return submitted  # parse_integration reports the shape
    p = Problems()
    restored: dict[str, Any] = {}
    for raw_key, value in submitted.items():
        key = str(_AUTH_ALIASES.get(raw_key, raw_key))
        restored[key] = _restore_one(p, key, value, stored.get(key))
    if keep_omitted:
        for key, value in stored.items():
            restored.setdefault(key, value)
    p.raise_if_any()
    return restored


def _restore_one(p: Problems, key: str, value: Any, stored: Any) -> Any:
    loc: list[str | int] = ["outgoingAuthConfig", key]
    if isinstance(value, Mapping):
        known = stored if isinstance(stored, Mapping) else {}
        return {
            name: _restore_scalar(p, [*loc, str(name)], item, known.get(name))
            for name, item in value.items()
        }
    return _restore_scalar(p, loc, value, stored)


def _restore_scalar(p: Problems, loc: list[str | int], value: Any, stored: Any) -> Any:
    if not is_masked(value):
        return value
    if stored is not None and not isinstance(stored, Mapping) and mask_secret(stored) == value:
        return stored
    p.add(loc, "is a masked value that matches no stored credential; send the credential")
    return value


# ---------------------------------------------------------------- as stored


@dataclass(frozen=True)
class SigningKey:
    """A signing secret (``whsec_…``) or private key (``whsk_…``). The current key has no
    expiry; a rotated-out key signs beside it until ``expires_at``."""

    key: str
    created_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class StoredIntegration:
    """An integration as the store keeps it: ``integration.auth.secrets`` are opened."""

    id: str
    org_id: int
    version: int
    integration: OutboundIntegration
    signing_keys: tuple[SigningKey, ...]
    consecutive_failures: int
    disabled_reason: str | None
    disabled_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_active(self) -> bool:
        return self.integration.is_active

    def keys_at(self, now: datetime) -> list[str]:
        """The keys that sign at ``now``: the current one and those still in overlap."""
        return [k.key for k in self.signing_keys if k.expires_at is None or k.expires_at > now]


# ---------------------------------------------------------------- reuse by other resources


def parse_outgoing_auth(body: Mapping[str, Any]) -> OutgoingAuth:
    """``outgoingAuthType`` / ``outgoingAuthConfig`` of ``body`` validated alone (scheduled
    jobs share this part of an integration's configuration)."""
    p = Problems()
    auth = parse_auth(p, body)
    p.raise_if_any()
    return auth


def parse_retry_policy(raw: Any) -> RetryPolicy:
    """Seed 001's ``retryPolicy`` object (milliseconds) validated alone."""
    p = Problems()
    policy = _retry_policy(p, raw)
    p.raise_if_any()
    return policy
