"""Builds the exact HTTP request of one delivery: transform, auth, signature, curl.

:meth:`RequestBuilder.build` turns (integration, action, event) into a
:class:`PreparedRequest`: the method, URL, headers and body bytes that go on the wire, the
signature over exactly those bytes, and what is needed to show the request safely (masked
headers and URL, a curl command).

* **Body.** Without a transformation the body is the event's data bytes exactly as stored
  (no parse, no re-serialisation), with the event's ``datacontenttype`` (default
  ``application/json``). With SIMPLE, JSONATA or SCRIPT the event data (parsed JSON) is
  transformed and the result serialised once with orjson; those bytes are signed and sent.
* **Transformation context** (SCRIPT's second argument ``context``, JSONata's
  ``$context``; SIMPLE ignores it)::

      {"id", "type", "source", "subject", "time", "orgId", "integrationId", "messageId"}

  ``time`` is ISO 8601 (``Z``) or null, ``orgId`` the event's tenant. SIMPLE ``lookup``
  reads the event tenant's lookup tables (a unit's include its organization's).
* **Headers**, in order: ``content-type``, ``user-agent``, ``webhook-id`` (the stable
  message id), ``webhook-timestamp``, ``webhook-signature`` (unless the signing algorithm is
  NONE), ``x-webhook-signature-sha256`` (seed 001's hex HMAC, when ``signing.hexHeader``),
  ``x-correlation-id`` (when given), then the outgoing auth headers.

Everything static per integration version (URL with query credentials, auth headers,
compiled transformer) is computed once and cached under ``(id, version, action)``;
``version`` 0 marks an unsaved draft (the console's test call), which is never cached.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import orjson

from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.events import JSON_CONTENT_TYPE, StoredEvent
from junctionbox.domain.outbound import (
    Action,
    AuthType,
    SigningAlgorithm,
    StoredIntegration,
    Transformation,
)
from junctionbox.domain.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEX_SIGNATURE_HEADER,
    PRIVATE_KEY_PREFIX,
    PUBLIC_KEY_PREFIX,
    sign,
    sign_hex,
)
from junctionbox.errors import ExpressionCompileError, ExpressionRuntimeError, ValidationError
from junctionbox.expr import (
    DEFAULT_LIMITS,
    ExpressionCache,
    Limits,
    LookupResolver,
    SimpleTransformer,
    TransformationMode,
    Transformer,
    compile_transformer,
)
from junctionbox.services.lookups import LookupService
from junctionbox.services.outgoing_auth import (
    OAUTH2_PLACEHOLDER,
    OAuthTokenCache,
    StaticAuth,
    check_header,
    static_auth,
    with_query,
)

__all__ = [
    "CORRELATION_HEADER",
    "MASK",
    "PreparedRequest",
    "RequestBuilder",
    "curl_command",
    "mask_url",
]

MASK: Final = "****"
CORRELATION_HEADER: Final = "x-correlation-id"
_SCHEMES: Final = ("Bearer ", "Basic ")
_RECENT_PLANS: Final = 4096
_SUBSTRING_MIN: Final = 8  # credentials at least this long are also masked inside text


# ---------------------------------------------------------------- the request


@dataclass(slots=True)
class PreparedRequest:
    """One delivery attempt's request, byte for byte. Treat as immutable (not frozen: one is
    built per delivery, and a frozen dataclass sets each field through
    ``object.__setattr__``)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    signature: str | None  # the webhook-signature value; None when signing is NONE
    transformed: Any  # the JSON value sent; None when the raw event data is sent unchanged
    secret_values: tuple[str, ...] = ()  # every credential string in headers/url, for masking
    # Set by RequestBuilder, which knows where credentials are: headers from this index on
    # are auth headers, and the URL's masked form. Hand-made requests leave them None and
    # are masked by searching for the secret values.
    _credentials_from: int | None = field(default=None, repr=False, compare=False)
    _masked_url: str | None = field(default=None, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def masked_headers(self) -> list[tuple[str, str]]:
        """The headers with every credential replaced by ``****`` (``Bearer ****`` keeps
        its scheme). Signature headers stay: they are derived, not secret."""
        if not self.secret_values:
            return list(self.headers)
        start = self._credentials_from
        if start is not None:
            return [*self.headers[:start], *((k, _mask_all(v)) for k, v in self.headers[start:])]
        return [(k, _mask_value(v, self.secret_values)) for k, v in self.headers]

    def masked_url(self) -> str:
        """The URL with credentials in its query (API_KEY ``in: query``) masked."""
        if self._masked_url is not None:
            return self._masked_url
        return mask_url(self.url, self.secret_values)

    def curl(self, masked: bool = True) -> str:
        """A copy-pasteable (POSIX shell) curl command sending this request."""
        url = self.masked_url() if masked else self.url
        headers = self.masked_headers() if masked else self.headers
        text = _shell_text(self.body)
        if text is not None:
            return curl_command(self.method, url, headers, text)
        # Bytes a shell argument cannot hold (NUL, invalid UTF-8): pipe them in, octal-escaped.
        lines = _curl_lines(self.method, url, headers)
        escaped = "".join(f"\\{b:03o}" for b in self.body)
        return f"printf '{escaped}' | " + " \\\n  ".join([*lines, "--data-binary @-"])

    def has_text_body(self) -> bool:
        """Whether the body is text a shell argument can hold (the curl command's own)."""
        return _shell_text(self.body) is not None


def curl_command(method: str, url: str, headers: Iterable[tuple[str, str]], body: str) -> str:
    """The curl command (POSIX shell) of a request whose body is text: what
    :meth:`PreparedRequest.curl` gives, made from its parts (a delivery log row's, too)."""
    lines = _curl_lines(method, url, headers)
    if body:
        lines.append(f"--data-binary {_shell_quote(body)}")
    return " \\\n  ".join(lines)


def _curl_lines(method: str, url: str, headers: Iterable[tuple[str, str]]) -> list[str]:
    return [
        f"curl -X {method} {_shell_quote(url)}",
        *(f"-H {_shell_quote(f'{k}: {v}')}" for k, v in headers),
    ]


def mask_url(url: str, secrets: tuple[str, ...]) -> str:
    """``url`` with query values equal to a secret, and long secrets anywhere, masked."""
    if not secrets:
        return url
    base, sep, rest = url.partition("?")
    query, hash_sign, fragment = rest.partition("#")
    known = frozenset(secrets)
    params = [_mask_param(p, known) for p in query.split("&")] if sep else []
    return _mask_long(base + sep + "&".join(params) + hash_sign + fragment, secrets, url_forms=True)


def _mask_all(value: str) -> str:
    if value == OAUTH2_PLACEHOLDER:  # not a credential: it says one will be fetched
        return value
    scheme = next((p for p in _SCHEMES if value.startswith(p)), "")
    return scheme + MASK


def _mask_value(value: str, secrets: tuple[str, ...]) -> str:
    # Exact matches (the value, or the value after its scheme) are what auth produces; a
    # substring is masked only for credentials long enough not to hit ordinary text (a
    # one-character custom header value must not mask every timestamp containing it).
    scheme = next((p for p in _SCHEMES if value.startswith(p)), "")
    if value in secrets or (scheme and value[len(scheme) :] in secrets):
        return scheme + MASK
    if any(len(s) >= _SUBSTRING_MIN and s in value for s in secrets):
        return scheme + MASK
    return value


def _mask_param(param: str, secrets: frozenset[str]) -> str:
    name, eq, value = param.partition("=")
    if eq and (unquote(value) in secrets or unquote_plus(value) in secrets):
        return f"{name}={MASK}"
    return param


def _mask_long(text: str, secrets: tuple[str, ...], *, url_forms: bool = False) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < _SUBSTRING_MIN:
            break
        forms = {secret, quote(secret, safe=""), quote_plus(secret)} if url_forms else {secret}
        for form in forms:
            text = text.replace(form, MASK)
    return text


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _shell_text(body: bytes) -> str | None:
    if b"\x00" in body:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------- lookups inside SIMPLE

# SIMPLE binds its resolver at compile time, but tables change and are cached per tenant:
# the cached transformer reads through this context variable, set around each call.
_ACTIVE_LOOKUPS: contextvars.ContextVar[LookupResolver | None] = contextvars.ContextVar(
    "jb_active_lookups", default=None
)


class _ContextLookups:
    def resolve(self, lookup_type: str, key: str) -> str | None:
        resolver = _ACTIVE_LOOKUPS.get()
        if resolver is None:
            raise ExpressionRuntimeError("lookup tables are not available here")
        return resolver.resolve(lookup_type, key)


_CONTEXT_LOOKUPS: Final = _ContextLookups()


# ---------------------------------------------------------------- the builder


@dataclass(frozen=True, slots=True)
class _Plan:
    """What does not change between deliveries of one (integration version, action)."""

    method: str
    url: str
    masked_url: str
    transformer: Transformer | None
    threaded: bool  # SCRIPT / JSONATA: run off the event loop
    uses_lookups: bool
    auth: StaticAuth
    algorithm: SigningAlgorithm
    hex_header: bool
    own_content_type: bool  # False when the auth headers set content-type themselves
    own_user_agent: bool


def with_header(request: PreparedRequest, name: str, value: str) -> PreparedRequest:
    """``request`` with one more header, placed before the credential headers (so that
    masking still finds them by position). Not signed: signatures cover id, time and body."""
    start = request._credentials_from
    # Built field by field: dataclasses.replace costs several times more, per delivery.
    return PreparedRequest(
        request.method,
        request.url,
        [(name, value), *request.headers],
        request.body,
        request.signature,
        request.transformed,
        request.secret_values,
        None if start is None else start + 1,
        request._masked_url,
    )


class RequestBuilder:
    """Builds :class:`PreparedRequest` objects; one per process, shared by every worker."""

    def __init__(
        self,
        lookups: LookupService,
        http: GuardedHttpClient,
        *,
        expressions: ExpressionCache | None = None,
        oauth: OAuthTokenCache | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._lookups = lookups
        self._plans = expressions if expressions is not None else ExpressionCache(4096)
        # Plans by (id, version, action) in front of the shared cache: a plain dict look-up
        # per delivery instead of the cache's lock and LRU bookkeeping. A version's plan
        # never changes, so entries need no invalidation; the dict is bounded.
        self._recent: dict[tuple[str, int, int], _Plan] = {}
        self._oauth = oauth if oauth is not None else OAuthTokenCache(http)
        self._limits = limits
        # The client adds this User-Agent itself; we send it explicitly so that what the
        # log and the curl command show is what went out.
        self._user_agent = http.user_agent

    @property
    def oauth(self) -> OAuthTokenCache:
        return self._oauth

    async def build(
        self,
        stored: StoredIntegration,
        action: Action,
        event: StoredEvent,
        *,
        message_id: str,
        now: datetime,
        resolve_auth: bool = True,
        correlation_id: str | None = None,
    ) -> PreparedRequest:
        """The request of one attempt at ``now`` (signed with the keys active then).

        Raises ``ExpressionRuntimeError`` when the transformation fails (never retried),
        ``OAuthTokenError`` when no OAuth2 token could be had (see its ``retryable``) and
        ``ValidationError`` for a configuration that cannot be sent (no signing key).
        With ``resolve_auth=False`` an OAuth2 header shows a placeholder and nothing is
        fetched (the console's test call).
        """
        plan = self._plan(stored, action)
        if plan.transformer is None:
            body = event.payload
            transformed = None
            content_type = event.data_content_type or JSON_CONTENT_TYPE
            check_header("content-type", content_type)  # validated at ingest; cheap to repeat
        else:
            transformed = await self._transform(plan, plan.transformer, stored, event, message_id)
            body = _serialise(transformed)
            content_type = JSON_CONTENT_TYPE
        check_header(HEADER_ID, message_id)
        timestamp = int(now.timestamp())
        headers: list[tuple[str, str]] = []
        if plan.own_content_type:
            headers.append(("content-type", content_type))
        if plan.own_user_agent:
            headers.append(("user-agent", self._user_agent))
        headers += ((HEADER_ID, message_id), (HEADER_TIMESTAMP, str(timestamp)))
        signature = None
        if plan.algorithm is not SigningAlgorithm.NONE:
            signature = sign(message_id, timestamp, body, _signing_keys(stored, plan, now))
            headers.append((HEADER_SIGNATURE, signature))
        if plan.hex_header:
            hex_key = _hex_key(stored, now)
            if hex_key is not None:
                headers.append((HEX_SIGNATURE_HEADER, sign_hex(body, hex_key)))
        if correlation_id:
            check_header(CORRELATION_HEADER, correlation_id)
            headers.append((CORRELATION_HEADER, correlation_id))
        credentials_from = len(headers)
        headers += plan.auth.headers
        secrets = plan.auth.secret_values
        if plan.auth.oauth is not None:
            if resolve_auth:
                token = await self._oauth.token(plan.auth.oauth)
                headers.append(("authorization", f"Bearer {token}"))
                secrets = (*secrets, token)
            else:
                headers.append(("authorization", OAUTH2_PLACEHOLDER))
        return PreparedRequest(
            plan.method,
            plan.url,
            headers,
            body,
            signature,
            transformed,
            secrets,
            credentials_from,
            plan.masked_url,
        )

    def invalidate_token(self, stored: StoredIntegration) -> None:
        """OAuth2: drop the cached token so the next build fetches a new one (after a 401)."""
        if stored.integration.auth.type is AuthType.OAUTH2:
            client = static_auth(stored.integration.auth, stored.id).oauth
            if client is not None:
                self._oauth.invalidate(client)

    # ------------------------------------------------------------ internals

    def _plan(self, stored: StoredIntegration, action: Action) -> _Plan:
        if stored.version <= 0:  # a draft: its id and version do not name a configuration
            return self._make_plan(stored, action)
        recent = (stored.id, stored.version, action.index)
        plan = self._recent.get(recent)
        if plan is None:
            key = ("request", *recent)
            plan = self._plans.get_or_compile(key, lambda: self._make_plan(stored, action))
            if len(self._recent) >= _RECENT_PLANS:
                self._recent.clear()
            self._recent[recent] = plan
        return plan

    def _make_plan(self, stored: StoredIntegration, action: Action) -> _Plan:
        integration = stored.integration
        auth = static_auth(integration.auth, stored.id)
        transformer, mode = self._compile(action.transformation)
        names = {name.lower() for name, _ in auth.headers}
        url = with_query(action.target_url, auth.query)
        return _Plan(
            method=action.http_method.value,
            url=url,
            masked_url=mask_url(url, auth.secret_values),
            transformer=transformer,
            threaded=mode in (TransformationMode.SCRIPT, TransformationMode.JSONATA),
            uses_lookups=isinstance(transformer, SimpleTransformer)
            and bool(transformer.lookup_types),
            auth=auth,
            algorithm=integration.signing.algorithm,
            hex_header=integration.signing.hex_header,
            own_content_type="content-type" not in names,
            own_user_agent="user-agent" not in names,
        )

    def _compile(
        self, transformation: Transformation
    ) -> tuple[Transformer | None, TransformationMode | None]:
        if transformation.mode is None:
            return None, None
        mode = TransformationMode(transformation.mode)
        try:
            if mode is TransformationMode.SIMPLE:
                config: Any = list(transformation.field_mappings)
                return compile_transformer(
                    mode, config, limits=self._limits, lookups=_CONTEXT_LOOKUPS
                ), mode
            return compile_transformer(mode, transformation.script or "", limits=self._limits), mode
        except ExpressionCompileError as exc:
            # Validated at save time; failing now (an engine upgrade?) is still the
            # transformation's fault, and retrying cannot fix it.
            raise ExpressionRuntimeError(f"transformation does not compile: {exc.message}") from exc

    async def _transform(
        self,
        plan: _Plan,
        transformer: Transformer,
        stored: StoredIntegration,
        event: StoredEvent,
        message_id: str,
    ) -> Any:
        try:
            data = event.data()
        except orjson.JSONDecodeError as exc:
            raise ExpressionRuntimeError("the event data is not valid JSON") from exc
        context = _context(stored, event, message_id)
        if plan.threaded:
            # QuickJS releases the GIL and JSONata yields it: a slow or hostile script
            # delays only its own delivery, not the event loop.
            return await asyncio.to_thread(transformer.transform, data, context)
        if not plan.uses_lookups:
            return transformer.transform(data, context)
        # The event's tenant: a unit sees its organization's tables with its own overrides,
        # and the dispatcher only matches events within the integration owner's hierarchy.
        resolver = await self._lookups.resolver(event.org_id)
        token = _ACTIVE_LOOKUPS.set(resolver)
        try:
            return transformer.transform(data, context)
        finally:
            _ACTIVE_LOOKUPS.reset(token)


def _context(stored: StoredIntegration, event: StoredEvent, message_id: str) -> Mapping[str, Any]:
    time = event.time.isoformat().replace("+00:00", "Z") if event.time else None
    return {
        "id": event.event_id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": time,
        "orgId": event.org_id,
        "integrationId": stored.id,
        "messageId": message_id,
    }


def _serialise(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ExpressionRuntimeError(f"the transformation result is not JSON ({exc})") from exc


def _is_asymmetric(key: str) -> bool:
    return key.startswith((PRIVATE_KEY_PREFIX, PUBLIC_KEY_PREFIX))


def _signing_keys(stored: StoredIntegration, plan: _Plan, now: datetime) -> list[str]:
    """The active keys of the configured algorithm (a rotation overlap gives several)."""
    wants_ed25519 = plan.algorithm is SigningAlgorithm.ED25519
    keys = [k for k in stored.keys_at(now) if _is_asymmetric(k) == wants_ed25519]
    if not keys:
        raise ValidationError(
            f"integration has no active {plan.algorithm.value} signing key; rotate its secret"
        )
    return keys


def _hex_key(stored: StoredIntegration, now: datetime) -> str | None:
    """The current HMAC secret (seed 001's hex header signs with one key only)."""
    active = [
        k
        for k in stored.signing_keys
        if (k.expires_at is None or k.expires_at > now) and not _is_asymmetric(k.key)
    ]
    if not active:
        return None
    current = [k for k in active if k.expires_at is None] or active
    return max(current, key=lambda k: k.created_at).key
