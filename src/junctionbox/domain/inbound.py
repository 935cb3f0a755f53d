"""Inbound integrations: the validated configuration of one real-time API proxy route.

``parse_inbound(body)`` turns the API's JSON (seed 003's INBOUND field names) into an
:class:`InboundIntegration` or raises one ``ValidationError`` listing every problem with its
location; ``inbound_document`` is the inverse, without credentials. Two sets of credentials
travel separately, sealed at rest: the outgoing auth (sent to the upstream, the same types
and shapes as outbound integrations) and the inbound auth (what the caller must present).

The field parsers of :mod:`junctionbox.domain.outbound` are reused so that both directions
read URLs, outgoing auth, transformations and rate limits the same way.

Inbound auth (``inboundAuthType`` / ``inboundAuthConfig``):

* ``NONE``: only the platform credential (X-API-Key or Bearer token) is checked.
* ``API_KEY``: ``{name (header, default X-Integration-Key), value}``.
* ``BEARER``: ``{token}`` in ``Authorization: Bearer``; the platform credential then travels
  as ``X-API-Key``.
* ``BASIC``: ``{username, password}`` in ``Authorization: Basic``; likewise.

Checks compare SHA-256 digests with ``hmac.compare_digest``: constant time whatever the
length or content of what the caller sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from junctionbox.domain.outbound import (
    DEFAULT_TIMEOUT_MS,
    MAX_NAME,
    MAX_TIMEOUT_MS,
    OutgoingAuth,
    Problems,
    RateLimit,
    Transformation,
    is_masked,
    mask_secret,
    parse_auth,
    parse_rate_limit,
    parse_transformation,
    read_bool,
    read_enum,
    read_int,
    read_number,
    read_text,
    read_url,
)
from junctionbox.errors import FieldProblem

MAX_TYPE: Final = 100
DEFAULT_API_KEY_HEADER: Final = "X-Integration-Key"
MIN_SECRET_LENGTH: Final = 8
MAX_PROXY_RETRIES: Final = 5
_TYPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,99}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_CHARS: Final = re.compile(r"[\r\n\x00]")
# Header names an API_KEY check may not use: the platform's credentials and the transport's.
RESERVED_INBOUND_HEADERS: Final = frozenset(
    {
        "authorization",
        "x-api-key",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "cookie",
        "proxy-authorization",
    }
)
_ALIASES: Final = {"headerName": "name", "apiKey": "value", "key": "value"}


class InboundAuthType(StrEnum):
    NONE = "NONE"
    API_KEY = "API_KEY"
    BEARER = "BEARER"
    BASIC = "BASIC"


class ProxyMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"


INBOUND_SECRET_FIELDS: Final[Mapping[InboundAuthType, tuple[str, ...]]] = {
    InboundAuthType.NONE: (),
    InboundAuthType.API_KEY: ("value",),
    InboundAuthType.BEARER: ("token",),
    InboundAuthType.BASIC: ("password",),
}
_INBOUND_REQUIRED: Final[Mapping[InboundAuthType, tuple[str, ...]]] = {
    InboundAuthType.NONE: (),
    InboundAuthType.API_KEY: ("value",),
    InboundAuthType.BEARER: ("token",),
    InboundAuthType.BASIC: ("username", "password"),
}


@dataclass(frozen=True)
class InboundAuth:
    """``settings``: the header name (API_KEY) or username (BASIC); ``secrets``: the key,
    token or password."""

    type: InboundAuthType = InboundAuthType.NONE
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def header(self) -> str | None:
        """The (lower-case) request header that carries the credential, if any."""
        if self.type is InboundAuthType.API_KEY:
            return str(self.settings.get("name") or DEFAULT_API_KEY_HEADER).lower()
        if self.type in (InboundAuthType.BEARER, InboundAuthType.BASIC):
            return "authorization"
        return None


@dataclass(frozen=True)
class ProxyRetry:
    """Retries of one proxied request (network errors and 5xx): ``max_retries`` after the
    first attempt (seed 003: at most 3 attempts in all by default), exponential backoff
    ``min(initial * multiplier^n, max)``; non-idempotent methods only with
    ``retry_non_idempotent``."""

    max_retries: int = 2
    initial_delay: float = 0.1
    max_delay: float = 2.0
    multiplier: float = 2.0
    retry_non_idempotent: bool = False

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (0-based)."""
        return float(min(self.initial_delay * self.multiplier**retry, self.max_delay))


