"""Outbound integrations: CRUD, versions, enable/disable, signing secrets, test calls.

Every change writes a new version (the whole document and its sealed credentials), so any
earlier configuration can be read back and restored. Saving validates more than the shapes
``parse_integration`` checks: transformations and the content filter are compiled, and URLs
whose host is an IP literal or ``localhost`` are checked against the SSRF rules now rather
than failing every delivery later (DNS names are checked when a request is sent).

Credentials are write-only. Responses show them masked (``mask_secret``); a masked value
sent back, or a credential left out while the auth type stays the same, keeps the stored
one. Signing keys are the integration's identity with its receiver: a restore keeps the
current key (it must not undo a rotation the receiver has followed), and the secret is shown
only at creation and by the ``secret`` read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from junctionbox.domain.delivery import message_id
from junctionbox.domain.events import JSON_CONTENT_TYPE, StoredEvent
from junctionbox.domain.identity import TenantContext
from junctionbox.domain.ids import new_id
from junctionbox.domain.matching import filter_activation, run_filter
from junctionbox.domain.netguard import (
    REFUSED_MESSAGE,
    Allowlist,
    parse_allowlist,
    refused_without_dns,
)
from junctionbox.domain.outbound import (
    Action,
    OutboundIntegration,
    SigningAlgorithm,
    SigningKey,
    StoredIntegration,
    Transformation,
    integration_document,
    masked_auth_config,
    parse_integration,
    restore_masked,
    with_secrets,
)
from junctionbox.domain.paging import Page, PageRequest
from junctionbox.domain.secretbox import SecretBox
from junctionbox.domain.signing import (
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    PRIVATE_KEY_PREFIX,
    SYMMETRIC_PREFIX,
    decode_secret,
    generate_keypair,
    generate_secret,
    public_key_for,
)
from junctionbox.errors import (
    ConflictError,
    ExpressionCompileError,
    FieldProblem,
    NotFoundError,
    ValidationError,
)
from junctionbox.expr import compile_filter, compile_transformer
from junctionbox.services import audit
from junctionbox.services.outgoing_auth import validate_auth
from junctionbox.settings import Settings
from junctionbox.store.database import Database
from junctionbox.store.queries import integrations as queries
from junctionbox.store.types import utcnow

if TYPE_CHECKING:
    from junctionbox.services.outbound_request import RequestBuilder

RESOURCE: Final = "outbound_integration"
MAX_SIGNING_KEYS: Final = 5  # the current key and up to four still in their overlap
MAX_OVERLAP_SECONDS: Final = 30 * 24 * 3600
# Fields a client may send back from a response; they are the server's and are ignored.
READ_ONLY_FIELDS: Final = frozenset(
    {
        "id",
        "orgId",
        "version",
        "createdAt",
        "updatedAt",
        "createdBy",
        "consecutiveFailures",
        "disabledReason",
        "disabledAt",
        "signingSecret",
        "signingPublicKey",
        "direction",
    }
)
# Objects a PATCH merges into (RFC 7396: keys merged, null removes); others are replaced.
_MERGED_OBJECTS: Final = frozenset(
    {"outgoingAuthConfig", "schedulingConfig", "rateLimits", "retryPolicy", "ordering", "signing"}
)


# --- views ---


def integration_view(stored: StoredIntegration) -> dict[str, Any]:
    """The API form: the document with credentials masked, plus the store's fields."""
    document = integration_document(stored.integration)
    document["outgoingAuthConfig"] = masked_auth_config(stored.integration.auth)
    current = current_key(stored.signing_keys)
    public = public_key_for(current.key) if current and _is_private_key(current.key) else None
    return {
        "id": stored.id,
        "orgId": stored.org_id,
        "version": stored.version,
        **document,
        "consecutiveFailures": stored.consecutive_failures,
        "disabledReason": stored.disabled_reason,
        "disabledAt": stored.disabled_at,
        "signingPublicKey": public,
        "createdBy": stored.created_by,
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
    }


@dataclass(frozen=True)
class Created:
    integration: StoredIntegration
    signing_secret: str | None  # whsec_ for HMAC; None for ED25519 (its public key is shown)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    change: str
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True)
class VersionDetail:
    info: VersionInfo
    document: dict[str, Any]  # credentials masked


@dataclass(frozen=True)
class KeyInfo:
    created_at: datetime
    expires_at: datetime | None
    current: bool


