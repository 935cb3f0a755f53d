"""Webhook sources: how a partner's webhook becomes an event (pure rules, no I/O).

A source names the stream its events go to, where the event type comes from (a fixed
value, a request header, or a dot path of the JSON body), how the sender is verified
(:mod:`junctionbox.domain.webhook_verification`), where the sender's message id is (it
becomes the event id, so a re-sent webhook is recognised), the timestamp tolerance and the
largest body accepted. Its secrets are kept apart (sealed) as :class:`SecretEntry` values:
at most two are active at once, the current one and, during a rotation, the previous one
until its ``expires_at``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from junctionbox.domain.redaction import MASK, is_secret_key
from junctionbox.domain.webhook_verification import Encoding, Scheme, Verifier
from junctionbox.errors import FieldProblem, MalformedBodyError, ValidationError

DEFAULT_TOLERANCE_SECONDS = 300
MAX_TOLERANCE_SECONDS = 86_400
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_SECRETS = 2
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
MAX_ROTATION_OVERLAP = timedelta(days=30)
MAX_MESSAGE_ID = 200
_TYPE = re.compile(r"^[^\s/]{1,200}$")
_STREAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_PATH = re.compile(r"^(\$\.)?[^.\s]{1,100}(\.[^.\s]{1,100}){0,15}$")
_HOP_BY_HOP = {"host", "content-length", "content-type", "transfer-encoding", "connection"}


class EventTypeFrom(StrEnum):
    FIXED = "FIXED"
    HEADER = "HEADER"
    BODY = "BODY"


# Where each scheme's sender puts its message id when the source does not say.
_DEFAULT_ID_HEADER = {Scheme.GITHUB: "x-github-delivery"}
_DEFAULT_ID_PATH = {Scheme.STRIPE: "id"}


@dataclass(frozen=True)
class WebhookSourceConfig:
    """Everything about a source but its name, state and secrets."""

    event_type: str
    scheme: Scheme
    event_type_from: EventTypeFrom = EventTypeFrom.FIXED
    event_type_prefix: str = ""
    stream: str = "default"
    signature_header: str | None = None
    signature_encoding: Encoding = Encoding.HEX
    signature_prefix: str = ""
    username: str | None = None
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    message_id_header: str | None = None
    message_id_path: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reject_duplicates: bool = False

    @property
    def verifier(self) -> Verifier:
        return Verifier(
            self.scheme,
            self.signature_header,
            self.signature_encoding,
            self.signature_prefix,
            self.username,
        )

    @property
    def needs_json(self) -> bool:
        """The body must be JSON to find the event type or the message id in it."""
        return self.event_type_from is EventTypeFrom.BODY or self.id_path is not None

    @property
    def id_header(self) -> str | None:
        header = self.message_id_header or _DEFAULT_ID_HEADER.get(self.scheme)
        return header.lower() if header else None

    @property
    def id_path(self) -> str | None:
        return self.message_id_path or _DEFAULT_ID_PATH.get(self.scheme)

    def to_json(self) -> dict[str, Any]:
        """The API's (and the stored) camelCase form."""
        return {
            "stream": self.stream,
            "eventTypeFrom": self.event_type_from.value,
            "eventType": self.event_type,
            "eventTypePrefix": self.event_type_prefix,
            "verification": {
                "scheme": self.scheme.value,
                "header": self.signature_header,
                "encoding": self.signature_encoding.value,
                "prefix": self.signature_prefix,
                "username": self.username,
            },
            "toleranceSeconds": self.tolerance_seconds,
            "messageIdHeader": self.message_id_header,
            "messageIdPath": self.message_id_path,
            "maxBodyBytes": self.max_body_bytes,
            "rejectDuplicates": self.reject_duplicates,
        }