@dataclass(frozen=True)
class InboundIntegration:
    """A validated inbound integration (id, tenant and version are the store's)."""

    name: str
    type: str
    target_url: str
    http_method: ProxyMethod = ProxyMethod.POST
    allowed_methods: tuple[ProxyMethod, ...] = (ProxyMethod.POST,)
    is_active: bool = True
    description: str | None = None
    inbound_auth: InboundAuth = InboundAuth()
    auth: OutgoingAuth = field(default_factory=OutgoingAuth)
    request_transformation: Transformation = field(default_factory=Transformation)
    response_transformation: Transformation = field(default_factory=Transformation)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    retry: ProxyRetry = ProxyRetry()


# ---------------------------------------------------------------- parsing


def parse_inbound(body: Mapping[str, Any]) -> InboundIntegration:
    """Validate the API form of an inbound integration (create, update, stored document)."""
    p = Problems()
    name = read_text(p, body, "name", required=True, limit=MAX_NAME)
    kind = read_text(p, body, "type", required=True, limit=MAX_TYPE)
    if kind and not _TYPE.fullmatch(kind.strip()):
        p.add(["type"], "must be letters, digits, '.', '_' or '-' (a URL path segment)")
    target = read_url(p, body.get("targetUrl"), ["targetUrl"], required=True)
    method = read_enum(p, body, "httpMethod", ProxyMethod, ProxyMethod.POST)
    integration = InboundIntegration(
        name=name or "",
        type=(kind or "").strip(),
        target_url=target or "",
        http_method=method,
        allowed_methods=_methods(p, body.get("allowedMethods"), method),
        is_active=read_bool(p, body, "isActive", True),
        description=read_text(p, body, "description", limit=2000),
        inbound_auth=_inbound_auth(p, body),
        auth=parse_auth(p, body),
        request_transformation=_prefixed_transformation(p, body, "request"),
        response_transformation=_prefixed_transformation(p, body, "response"),
        rate_limit=parse_rate_limit(p, body.get("rateLimits")),
        timeout_ms=read_int(p, body, "timeoutMs", DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS),
        retry=_retry(p, body.get("retryPolicy")),
    )
    p.raise_if_any()
    return integration


def _methods(p: Problems, raw: Any, primary: ProxyMethod) -> tuple[ProxyMethod, ...]:
    if raw is None or raw == []:
        return (primary,)
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        p.add(["allowedMethods"], "must be a list of HTTP methods")
        return (primary,)
    found: list[ProxyMethod] = []
    for index, item in enumerate(raw):
        try:
            found.append(ProxyMethod(item.strip().upper()))
        except ValueError:
            allowed = ", ".join(m.value for m in ProxyMethod)
            p.add(["allowedMethods", index], f"must be one of {allowed}")
    methods = tuple(dict.fromkeys(found))
    if found and primary not in methods:
        p.add(["allowedMethods"], "must include httpMethod")
    return methods or (primary,)


def _prefixed_transformation(p: Problems, body: Mapping[str, Any], side: str) -> Transformation:
    """``requestTransformationMode`` / ``requestFieldMappings`` / ``requestTransformScript``
    (and ``response…``) read by the outbound parser, problems located under our names."""
    names = {
        "transformationMode": f"{side}TransformationMode",
        "fieldMappings": f"{side}FieldMappings",
        "transformScript": f"{side}TransformScript",
    }
    inner = Problems()
    found = parse_transformation(inner, {k: body.get(v) for k, v in names.items()}, [])
    for problem in inner.items:
        key = str(problem.loc[1]) if len(problem.loc) > 1 else ""
        p.add([names.get(key, key), *problem.loc[2:]], problem.message)
    return found