@dataclass(frozen=True)
class SecretInfo:
    """The signing key as the receiver needs it: the ``whsec_`` secret for HMAC, the
    ``whpk_`` public key for ED25519 (the private key never leaves)."""

    algorithm: str
    signing_secret: str | None
    signing_public_key: str | None
    keys: list[KeyInfo]


@dataclass(frozen=True)
class SampleEvent:
    """The event a test call pretends to deliver."""

    type: str | None = None
    data: Any = None
    id: str | None = None
    source: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class ActionPreview:
    index: int
    name: str
    message_id: str
    method: str
    url: str
    headers: list[tuple[str, str]]  # auth masked
    body: str
    transformed: Any
    signature: str | None
    curl: str


@dataclass(frozen=True)
class MatchPreview:
    """Whether the dispatcher would deliver the sample event to the integration."""

    is_active: bool
    type_matches: bool
    filter_matches: bool | None  # None: no filter
    filter_error: str | None  # why the filter could not decide (counted as no match)

    @property
    def matches(self) -> bool:
        return self.is_active and self.type_matches and self.filter_matches is not False


@dataclass(frozen=True)
class TestReport:
    integration_id: str | None  # None for an unsaved draft
    version: int
    event: dict[str, Any]
    match: MatchPreview
    actions: list[ActionPreview]
    signing_secret: str | None = None  # a draft's throwaway HMAC secret, to check receivers


# --- signing keys ---


def _is_private_key(key: str) -> bool:
    return key.startswith(PRIVATE_KEY_PREFIX)


def _fits(key: str, algorithm: SigningAlgorithm) -> bool:
    return _is_private_key(key) == (algorithm is SigningAlgorithm.ED25519)


def new_signing_key(algorithm: SigningAlgorithm, now: datetime) -> SigningKey:
    """HMAC (and NONE, so that switching signing on later has a key) get a ``whsec_``
    secret; ED25519 a ``whsk_`` private key."""
    if algorithm is SigningAlgorithm.ED25519:
        return SigningKey(generate_keypair()[0], now)
    return SigningKey(generate_secret(), now)


def current_key(keys: Sequence[SigningKey]) -> SigningKey | None:
    current = [k for k in keys if k.expires_at is None]
    return current[-1] if current else None


def _retire(key: SigningKey, until: datetime) -> SigningKey:
    return SigningKey(key.key, key.created_at, until)


def _live(keys: Sequence[SigningKey], now: datetime) -> list[SigningKey]:
    return [k for k in keys if k.expires_at is None or k.expires_at > now]


def _bounded(keys: list[SigningKey]) -> tuple[SigningKey, ...]:
    """At most MAX_SIGNING_KEYS: the overlapping keys that expire soonest go first."""
    current = [k for k in keys if k.expires_at is None]
    overlapping = sorted(
        (k for k in keys if k.expires_at is not None),
        key=lambda k: k.expires_at or k.created_at,
        reverse=True,
    )[: MAX_SIGNING_KEYS - len(current)]
    return (*sorted(overlapping, key=lambda k: k.created_at), *current)


def rotate_keys(
    keys: Sequence[SigningKey],
    new_key: SigningKey,
    *,
    overlap: timedelta,
    now: datetime,
) -> tuple[SigningKey, ...]:
    """``new_key`` becomes current; the old current key keeps signing until now+overlap."""
    until = now + overlap
    kept = [_retire(k, until) if k.expires_at is None else k for k in _live(keys, now)]
    return _bounded([k for k in kept if k.expires_at is None or k.expires_at > now] + [new_key])


def keys_for_algorithm(
    keys: Sequence[SigningKey], integration: OutboundIntegration, now: datetime
) -> tuple[SigningKey, ...]:
    """The keys after a save: expired ones dropped, and a key of the right kind made current
    when the algorithm changed (the old one overlapping, so receivers can follow)."""
    algorithm = integration.signing.algorithm
    current = current_key(keys)
    if current is not None and _fits(current.key, algorithm):
        return _bounded(_live(keys, now))
    overlap = timedelta(seconds=integration.signing.rotation_overlap_seconds)
    return rotate_keys(keys, new_signing_key(algorithm, now), overlap=overlap, now=now)