def config_from_json(data: Mapping[str, Any], *, max_body_limit: int) -> WebhookSourceConfig:
    """A checked configuration from its camelCase form; ``ValidationError`` listing every
    problem otherwise. ``max_body_limit`` is the deployment's largest event."""
    problems: list[FieldProblem] = []
    verification = data.get("verification") or {}
    try:
        config = WebhookSourceConfig(
            event_type=str(data.get("eventType") or ""),
            scheme=Scheme(str(verification.get("scheme"))),
            event_type_from=EventTypeFrom(data.get("eventTypeFrom") or "FIXED"),
            event_type_prefix=data.get("eventTypePrefix") or "",
            stream=data.get("stream") or "default",
            signature_header=verification.get("header"),
            signature_encoding=Encoding(verification.get("encoding") or "HEX"),
            signature_prefix=verification.get("prefix") or "",
            username=verification.get("username"),
            tolerance_seconds=_int(data, "toleranceSeconds", DEFAULT_TOLERANCE_SECONDS),
            message_id_header=data.get("messageIdHeader"),
            message_id_path=data.get("messageIdPath"),
            max_body_bytes=_int(data, "maxBodyBytes", min(DEFAULT_MAX_BODY_BYTES, max_body_limit)),
            reject_duplicates=bool(data.get("rejectDuplicates") or False),
        )
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"invalid webhook source: {exc}", problems=[FieldProblem(("body",), str(exc))]
        ) from exc
    problems = _problems(config, max_body_limit)
    if problems:
        summary = "; ".join(f"{'.'.join(map(str, p.loc[1:]))}: {p.message}" for p in problems[:5])
        raise ValidationError(f"invalid webhook source: {summary}", problems=problems)
    return config


def _int(data: Mapping[str, Any], key: str, default: int) -> int:
    """An integer field (0 is a value, not "use the default"); booleans are refused."""
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return value


def _problems(config: WebhookSourceConfig, max_body_limit: int) -> list[FieldProblem]:
    found: list[tuple[str, str]] = []
    if not _STREAM.fullmatch(config.stream):
        found.append(("stream", "1-100 letters, digits, '.', '_' or '-'"))
    found += _event_type_problems(config)
    found += _verification_problems(config)
    if not 1 <= config.tolerance_seconds <= MAX_TOLERANCE_SECONDS:
        found.append(("toleranceSeconds", f"must be 1-{MAX_TOLERANCE_SECONDS}"))
    if config.message_id_header is not None and not _HEADER.fullmatch(config.message_id_header):
        found.append(("messageIdHeader", "not a header name"))
    if config.message_id_path is not None and not _PATH.fullmatch(config.message_id_path):
        found.append(("messageIdPath", "a dot path such as id or data.id"))
    if not 1 <= config.max_body_bytes <= max_body_limit:
        found.append(("maxBodyBytes", f"must be 1-{max_body_limit}"))
    return [FieldProblem(("body", *name.split(".")), message) for name, message in found]


def _event_type_problems(config: WebhookSourceConfig) -> list[tuple[str, str]]:
    value, origin = config.event_type, config.event_type_from
    if origin is EventTypeFrom.FIXED and not _TYPE.fullmatch(config.event_type_prefix + value):
        return [("eventType", "1-200 characters, no whitespace and no '/'")]
    if origin is EventTypeFrom.HEADER and not _HEADER.fullmatch(value):
        return [("eventType", "the name of the header holding the event type")]
    if origin is EventTypeFrom.BODY and not _PATH.fullmatch(value):
        return [("eventType", "a dot path of the body such as type or data.kind")]
    if config.event_type_prefix and not _TYPE.fullmatch(config.event_type_prefix):
        return [("eventTypePrefix", "no whitespace and no '/'")]
    return []


def _verification_problems(config: WebhookSourceConfig) -> list[tuple[str, str]]:
    scheme = config.scheme
    found: list[tuple[str, str]] = []
    if scheme in (Scheme.HMAC_SHA256, Scheme.API_KEY):
        if not config.signature_header or not _HEADER.fullmatch(config.signature_header):
            found.append(("verification.header", f"{scheme.value} needs a header name"))
    elif config.signature_header is not None:
        found.append(("verification.header", f"{scheme.value} uses fixed headers"))
    if config.signature_prefix and scheme is not Scheme.HMAC_SHA256:
        found.append(("verification.prefix", "only HMAC_SHA256 takes a prefix"))
    if len(config.signature_prefix) > 50:
        found.append(("verification.prefix", "at most 50 characters"))
    if scheme is Scheme.BASIC:
        if not config.username or ":" in config.username or len(config.username) > 200:
            found.append(("verification.username", "BASIC needs a username without ':'"))
    elif config.username is not None:
        found.append(("verification.username", "only BASIC takes a username"))
    return found