def _inbound_auth(p: Problems, body: Mapping[str, Any]) -> InboundAuth:
    kind = read_enum(p, body, "inboundAuthType", InboundAuthType, InboundAuthType.NONE)
    raw = body.get("inboundAuthConfig") or {}
    loc: list[str | int] = ["inboundAuthConfig"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return InboundAuth(kind)
    config = {str(_ALIASES.get(k, k)): v for k, v in raw.items()}
    if kind is InboundAuthType.NONE:
        return InboundAuth()
    for key in _INBOUND_REQUIRED[kind]:
        if config.get(key) in (None, ""):
            p.add([*loc, key], f"is required for {kind.value}")
    for key, value in config.items():
        if value is not None and not isinstance(value, str):
            p.add([*loc, key], "must be a string")
        elif isinstance(value, str) and _BAD_CHARS.search(value):
            p.add([*loc, key], "must not contain CR, LF or NUL")
    for key in INBOUND_SECRET_FIELDS[kind]:
        value = config.get(key)
        short = isinstance(value, str) and len(value) < MIN_SECRET_LENGTH
        if short and value and not is_masked(value):
            p.add([*loc, key], f"must be at least {MIN_SECRET_LENGTH} characters")
    if kind is InboundAuthType.API_KEY:
        header = config.get("name") or DEFAULT_API_KEY_HEADER
        if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
            p.add([*loc, "name"], "is not a valid header name")
        elif header.lower() in RESERVED_INBOUND_HEADERS:
            p.add([*loc, "name"], "is reserved (the platform's credential or the transport's)")
        config["name"] = header
    if kind is InboundAuthType.BASIC and ":" in str(config.get("username", "")):
        p.add([*loc, "username"], "must not contain ':'")
    secret_keys = INBOUND_SECRET_FIELDS[kind]
    plain = {"name", "username"}
    settings = {k: v for k, v in config.items() if k in plain and v is not None}
    secrets = {k: v for k, v in config.items() if k in secret_keys and v is not None}
    return InboundAuth(kind, settings, secrets)


def _retry(p: Problems, raw: Any) -> ProxyRetry:
    default = ProxyRetry()
    if raw is None:
        return default
    loc: list[str | int] = ["retryPolicy"]
    if not isinstance(raw, Mapping):
        p.add(loc, "must be an object")
        return default
    initial = read_number(p, raw, "initialDelay", default.initial_delay * 1000, 1, 60_000, loc)
    largest = read_number(p, raw, "maxDelay", default.max_delay * 1000, 1, 60_000, loc)
    if largest < initial:
        p.add([*loc, "maxDelay"], "must be at least initialDelay")
        largest = initial
    return ProxyRetry(
        max_retries=read_int(p, raw, "maxRetries", default.max_retries, 0, MAX_PROXY_RETRIES, loc),
        initial_delay=initial / 1000,
        max_delay=largest / 1000,
        multiplier=read_number(p, raw, "multiplier", default.multiplier, 1, 10, loc),
        retry_non_idempotent=read_bool(p, raw, "retryNonIdempotent", False),
    )


# ---------------------------------------------------------------- the stored document


def inbound_document(i: InboundIntegration) -> dict[str, Any]:
    """The JSON form (API field names) without credentials."""
    return {
        "direction": "INBOUND",
        "name": i.name,
        "type": i.type,
        "description": i.description,
        "isActive": i.is_active,
        "targetUrl": i.target_url,
        "httpMethod": i.http_method.value,
        "allowedMethods": [m.value for m in i.allowed_methods],
        "inboundAuthType": i.inbound_auth.type.value,
        "inboundAuthConfig": dict(i.inbound_auth.settings),
        "outgoingAuthType": i.auth.type.value,
        "outgoingAuthConfig": dict(i.auth.settings),
        **_transformation_fields("request", i.request_transformation),
        **_transformation_fields("response", i.response_transformation),
        "rateLimits": {
            "enabled": i.rate_limit.enabled,
            "maxRequests": i.rate_limit.max_requests,
            "windowSeconds": i.rate_limit.window_seconds,
        },
        "timeoutMs": i.timeout_ms,
        "retryPolicy": {
            "maxRetries": i.retry.max_retries,
            "initialDelay": round(i.retry.initial_delay * 1000),
            "maxDelay": round(i.retry.max_delay * 1000),
            "multiplier": i.retry.multiplier,
            "retryNonIdempotent": i.retry.retry_non_idempotent,
        },
    }


def _transformation_fields(side: str, t: Transformation) -> dict[str, Any]:
    return {
        f"{side}TransformationMode": t.mode,
        f"{side}FieldMappings": [dict(m) for m in t.field_mappings],
        f"{side}TransformScript": t.script,
    }


def with_inbound_secrets(
    document: Mapping[str, Any],
    outgoing: Mapping[str, Any],
    inbound: Mapping[str, Any],
) -> dict[str, Any]:
    """The document with both sets of credentials put back, ready for :func:`parse_inbound`."""
    merged = dict(document)
    merged["outgoingAuthConfig"] = {**(document.get("outgoingAuthConfig") or {}), **outgoing}
    merged["inboundAuthConfig"] = {**(document.get("inboundAuthConfig") or {}), **inbound}
    return merged


def masked_inbound_config(auth: InboundAuth) -> dict[str, Any]:
    shown = dict(auth.settings)
    shown.update({key: mask_secret(value) for key, value in auth.secrets.items()})
    return shown


def restore_masked_inbound(
    submitted: Any, stored: Mapping[str, Any], *, keep_omitted: bool
) -> tuple[Any, list[FieldProblem]]:
    """``inboundAuthConfig`` with masked credentials put back (write-only, as outgoing
    credentials: the mask of the stored value keeps it; another mask is refused)."""
    if submitted is None:
        submitted = {}
    if not isinstance(submitted, Mapping):
        return submitted, []
    problems: list[FieldProblem] = []
    restored: dict[str, Any] = {}
    for raw_key, value in submitted.items():
        key = str(_ALIASES.get(raw_key, raw_key))
        kept = stored.get(key)
        if is_masked(value):
            if kept is not None and mask_secret(kept) == value:
                value = kept
            else:
                message = "is a masked value that matches no stored credential; send it"
                problems.append(FieldProblem(("body", "inboundAuthConfig", key), message))
        restored[key] = value
    if keep_omitted:
        for key, value in stored.items():
            restored.setdefault(key, value)
    return restored, problems


# ---------------------------------------------------------------- checking a caller


def _digest(value: str | bytes) -> bytes:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class InboundCheck:
    """The precomputed digests an incoming request is compared against."""

    type: InboundAuthType
    header: str | None
    secret_digest: bytes = b""
    user_digest: bytes = b""

    @classmethod
    def of(cls, auth: InboundAuth) -> InboundCheck:
        secret = next((str(v) for v in auth.secrets.values()), "")
        user = str(auth.settings.get("username", ""))
        return cls(auth.type, auth.header, _digest(secret), _digest(user))

    def accepts(self, header: Callable[[str], str | None]) -> bool:
        """True when the request (``header(name)`` reads it) carries the credential."""
        if self.type is InboundAuthType.NONE:
            return True
        assert self.header is not None
        presented = header(self.header)
        if presented is None:
            return False
        if self.type is InboundAuthType.API_KEY:
            return hmac.compare_digest(_digest(presented), self.secret_digest)
        scheme, _, credential = presented.strip().partition(" ")
        credential = credential.strip()
        if self.type is InboundAuthType.BEARER:
            same = hmac.compare_digest(_digest(credential), self.secret_digest)
            return same and scheme.lower() == "bearer"
        return scheme.lower() == "basic" and self._basic(credential)

    def _basic(self, credential: str) -> bool:
        try:
            decoded = base64.b64decode(credential, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared, always: which half was wrong must not show in the timing.
        user_ok = hmac.compare_digest(_digest(user), self.user_digest)
        password_ok = hmac.compare_digest(_digest(password), self.secret_digest)
        return bool(sep) and user_ok and password_ok