def check_custom_key(key: str, algorithm: SigningAlgorithm) -> str:
    """A signing key supplied by the caller, checked for its kind and size."""
    if algorithm is SigningAlgorithm.ED25519:
        problem = "must be a whsk_ ed25519 private key (base64 of a 32-byte seed)"
        valid = _is_private_key(key) and _valid(lambda: public_key_for(key))
    else:
        problem = f"must be whsec_ and base64 of {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} random bytes"
        valid = key.startswith(SYMMETRIC_PREFIX) and _valid(
            lambda: MIN_SECRET_BYTES <= len(decode_secret(key)) <= MAX_SECRET_BYTES
        )
    if not valid:
        raise ValidationError(
            f"secret: {problem}", problems=[FieldProblem(("body", "secret"), problem)]
        )
    return key


def _valid(check: Callable[[], object]) -> bool:
    try:
        return check() is not False
    except ValidationError:
        return False


# --- save-time checks beyond the shapes ---


def _transformations(
    integration: OutboundIntegration,
) -> list[tuple[tuple[str | int, ...], Transformation]]:
    """(location, transformation) of the integration and of each action with its own."""
    found: list[tuple[tuple[str | int, ...], Transformation]] = [
        (("body",), integration.transformation)
    ]
    for action in integration.actions:
        if action.transformation != integration.transformation:
            found.append((("body", "actions", action.index), action.transformation))
    return found


def expression_problems(integration: OutboundIntegration) -> list[FieldProblem]:
    """Compile every transformation and the filter; the problems found, located.

    SIMPLE mappings compile without a lookup resolver (``lookup`` resolves at send time).
    """
    problems: list[FieldProblem] = []
    for loc, transformation in _transformations(integration):
        if transformation.mode is None:
            continue
        simple = transformation.mode == "SIMPLE"
        config: Any = list(transformation.field_mappings) if simple else transformation.script
        where = (*loc, "fieldMappings" if simple else "transformScript")
        try:
            compile_transformer(transformation.mode, config or "", lookups=None, loc=where)
        except ExpressionCompileError as exc:
            problems.extend(exc.problems)
    if integration.filter is not None:
        try:
            compile_filter(integration.filter, loc=("body", "filter"))
        except ExpressionCompileError as exc:
            problems.extend(exc.problems)
    return problems


def address_problems(integration: OutboundIntegration, allowlist: Allowlist) -> list[FieldProblem]:
    urls: list[tuple[tuple[str | int, ...], str]] = [
        (("body", "targetUrl"), integration.target_url)
    ]
    urls += [
        (("body", "actions", a.index, "targetUrl"), a.target_url)
        for a in integration.actions
        if a.target_url != integration.target_url
    ]
    token_url = integration.auth.settings.get("tokenUrl")
    if isinstance(token_url, str):
        urls.append((("body", "outgoingAuthConfig", "tokenUrl"), token_url))
    return [
        FieldProblem(loc, REFUSED_MESSAGE)
        for loc, url in urls
        if refused_without_dns(url, allowlist)
    ]


def signing_problems(integration: OutboundIntegration) -> list[FieldProblem]:
    """Seed 001's hex header is an HMAC of the body: it needs a shared secret, which an
    ED25519 integration does not have."""
    signing = integration.signing
    if signing.hex_header and signing.algorithm is SigningAlgorithm.ED25519:
        message = "needs an HMAC secret: use HMAC_SHA256 (or NONE) with hexHeader"
        return [FieldProblem(("body", "signing", "hexHeader"), message)]
    return []


def _nested(exc: ValidationError, key: str) -> ValidationError:
    """The same problems, located inside ``body.<key>``."""
    problems = [
        FieldProblem(("body", key, *p.loc[1:]) if p.loc[:1] == ("body",) else p.loc, p.message)
        for p in exc.problems
    ]
    return ValidationError(f"{key}.{exc.message}", problems=problems)


def raise_problems(problems: list[FieldProblem]) -> None:
    if problems:
        first = problems[0]
        where = ".".join(str(p) for p in first.loc[1:])
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValidationError(f"{where}: {first.message}{more}", problems=problems)


# --- PATCH ---


