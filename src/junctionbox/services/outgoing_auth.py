"""Outgoing authentication of a delivery (seed 003's Authentication Builder).

``NONE``, ``API_KEY`` (a header, or a query parameter with ``in: query``), ``BEARER``,
``BASIC``, ``CUSTOM_HEADERS`` and ``OAUTH2`` client credentials. Everything but OAuth2 is
static per integration version, so :func:`static_auth` computes it once and the request
builder caches the result. OAuth2 tokens come from :class:`OAuthTokenCache`: fetched
through the same SSRF-guarded client as deliveries, cached until ``expires_in`` minus a
safety margin, one fetch per key however many deliveries wait for it, dropped on demand
(the worker calls :meth:`OAuthTokenCache.invalidate` after a 401 and tries once more).

OAuth2 settings (``outgoingAuthConfig``): ``tokenUrl``, ``clientId``, ``clientSecret``
(sealed), optional ``scope`` (string or list), ``audience``, ``extraParams`` (object of
strings added to the token request) and ``clientAuthMethod``: ``client_secret_basic``
(default, RFC 6749 2.3.1: form-encoded id and secret in an HTTP Basic header) or
``client_secret_post`` (both in the form body).

No message raised here contains a credential, a token or the token URL's query.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus, urlencode, urlsplit, urlunsplit

import orjson

from junctionbox.connectors.http_client import GuardedHttpClient, OutboundNetworkError
from junctionbox.domain.netguard import REFUSED_MESSAGE, TargetRefusedError
from junctionbox.domain.outbound import AuthType, OutgoingAuth
from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.domain.signing import HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP
from junctionbox.errors import FieldProblem, UpstreamError, ValidationError

__all__ = [
    "OAUTH2_PLACEHOLDER",
    "RESERVED_HEADERS",
    "OAuth2Client",
    "OAuthToken",
    "OAuthTokenCache",
    "OAuthTokenError",
    "StaticAuth",
    "check_header",
    "static_auth",
    "validate_auth",
    "with_query",
]

OAUTH2_PLACEHOLDER: Final = "Bearer <oauth2-access-token>"
CLIENT_SECRET_BASIC: Final = "client_secret_basic"  # noqa: S105 - a method name
CLIENT_SECRET_POST: Final = "client_secret_post"  # noqa: S105 - a method name
_METHOD_ALIASES: Final = {
    "client_secret_basic": CLIENT_SECRET_BASIC,
    "basic": CLIENT_SECRET_BASIC,
    "header": CLIENT_SECRET_BASIC,
    "client_secret_post": CLIENT_SECRET_POST,
    "post": CLIENT_SECRET_POST,
    "body": CLIENT_SECRET_POST,
}
# Headers a credential configuration may not set: the transport's, and the signature's
# (a custom "webhook-signature" would let a config forge what receivers verify).
RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        HEADER_ID,
        HEADER_TIMESTAMP,
        HEADER_SIGNATURE,
        "x-webhook-signature-sha256",
    }
)
DEFAULT_TOKEN_LIFETIME: Final = 300.0  # seconds, when the server sends no expires_in
MAX_SAFETY_MARGIN: Final = 60.0  # refresh this long (at most) before the token expires
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
# RFC 6750 b64token, widened to any visible ASCII: what a header value can carry safely.
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")
_ERROR_CODE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class OAuthTokenError(UpstreamError):
    """The OAuth2 token endpoint did not hand out a token.

    ``retryable`` is True for network failures, timeouts, 408, 429 and 5xx; False for a
    refused token URL, other 4xx (wrong credentials: retrying cannot help) and answers that
    are not a token. ``kind`` is set for network failures, ``http_status`` for answers.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        kind: NetworkErrorKind | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.kind = kind
        self.http_status = http_status


def check_header(name: str, value: str) -> None:
    """Defensive check before a header leaves (save-time validation did it already)."""
    if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE.search(value):
        raise ValidationError(f"invalid outgoing header {name[:64]!r}")


# ---------------------------------------------------------------- static credentials


@dataclass(frozen=True, slots=True)
class OAuth2Client:
    """What a token request needs; ``cache_key`` names the credentials, not the version,
    so a rename or an unrelated edit keeps the cached token."""

    token_url: str
    client_id: str
    client_secret: str
    method: str
    form: tuple[tuple[str, str], ...]  # grant_type, scope, audience, extra parameters
    cache_key: str


@dataclass(frozen=True, slots=True)
class StaticAuth:
    """The credential part of a request that does not change between deliveries."""

    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()
    secret_values: tuple[str, ...] = ()  # every credential string as it appears on the wire
    oauth: OAuth2Client | None = None