# ---------------------------------------------------------------- secrets and rotation


@dataclass(frozen=True)
class SecretEntry:
    """One secret (plain here; sealed in the store). ``expires_at`` None: the current one."""

    value: str
    created_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


def active_secrets(entries: Sequence[SecretEntry], now: datetime) -> list[str]:
    return [e.value for e in entries if e.active(now)]


def rotate(
    entries: Sequence[SecretEntry], new_secret: str, now: datetime, overlap: timedelta
) -> list[SecretEntry]:
    """The new secret first; the current one kept for ``overlap`` (0: dropped now); older
    ones dropped, so at most two are ever active."""
    rotated = [SecretEntry(new_secret, now)]
    current = next((e for e in entries if e.expires_at is None), None)
    if current is not None and overlap > timedelta(0):
        rotated.append(replace(current, expires_at=now + overlap))
    return rotated[:MAX_SECRETS]


def secret_hint(secret: str) -> str:
    """What a response shows of a secret: its last four characters."""
    return "…" + secret[-4:] if len(secret) >= 12 else "…"


# ---------------------------------------------------------------- reading the request


def read_path(value: Any, path: str) -> Any:
    """The value at a dot path (``$.`` optional; numeric steps index arrays), or None."""
    for step in path.removeprefix("$.").split("."):
        if isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def event_type_of(config: WebhookSourceConfig, headers: Mapping[str, str], document: Any) -> str:
    """The event type of a request (``headers`` lower-case; ``document`` the parsed body)."""
    if config.event_type_from is EventTypeFrom.FIXED:
        return config.event_type_prefix + config.event_type
    if config.event_type_from is EventTypeFrom.HEADER:
        found: Any = headers.get(config.event_type.lower())
        where = f"header {config.event_type}"
    else:
        found = read_path(document, config.event_type)
        where = f"body path {config.event_type}"
    if not isinstance(found, str) or not found.strip():
        raise ValidationError(
            f"the event type is missing: expected a string at {where}",
            problems=[FieldProblem(("body",), f"no event type at {where}")],
        )
    event_type = config.event_type_prefix + found.strip()
    if not _TYPE.fullmatch(event_type):
        raise ValidationError(f"the event type at {where} is not a valid event type name")
    return event_type


def message_id_of(
    config: WebhookSourceConfig,
    headers: Mapping[str, str],
    document: Any,
    verified_id: str | None,
) -> str | None:
    """The sender's id of this message: the verified one, else the configured header or
    body path; None when the sender gives none (the event then gets a new id)."""
    found: Any = verified_id
    if found is None and config.id_header:
        found = headers.get(config.id_header)
    if found is None and config.id_path:
        found = read_path(document, config.id_path)
    if found is None:
        return None
    if isinstance(found, int) and not isinstance(found, bool):
        found = str(found)
    if (
        not isinstance(found, str)
        or not 0 < len(found) <= MAX_MESSAGE_ID
        or not found.isascii()
        or not found.isprintable()
    ):
        raise ValidationError(
            f"the message id must be 1-{MAX_MESSAGE_ID} printable ASCII characters"
        )
    return found


def parse_json(body: bytes, loads: Any) -> Any:
    """The body as JSON (``loads`` is the parser), or ``MalformedBodyError``."""
    try:
        return loads(body)
    except ValueError as exc:
        raise MalformedBodyError("the body is not valid JSON") from exc


def logged_headers(
    headers: Mapping[str, str], secret_headers: Sequence[str]
) -> list[tuple[str, str]]:
    """The request headers worth logging, with every credential-bearing one masked."""
    masked = {h.lower() for h in secret_headers} | {"authorization", "cookie"}
    masked |= {"webhook-signature", "svix-signature", "x-hub-signature-256", "x-hub-signature"}
    masked.add("stripe-signature")
    return [
        (name, MASK if name in masked or is_secret_key(name) else value)
        for name, value in headers.items()
        if name not in _HOP_BY_HOP or name == "content-type"
    ]