def merge_patch(document: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``patch`` applied to ``document``: top-level fields replaced (null clears), the
    option objects merged key by key (RFC 7396). A new auth type or scheduling mode takes
    its config from the patch alone: the old one's fields mean nothing to it."""
    merged = dict(document)
    for key, value in patch.items():
        if key in READ_ONLY_FIELDS:
            continue
        current = merged.get(key)
        if key in _MERGED_OBJECTS and isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _merge_object(current, value)
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    for kind, config in (
        ("outgoingAuthType", "outgoingAuthConfig"),
        ("schedulingMode", "schedulingConfig"),
    ):
        if kind in patch and upper_name(patch[kind]) != upper_name(document.get(kind)):
            merged[config] = patch.get(config)
    return merged


def _merge_object(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_object(merged[key], value)
        else:
            merged[key] = value
    return merged


def upper_name(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _full_document(stored: StoredIntegration) -> dict[str, Any]:
    """The current document with its credentials, as parse_integration reads it."""
    integration = stored.integration
    return with_secrets(integration_document(integration), integration.auth.secrets)


# --- sample events for test calls ---


def _sample_type(pattern: str) -> str:
    if pattern == "*":
        return "test.event"
    if pattern.endswith(".*"):
        return pattern[:-1] + "test"
    return pattern


def sample_event(stored: StoredIntegration, sample: SampleEvent, now: datetime) -> StoredEvent:
    """A log event built from the sample (defaults: the integration's type, empty data)."""
    data = {} if sample.data is None else sample.data
    return StoredEvent(
        org_id=stored.org_id,
        stream="default",
        partition=0,
        offset=0,
        event_id=sample.id or new_id("evt"),
        source=sample.source or "junctionbox:test",
        type=sample.type or _sample_type(stored.integration.event_type),
        subject=sample.subject,
        time=now,
        received_at=now,
        partition_key=None,
        data_content_type=JSON_CONTENT_TYPE,
        data_schema=None,
        extensions={},
        payload=orjson.dumps(data),
    )


def match_preview(stored: StoredIntegration, event: StoredEvent) -> MatchPreview:
    """The dispatcher's type and filter rules (domain.matching) applied to one event."""
    integration = stored.integration
    active, type_matches = integration.is_active, integration.matches_type(event.type)
    if integration.filter is None:
        return MatchPreview(active, type_matches, None, None)
    predicate = compile_filter(integration.filter, loc=("filter",))
    verdict = run_filter(predicate.matches, filter_activation(event))
    return MatchPreview(active, type_matches, verdict.matched, verdict.error)


# --- the service ---


class IntegrationService:
    """Tenant-scoped configuration of outbound integrations (audited, versioned)."""

    def __init__(
        self,
        db: Database,
        secretbox: SecretBox,
        settings: Settings,
        *,
        clock: Any = utcnow,
    ) -> None:
        self.db = db
        self.secretbox = secretbox
        self.settings = settings
        self.allowlist = parse_allowlist(settings.ssrf_allowlist)
        self.clock = clock

    # --- validation ---

    def validate(self, body: Mapping[str, Any]) -> OutboundIntegration:
        """Everything checked at save time: shapes (``parse_integration``), expressions,
        literal addresses and the auth options the sender needs (reserved header names,
        OAuth2 options); one ``ValidationError`` listing each problem with its loc."""
        if not isinstance(body, Mapping):
            raise ValidationError("the body must be a JSON object")
        integration = parse_integration(
            {k: v for k, v in body.items() if k not in READ_ONLY_FIELDS}
        )
        raise_problems(
            expression_problems(integration)
            + address_problems(integration, self.allowlist)
            + validate_auth(integration.auth)
            + signing_problems(integration)
        )
        return integration

    # --- create, read, list ---

    async def create(self, tenant: TenantContext, body: Mapping[str, Any]) -> Created:
        integration = self.validate(body)
        now = self.clock()
        key = new_signing_key(integration.signing.algorithm, now)
        integration_id = new_id(queries.INTEGRATION_ID_PREFIX)
        async with self.db.write() as conn:
            await self._require_free_name(conn, tenant.org_id, integration.name, None)
            stored = await queries.insert_integration(
                conn,
                self.secretbox,
                integration_id=integration_id,
                org_id=tenant.org_id,
                integration=integration,
                signing_keys=[key],
                created_by=tenant.principal.id,
                now=now,
            )
            await self._audit(conn, tenant, "create", stored, after=stored)
        secret = None if _is_private_key(key.key) else key.key
        return Created(stored, secret)

    async def get(self, tenant: TenantContext, integration_id: str) -> StoredIntegration:
        async with self.db.read() as conn:
            return await self._existing(conn, tenant, integration_id)

    # --- changes ---

    async def replace(
        self, tenant: TenantContext, integration_id: str, body: Mapping[str, Any]
    ) -> StoredIntegration:
        """A full update (PUT). An omitted ``isActive`` keeps the current state; omitted or
        masked credentials keep the stored ones while the auth type stays the same."""

        def build(current: StoredIntegration) -> OutboundIntegration:
            document = dict(body)
            if document.get("isActive") is None:
                document["isActive"] = current.is_active
            auth_type = upper_name(body.get("outgoingAuthType") or "NONE")
            document["outgoingAuthConfig"] = restore_masked(
                body.get("outgoingAuthConfig"),
                current.integration.auth.secrets,
                keep_omitted=auth_type == current.integration.auth.type.value,
            )
            return self.validate(document)

        return await self._change(tenant, integration_id, build, "UPDATED")

    async def patch(
        self, tenant: TenantContext, integration_id: str, changes: Mapping[str, Any]
    ) -> StoredIntegration:
        """A partial update: ``changes`` merged into the current document (``merge_patch``),
        then validated as a whole."""

        def build(current: StoredIntegration) -> OutboundIntegration:
            merged = merge_patch(_full_document(current), changes)
            merged["outgoingAuthConfig"] = restore_masked(
                merged.get("outgoingAuthConfig"),
                current.integration.auth.secrets,
                keep_omitted=False,
            )
            return self.validate(merged)

        return await self._change(tenant, integration_id, build, "UPDATED")

    async def restore(
        self, tenant: TenantContext, integration_id: str, version: int
    ) -> StoredIntegration:
        """A new version with an old configuration and its credentials. The current
        ``isActive`` and signing key stay: restoring fixes configuration; it does not switch
        deliveries on or off, nor undo a key rotation the receiver has followed."""
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            row = await self._version_row(conn, current, version)
        auth_secrets, _ = queries.version_secrets(self.secretbox, row)
        document = with_secrets(row["config"], auth_secrets)
        document["isActive"] = current.is_active
        restored = self.validate(document)
        async with self.db.write() as conn:
            return await self._save(conn, tenant, current, restored, f"RESTORED:{version}")

    async def delete(self, tenant: TenantContext, integration_id: str) -> None:
        """Delete the integration and its versions. Deliveries already queued find it gone
        and stop; their logs stay."""
        async with self.db.write() as conn:
            current = await self._existing(conn, tenant, integration_id)
            await queries.delete_integration(conn, current.id, current.org_id)
            await self._audit(conn, tenant, "delete", current, before=current)

    async def set_active(
        self, tenant: TenantContext, integration_id: str, active: bool, *, reason: str | None = None
    ) -> StoredIntegration:
        """Enable (which also resets the auto-disable streak) or disable. Asking for the
        state it is already in changes nothing, except that enabling clears a streak."""
        async with self.db.write() as conn:
            current = await self._existing(conn, tenant, integration_id)
            if current.is_active == active and (not active or current.consecutive_failures == 0):
                return current
            why = "disabled by a user" + (f": {reason}" if reason else "")
            return await self._save(
                conn,
                tenant,
                current,
                replace(current.integration, is_active=active),
                "ENABLED" if active else "DISABLED",
                reset_failures=active,
                disabled_reason=None if active else why,
            )

    # --- versions ---

    async def versions(self, tenant: TenantContext, integration_id: str) -> list[VersionInfo]:
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            rows = await queries.versions_of(conn, current.id, current.org_id)
        return [_version_info(row) for row in rows]

    async def version(
        self, tenant: TenantContext, integration_id: str, version: int
    ) -> VersionDetail:
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
            row = await self._version_row(conn, current, version)
        auth_secrets, _ = queries.version_secrets(self.secretbox, row)
        old = parse_integration(with_secrets(row["config"], auth_secrets))
        document = integration_document(old)
        document["outgoingAuthConfig"] = masked_auth_config(old.auth)
        return VersionDetail(_version_info(row), document)

    # --- signing ---

    async def secret(self, tenant: TenantContext, integration_id: str) -> SecretInfo:
        stored = await self.get(tenant, integration_id)
        return _secret_info(stored, self.clock())

    async def rotate_secret(
        self,
        tenant: TenantContext,
        integration_id: str,
        *,
        overlap_seconds: int | None = None,
        secret: str | None = None,
    ) -> SecretInfo:
        """A new current key (generated, or ``secret`` if given); the old one keeps signing
        beside it for ``overlap_seconds`` (default: the integration's
        ``signing.rotationOverlapSeconds``; 0 retires it at once)."""
        if overlap_seconds is not None and not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
            message = f"must be between 0 and {MAX_OVERLAP_SECONDS}"
            raise ValidationError(
                f"overlapSeconds: {message}",
                problems=[FieldProblem(("body", "overlapSeconds"), message)],
            )
        now = self.clock()
        async with self.db.write() as conn:
            current = await self._existing(conn, tenant, integration_id)
            signing = current.integration.signing
            if secret is not None:
                key = SigningKey(check_custom_key(secret, signing.algorithm), now)
            else:
                key = new_signing_key(signing.algorithm, now)
            if any(k.key == key.key for k in current.signing_keys):
                raise ConflictError("that key is already one of the integration's signing keys")
            overlap = timedelta(
                seconds=signing.rotation_overlap_seconds
                if overlap_seconds is None
                else overlap_seconds
            )
            keys = rotate_keys(current.signing_keys, key, overlap=overlap, now=now)
            stored = await queries.save_integration(
                conn,
                self.secretbox,
                current,
                current.integration,
                signing_keys=keys,
                change="ROTATED",
                actor=tenant.principal.id,
                now=now,
            )
            await self._audit(conn, tenant, "rotate_secret", stored, before=current, after=stored)
        return _secret_info(stored, now)

    # --- test calls ---

    async def test_call(
        self,
        tenant: TenantContext,
        integration_id: str,
        sample: SampleEvent,
        builder: RequestBuilder,
        *,
        resolve_auth: bool = False,
    ) -> TestReport:
        """What each action would send for ``sample``, without sending it: the transformed
        body, the final headers (credentials masked), the signature and a curl command,
        and whether the event would match at all (type and content filter)."""
        stored = await self.get(tenant, integration_id)
        return await self._report(stored, sample, builder, resolve_auth=resolve_auth)

    async def test_draft(
        self,
        tenant: TenantContext,
        body: Mapping[str, Any],
        sample: SampleEvent,
        builder: RequestBuilder,
    ) -> TestReport:
        """A test call of an unsaved configuration (validated as a save would), signed with
        a throwaway key that the report returns. Problems are located under
        ``("body", "integration", ...)``, where the draft sits in the request."""
        try:
            integration = self.validate(body)
        except ValidationError as exc:
            raise _nested(exc, "integration") from exc
        now = self.clock()
        key = new_signing_key(integration.signing.algorithm, now)
        draft = StoredIntegration(
            id="int_draft",
            org_id=tenant.org_id,
            version=0,  # the request builder never caches version 0
            integration=integration,
            signing_keys=(key,),
            consecutive_failures=0,
            disabled_reason=None,
            disabled_at=None,
            created_by=tenant.principal.id,
            created_at=now,
            updated_at=now,
        )
        report = await self._report(draft, sample, builder, resolve_auth=False)
        secret = None if _is_private_key(key.key) else key.key
        return replace(report, integration_id=None, signing_secret=secret)

    async def _report(
        self,
        stored: StoredIntegration,
        sample: SampleEvent,
        builder: RequestBuilder,
        *,
        resolve_auth: bool,
    ) -> TestReport:
        now = self.clock()
        event = sample_event(stored, sample, now)
        previews = []
        for action in stored.integration.effective_actions():
            previews.append(await self._preview(builder, stored, action, event, now, resolve_auth))
        shown = event.to_cloudevent()
        shown["data"] = event.data()  # a plain value, not the log's pre-serialised fragment
        return TestReport(stored.id, stored.version, shown, match_preview(stored, event), previews)

    async def _preview(
        self,
        builder: RequestBuilder,
        stored: StoredIntegration,
        action: Action,
        event: StoredEvent,
        now: datetime,
        resolve_auth: bool,
    ) -> ActionPreview:
        msg_id = message_id(event.org_id, event.source, event.event_id, stored.id, action.index)
        prepared = await builder.build(
            stored, action, event, message_id=msg_id, now=now, resolve_auth=resolve_auth
        )
        return ActionPreview(
            index=action.index,
            name=action.name,
            message_id=msg_id,
            method=prepared.method,
            url=prepared.masked_url(),
            headers=list(prepared.masked_headers()),
            body=prepared.body.decode("utf-8", errors="replace"),
            transformed=prepared.transformed,
            signature=prepared.signature,
            curl=prepared.curl(masked=True),
        )

    # --- helpers ---

    async def _change(
        self,
        tenant: TenantContext,
        integration_id: str,
        build: Callable[[StoredIntegration], OutboundIntegration],
        change: str,
    ) -> StoredIntegration:
        """Read, build and validate outside the write transaction (compiling can take a
        while), then write conditionally on the version read: a change in between is a 409."""
        async with self.db.read() as conn:
            current = await self._existing(conn, tenant, integration_id)
        integration = build(current)
        async with self.db.write() as conn:
            return await self._save(conn, tenant, current, integration, change)

    async def _save(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        current: StoredIntegration,
        integration: OutboundIntegration,
        change: str,
        *,
        reset_failures: bool = False,
        disabled_reason: str | None = None,
    ) -> StoredIntegration:
        if integration.name != current.integration.name:
            await self._require_free_name(conn, current.org_id, integration.name, current.id)
        now = self.clock()
        stored = await queries.save_integration(
            conn,
            self.secretbox,
            current,
            integration,
            signing_keys=keys_for_algorithm(current.signing_keys, integration, now),
            change=change,
            actor=tenant.principal.id,
            now=now,
            reset_failures=reset_failures,
            disabled_reason=disabled_reason,
        )
        action = {"ENABLED": "enable", "DISABLED": "disable"}.get(change, "update")
        if change.startswith("RESTORED"):
            action = "restore"
        await self._audit(conn, tenant, action, stored, before=current, after=stored)
        return stored

    async def _existing(
        self, conn: AsyncConnection, tenant: TenantContext, integration_id: str
    ) -> StoredIntegration:
        found = await queries.load_integration(
            conn, self.secretbox, integration_id, org_ids=(tenant.org_id,)
        )
        if found is None:
            raise NotFoundError("integration not found")
        return found

    async def _version_row(
        self, conn: AsyncConnection, current: StoredIntegration, version: int
    ) -> Any:
        row = await queries.load_version(conn, current.id, current.org_id, version)
        if row is None:
            raise NotFoundError(f"version {version} of this integration not found")
        return row

    async def _require_free_name(
        self, conn: AsyncConnection, org_id: int, name: str, integration_id: str | None
    ) -> None:
        if await queries.name_taken(conn, org_id, name, integration_id):
            raise ConflictError(f"an integration named {name!r} already exists")

    async def _audit(
        self,
        conn: AsyncConnection,
        tenant: TenantContext,
        action: str,
        subject: StoredIntegration,
        *,
        before: StoredIntegration | None = None,
        after: StoredIntegration | None = None,
    ) -> None:
        await audit.record(
            conn,
            tenant.principal,
            f"integration.{action}",
            RESOURCE,
            subject.id,
            org_id=subject.org_id,
            before=_audit_view(before),
            after=_audit_view(after),
        )

    # Last in the class: a method named ``list`` would shadow the builtin in annotations.
    async def list(
        self,
        tenant: TenantContext,
        page: PageRequest,
        *,
        is_active: bool | None = None,
        event_type: str | None = None,
        search: str | None = None,
    ) -> Page[StoredIntegration]:
        async with self.db.read() as conn:
            items, total = await queries.list_integrations(
                conn,
                self.secretbox,
                page,
                org_id=tenant.org_id,
                is_active=is_active,
                event_type=event_type,
                search=search,
            )
        return Page(items, total, page)


def _audit_view(stored: StoredIntegration | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    view = integration_view(stored)
    return {k: v for k, v in view.items() if k not in ("createdAt", "updatedAt", "disabledAt")}


def _version_info(row: Any) -> VersionInfo:
    return VersionInfo(row["version"], row["change"], row["created_at"], row["created_by"])


def _secret_info(stored: StoredIntegration, now: datetime) -> SecretInfo:
    algorithm = stored.integration.signing.algorithm
    keys = _live(stored.signing_keys, now)
    current = current_key(keys)
    secret = public = None
    if current is not None and _is_private_key(current.key):
        public = public_key_for(current.key)
    elif current is not None:
        secret = current.key
    return SecretInfo(
        algorithm.value,
        secret,
        public,
        [KeyInfo(k.created_at, k.expires_at, k is current) for k in keys],
    )