def static_auth(auth: OutgoingAuth, integration_id: str) -> StaticAuth:
    """Headers, query parameters and secrets of ``auth`` (OAuth2: the token client)."""
    # Options are read from both halves: the domain may seal an option whose name looks
    # secret, and a credential never lands among the settings.
    s = secrets = {**auth.settings, **auth.secrets}
    kind = auth.type
    if kind is AuthType.NONE:
        return StaticAuth()
    if kind is AuthType.API_KEY:
        name, value = str(s.get("name", "")), str(secrets.get("value", ""))
        if str(s.get("in", "header")).lower() == "query":
            return StaticAuth(query=((name, value),), secret_values=_secrets(value))
        return _headers_auth([(name, value)], _secrets(value))
    if kind is AuthType.BEARER:
        token = str(secrets.get("token", ""))
        return _headers_auth([("authorization", f"Bearer {token}")], _secrets(token))
    if kind is AuthType.BASIC:
        password = str(secrets.get("password", ""))
        blob = _b64(f"{s.get('username', '')}:{password}")
        return _headers_auth([("authorization", f"Basic {blob}")], _secrets(password, blob))
    if kind is AuthType.CUSTOM_HEADERS:
        headers = secrets.get("headers") or {}
        pairs = [(str(k), str(v)) for k, v in dict(headers).items()]
        return _headers_auth(pairs, _secrets(*(v for _, v in pairs)))
    if kind is AuthType.OAUTH2:
        client = _oauth_client(s, secrets, integration_id)
        return StaticAuth(secret_values=_secrets(client.client_secret), oauth=client)
    raise ValidationError(f"unsupported outgoingAuthType {kind}")


def _headers_auth(pairs: Sequence[tuple[str, str]], secrets: tuple[str, ...]) -> StaticAuth:
    for name, value in pairs:
        check_header(name, value)
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"header {name!r} cannot be set by outgoing auth")
    return StaticAuth(headers=tuple(pairs), secret_values=secrets)


def _secrets(*values: str) -> tuple[str, ...]:
    return tuple(v for v in values if v)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _oauth_client(
    settings: Mapping[str, Any], secrets: Mapping[str, Any], integration_id: str
) -> OAuth2Client:
    method = _METHOD_ALIASES.get(
        str(settings.get("clientAuthMethod") or CLIENT_SECRET_BASIC).lower()
    )
    if method is None:
        raise ValidationError("clientAuthMethod must be client_secret_basic or client_secret_post")
    form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
    scope = settings.get("scope")
    if isinstance(scope, list | tuple):
        scope = " ".join(str(x) for x in scope)
    if scope:
        form.append(("scope", str(scope)))
    if settings.get("audience"):
        form.append(("audience", str(settings["audience"])))
    extra = settings.get("extraParams") or {}
    form.extend((str(k), str(v)) for k, v in dict(extra).items())
    token_url = str(settings.get("tokenUrl", ""))
    client_id = str(settings.get("clientId", ""))
    secret = str(secrets.get("clientSecret", ""))
    fingerprint = hashlib.sha256(
        orjson.dumps([integration_id, token_url, client_id, secret, method, form])
    ).hexdigest()
    return OAuth2Client(token_url, client_id, secret, method, tuple(form), fingerprint)


def with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query, percent-encoded (``%20``, ``%2B``)."""
    if not params:
        return url
    parts = urlsplit(url)
    extra = urlencode(list(params), quote_via=quote, safe="")
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


# ---------------------------------------------------------------- save-time validation


def validate_auth(auth: OutgoingAuth, loc: Sequence[str | int] = ("body",)) -> list[FieldProblem]:
    """Problems ``domain.outbound.parse_integration`` does not check: reserved header names,
    a ':' in a BASIC username, OAuth2 options. Empty when the config can be sent."""
    where = (*loc, "outgoingAuthConfig")
    problems: list[FieldProblem] = []
    s = {**auth.settings, **auth.secrets}
    in_header = str(s.get("in", "header")) == "header"
    if (
        auth.type is AuthType.API_KEY
        and in_header
        and str(s.get("name", "")).lower() in RESERVED_HEADERS
    ):
        problems.append(FieldProblem((*where, "name"), "is a reserved header name"))
    if auth.type is AuthType.BASIC and ":" in str(s.get("username", "")):
        problems.append(FieldProblem((*where, "username"), "must not contain ':'"))
    if auth.type is AuthType.CUSTOM_HEADERS:
        for name in dict(s.get("headers") or {}):
            if str(name).lower() in RESERVED_HEADERS:
                problems.append(FieldProblem((*where, "headers", name), "is a reserved header"))
    if auth.type is AuthType.OAUTH2:
        problems.extend(_oauth_problems(s, where))
    return problems


def _oauth_problems(s: Mapping[str, Any], where: tuple[str | int, ...]) -> list[FieldProblem]:
    problems = []
    method = s.get("clientAuthMethod")
    if method is not None and str(method).lower() not in _METHOD_ALIASES:
        problems.append(
            FieldProblem(
                (*where, "clientAuthMethod"),
                "must be client_secret_basic or client_secret_post",
            )
        )
    scope = s.get("scope")
    if scope is not None and not (
        isinstance(scope, str)
        or (isinstance(scope, list) and all(isinstance(x, str) for x in scope))
    ):
        problems.append(FieldProblem((*where, "scope"), "must be a string or a list of strings"))
    extra = s.get("extraParams")
    if extra is not None and not (
        isinstance(extra, Mapping) and all(isinstance(v, str) for v in extra.values())
    ):
        problems.append(FieldProblem((*where, "extraParams"), "must be an object of strings"))
    return problems


# ---------------------------------------------------------------- OAuth2 tokens


@dataclass(frozen=True, slots=True)
class OAuthToken:
    access_token: str
    refresh_at: float  # clock time after which it is fetched again


class OAuthTokenCache:
    """Client-credentials tokens, per credentials, shared by every delivery of a process.

    ``clock`` is monotonic seconds (injectable for tests). At most ``max_entries`` tokens
    are kept (oldest dropped first).
    """

    def __init__(
        self,
        http: GuardedHttpClient,
        *,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._http = http
        self._timeout = timeout_seconds
        self._clock = clock
        self._max_entries = max_entries
        self._tokens: OrderedDict[str, OAuthToken] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[OAuthToken]] = {}
        self.fetches = 0  # token requests sent (observability, tests)

    async def token(self, client: OAuth2Client) -> str:
        """A valid access token: cached, or fetched once for every concurrent caller."""
        cached = self._tokens.get(client.cache_key)
        if cached is not None and cached.refresh_at > self._clock():
            return cached.access_token
        task = self._inflight.get(client.cache_key)
        loop = asyncio.get_running_loop()
        if task is None or task.get_loop() is not loop:  # (a fetch of a loop since closed)
            task = loop.create_task(self._fetch(client))
            self._inflight[client.cache_key] = task
            task.add_done_callback(functools.partial(self._settle, client.cache_key))
        # shield: one caller's cancellation must not cancel the fetch the others wait on.
        return (await asyncio.shield(task)).access_token

    def invalidate(self, client: OAuth2Client) -> None:
        """Forget the cached token (the destination answered 401 with it)."""
        self._tokens.pop(client.cache_key, None)

    def _settle(self, key: str, task: asyncio.Task[OAuthToken]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled():
            return
        if task.exception() is None:  # also marks a failure as retrieved
            self._tokens[key] = task.result()
            self._tokens.move_to_end(key)
            while len(self._tokens) > self._max_entries:
                self._tokens.popitem(last=False)

    async def _fetch(self, client: OAuth2Client) -> OAuthToken:
        headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ]
        form = list(client.form)
        if client.method == CLIENT_SECRET_BASIC:
            pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
            headers.append(("authorization", f"Basic {_b64(pair)}"))
        else:
            form += [("client_id", client.client_id), ("client_secret", client.client_secret)]
        self.fetches += 1
        started = self._clock()
        try:
            result = await self._http.send(
                "POST",
                client.token_url,
                headers=headers,
                body=urlencode(form).encode(),
                timeout_seconds=self._timeout,
            )
        except TargetRefusedError:
            raise OAuthTokenError(
                f"OAuth2 token request failed: {REFUSED_MESSAGE}", retryable=False
            ) from None
        except OutboundNetworkError as exc:
            raise OAuthTokenError(
                f"OAuth2 token request failed: {exc.kind.value}", retryable=True, kind=exc.kind
            ) from None
        except ValidationError:
            raise OAuthTokenError(
                "OAuth2 token request failed: invalid token URL", retryable=False
            ) from None
        return _parse_token(result.status, result.body, result.truncated, started)


def _parse_token(status: int, body: bytes, truncated: bool, started: float) -> OAuthToken:
    document = _json_object(body) if not truncated else None
    if not 200 <= status <= 299:
        code = document.get("error") if document else None
        detail = f" ({code})" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
        raise OAuthTokenError(
            f"OAuth2 token endpoint answered HTTP {status}{detail}",
            retryable=status in (408, 429) or status >= 500,
            http_status=status,
        )
    token = document.get("access_token") if document else None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise OAuthTokenError(
            "OAuth2 token endpoint answered without a usable access_token",
            retryable=False,
            http_status=status,
        )
    lifetime = _lifetime(document.get("expires_in") if document else None)
    margin = min(MAX_SAFETY_MARGIN, lifetime * 0.1)
    # Counted from the request's start: the server's clock started no earlier than that.
    return OAuthToken(token, started + lifetime - margin)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _lifetime(value: Any) -> float:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # some servers send it as a string
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_TOKEN_LIFETIME
