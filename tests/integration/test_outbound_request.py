"""RequestBuilder: the exact request of a delivery, sent to a real sink and verified there."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shlex
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

import orjson
import pytest
from standardwebhooks.webhooks import Webhook
from tests.support import World

from junctionbox.connectors.destinations import HttpDestination
from junctionbox.connectors.http_client import GuardedHttpClient
from junctionbox.domain.events import StoredEvent
from junctionbox.domain.ids import new_id
from junctionbox.domain.netguard import REFUSED_MESSAGE, parse_allowlist
from junctionbox.domain.outbound import SigningKey, StoredIntegration, parse_integration
from junctionbox.domain.signing import (
    HEX_SIGNATURE_HEADER,
    generate_keypair,
    generate_secret,
    verify,
)
from junctionbox.errors import ExpressionRuntimeError, ValidationError
from junctionbox.expr import ExpressionCache, Limits, LookupResolver
from junctionbox.services.container import Services
from junctionbox.services.lookups import LookupService
from junctionbox.services.outbound_request import MASK, PreparedRequest, RequestBuilder
from junctionbox.services.outgoing_auth import (
    OAUTH2_PLACEHOLDER,
    OAuthTokenCache,
    OAuthTokenError,
)
from junctionbox.testing import Behaviour, RecordingSink

SECRET = generate_secret()
MSG = "msg_testmessage0001"
RAW = b'{"order":  {"id": "o-1", "total": 12.50},\n "name": " Ada ", "g": "F", "u": "\xc3\xa9"}'
TOKEN_BODY = b'{"access_token": "tok-AAA", "token_type": "Bearer", "expires_in": 3600}'


class TableLookups(LookupService):
    """Lookup tables in memory, per org (the real service reads them from the store)."""

    def __init__(self, tables: dict[int, dict[str, dict[str, str]]]) -> None:  # no database
        self.tables = tables
        self.calls = 0

    async def resolver(self, org_id: int) -> LookupResolver:
        self.calls += 1
        return _Resolver(self.tables.get(org_id, {}))


class _Resolver:
    def __init__(self, tables: Mapping[str, Mapping[str, str]]) -> None:
        self._tables = tables

    def resolve(self, lookup_type: str, key: str) -> str | None:
        return self._tables.get(lookup_type, {}).get(key)


def stored(
    url: str,
    *,
    version: int = 1,
    keys: tuple[SigningKey, ...] | None = None,
    integration_id: str | None = None,
    **overrides: Any,
) -> StoredIntegration:
    """A stored integration; a fresh id unless given (plans are cached per id+version)."""
    body = {"name": "orders", "eventType": "order.created", "targetUrl": url, **overrides}
    now = datetime.now(UTC)
    return StoredIntegration(
        id=integration_id or new_id("int"),
        org_id=7,
        version=version,
        integration=parse_integration(body),
        signing_keys=keys if keys is not None else (SigningKey(SECRET, now),),
        consecutive_failures=0,
        disabled_reason=None,
        disabled_at=None,
        created_by=None,
        created_at=now,
        updated_at=now,
    )


def event(payload: bytes = RAW, content_type: str | None = "application/json") -> StoredEvent:
    return StoredEvent(
        org_id=7,
        stream="default",
        partition=0,
        offset=42,
        event_id="evt_1",
        source="shop",
        type="order.created",
        subject="o-1",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        received_at=datetime.now(UTC),
        partition_key=None,
        data_content_type=content_type,
        data_schema=None,
        extensions={},
        payload=payload,
    )


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as s:
        yield s


@pytest.fixture
async def http(sink: RecordingSink) -> AsyncIterator[GuardedHttpClient]:
    async with GuardedHttpClient(
        parse_allowlist(sink.allowlist_entry), timeout_seconds=2.0
    ) as client:
        yield client


@pytest.fixture
def lookups() -> TableLookups:
    return TableLookups({7: {"GENDER": {"F": "female", "M": "male"}}})


@pytest.fixture
def builder(lookups: TableLookups, http: GuardedHttpClient) -> RequestBuilder:
    return RequestBuilder(lookups, http)


async def build(
    builder: RequestBuilder,
    integration: StoredIntegration,
    evt: StoredEvent | None = None,
    **kwargs: Any,
) -> PreparedRequest:
    action = integration.integration.effective_actions()[0]
    kwargs.setdefault("now", datetime.now(UTC))
    return await builder.build(integration, action, evt or event(), message_id=MSG, **kwargs)


async def send(http: GuardedHttpClient, request: PreparedRequest) -> None:
    result = await HttpDestination(http).execute(request, timeout=2.0)
    assert result.status == 200


def headers_of(sink: RecordingSink) -> dict[str, str]:
    return {k.lower(): v for k, v in sink.requests[-1].headers}


# ---------------------------------------------------------------- body and signature


async def test_raw_event_bytes_are_sent_exactly_and_verify_with_standardwebhooks(
    sink: RecordingSink, http: GuardedHttpClient, builder: RequestBuilder
) -> None:
    now = datetime.now(UTC)
    request = await build(builder, stored(sink.url("/hook")), now=now)
    assert request.body is RAW  # no parse, no copy
    assert request.transformed is None
    assert request.method == "POST"
    await send(http, request)
    received = sink.requests[-1]
    assert received.body == RAW
    got = headers_of(sink)
    assert got["content-type"] == "application/json"
    assert got["user-agent"] == "junctionbox"
    assert got["webhook-id"] == MSG
    assert got["webhook-timestamp"] == str(int(now.timestamp()))
    assert got["webhook-signature"] == request.signature
    Webhook(SECRET).verify(received.body, got)  # raises when it does not verify


async def test_non_json_event_keeps_its_content_type_and_default_is_json(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(sink.url("/hook"))
    text = await build(builder, integration, event(b"a,b\n1,2\n", "text/csv"))
    assert text.header("content-type") == "text/csv"
    assert text.body == b"a,b\n1,2\n"
    untyped = await build(builder, integration, event(b'{"x":1}', None))
    assert untyped.header("content-type") == "application/json"


async def test_retry_keeps_webhook_id_with_fresh_timestamp_and_signature(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(sink.url("/hook"))
    first = await build(builder, integration, now=datetime(2026, 1, 1, tzinfo=UTC))
    retry = await build(builder, integration, now=datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    assert first.header("webhook-id") == retry.header("webhook-id") == MSG
    assert (
        int(retry.header("webhook-timestamp") or 0) - int(first.header("webhook-timestamp") or 0)
        == 30
    )
    assert first.signature != retry.signature


async def test_rotation_overlap_signs_with_both_keys_and_drops_expired(
    sink: RecordingSink, http: GuardedHttpClient, builder: RequestBuilder
) -> None:
    now = datetime.now(UTC)
    old, new, gone = generate_secret(), generate_secret(), generate_secret()
    keys = (
        SigningKey(gone, now - timedelta(days=9), now - timedelta(seconds=1)),
        SigningKey(old, now - timedelta(days=2), now + timedelta(hours=1)),
        SigningKey(new, now),
    )
    request = await build(builder, stored(sink.url("/hook"), keys=keys), now=now)
    assert request.signature is not None
    assert len(request.signature.split()) == 2
    await send(http, request)
    got, body = headers_of(sink), sink.requests[-1].body
    Webhook(old).verify(body, got)
    Webhook(new).verify(body, got)
    with pytest.raises(Exception, match="signature"):
        Webhook(gone).verify(body, got)


async def test_ed25519_signs_v1a(sink: RecordingSink, builder: RequestBuilder) -> None:
    private, public = generate_keypair()
    now = datetime.now(UTC)
    integration = stored(
        sink.url("/hook"),
        keys=(SigningKey(private, now),),
        signing={"algorithm": "ED25519"},
    )
    request = await build(builder, integration, now=now)
    assert request.signature is not None
    assert request.signature.startswith("v1a,")
    verify(
        MSG,
        request.header("webhook-timestamp") or "",
        request.body,
        request.signature,
        [public],
        now=now.timestamp(),
    )


async def test_hmac_algorithm_never_signs_with_an_ed25519_key(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    private, _ = generate_keypair()
    now = datetime.now(UTC)
    integration = stored(sink.url("/hook"), keys=(SigningKey(private, now),))
    with pytest.raises(ValidationError, match="no active HMAC_SHA256 signing key"):
        await build(builder, integration, now=now)


async def test_signing_none_sends_id_and_timestamp_only(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(sink.url("/hook"), signing={"algorithm": "NONE"})
    request = await build(builder, integration)
    assert request.signature is None
    assert request.header("webhook-signature") is None
    assert request.header("webhook-id") == MSG
    assert request.header("webhook-timestamp") is not None


async def test_hex_header_is_seed_001_hmac_of_the_body_with_the_current_key(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    now = datetime.now(UTC)
    old, new = generate_secret(), generate_secret()
    keys = (
        SigningKey(old, now - timedelta(days=1), now + timedelta(hours=1)),
        SigningKey(new, now),
    )
    integration = stored(sink.url("/hook"), keys=keys, signing={"hexHeader": True})
    request = await build(builder, integration, now=now)
    expected = hmac.new(new.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.header(HEX_SIGNATURE_HEADER) == expected


async def test_correlation_id_header_and_crlf_is_refused(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(sink.url("/hook"))
    request = await build(builder, integration, correlation_id="corr-1")
    assert request.header("x-correlation-id") == "corr-1"
    with pytest.raises(ValidationError):
        await build(builder, integration, correlation_id="x\r\nInjected: 1")


# ---------------------------------------------------------------- transformations


SIMPLE_MAPPINGS = [
    {"sourceField": "order.id", "targetField": "ref"},
    {"sourceField": "name", "targetField": "customer.name", "transform": ["trim", "upper"]},
    {"sourceField": "g", "targetField": "customer.gender", "transform": "lookup",
     "lookupType": "GENDER"},
    {"staticValue": "v1", "targetField": "schema"},
]  # fmt: skip


async def test_simple_transformation_with_lookup_is_signed_over_the_sent_bytes(
    sink: RecordingSink, http: GuardedHttpClient, builder: RequestBuilder, lookups: TableLookups
) -> None:
    integration = stored(
        sink.url("/hook"), transformationMode="SIMPLE", fieldMappings=SIMPLE_MAPPINGS
    )
    request = await build(builder, integration)
    expected = {
        "ref": "o-1",
        "customer": {"name": "ADA", "gender": "female"},
        "schema": "v1",
    }
    assert request.transformed == expected
    assert request.body == orjson.dumps(expected)
    assert request.header("content-type") == "application/json"
    await send(http, request)
    Webhook(SECRET).verify(sink.requests[-1].body, headers_of(sink))
    # Tables change: the cached transformer reads the tables of the moment.
    lookups.tables[7]["GENDER"]["F"] = "woman"
    again = await build(builder, integration)
    assert again.transformed["customer"]["gender"] == "woman"


async def test_lookup_tables_are_fetched_only_when_a_mapping_uses_them(
    sink: RecordingSink, builder: RequestBuilder, lookups: TableLookups
) -> None:
    mappings = [{"sourceField": "order.id", "targetField": "ref"}]
    integration = stored(sink.url("/hook"), transformationMode="SIMPLE", fieldMappings=mappings)
    await build(builder, integration)
    assert lookups.calls == 0


async def test_jsonata_transformation_sees_context(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(
        sink.url("/hook"),
        transformationMode="JSONATA",
        transformScript='{"total": order.total, "type": $context.type, "org": $context.orgId}',
    )
    request = await build(builder, integration)
    assert request.transformed == {"total": 12.5, "type": "order.created", "org": 7}
    assert orjson.loads(request.body) == request.transformed


async def test_script_transformation_sees_payload_and_context(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    script = (
        "return {id: payload.order.id, msg: context.messageId, subject: context.subject,"
        " at: context.time, integration: context.integrationId, eventId: context.id};"
    )
    integration = stored(
        sink.url("/hook"),
        integration_id="int_test1",
        transformationMode="SCRIPT",
        transformScript=script,
    )
    request = await build(builder, integration)
    assert request.transformed == {
        "id": "o-1",
        "msg": MSG,
        "subject": "o-1",
        "at": "2026-01-02T03:04:05Z",
        "integration": "int_test1",
        "eventId": "evt_1",
    }


@pytest.mark.parametrize(
    ("mode", "config"),
    [
        ("SCRIPT", "throw new Error('boom');"),
        ("SCRIPT", "return undefined;"),
        ("JSONATA", '$error("bad order")'),
    ],
)
async def test_transformation_failure_is_an_expression_runtime_error(
    sink: RecordingSink, builder: RequestBuilder, mode: str, config: str
) -> None:
    integration = stored(sink.url("/hook"), transformationMode=mode, transformScript=config)
    with pytest.raises(ExpressionRuntimeError):
        await build(builder, integration)


async def test_endless_script_is_stopped_without_blocking_the_event_loop(
    sink: RecordingSink, lookups: TableLookups, http: GuardedHttpClient
) -> None:
    builder = RequestBuilder(lookups, http, limits=Limits(time_limit=0.3))
    integration = stored(
        sink.url("/hook"), transformationMode="SCRIPT", transformScript="while (true) {}"
    )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ExpressionRuntimeError):
            await build(builder, integration)
    finally:
        ticker.cancel()
    assert ticks >= 5  # the loop kept serving other deliveries meanwhile


async def test_simple_lookup_miss_with_on_miss_error_fails(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    mappings = [
        {"sourceField": "name", "targetField": "x", "transform": "lookup",
         "lookupType": "GENDER", "transformOptions": {"onMiss": "error"}}
    ]  # fmt: skip
    integration = stored(sink.url("/hook"), transformationMode="SIMPLE", fieldMappings=mappings)
    with pytest.raises(ExpressionRuntimeError, match="no entry"):
        await build(builder, integration)


async def test_transforming_non_json_data_fails_as_transformation(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(sink.url("/hook"), transformationMode="JSONATA", transformScript="$")
    with pytest.raises(ExpressionRuntimeError, match="not valid JSON"):
        await build(builder, integration, event(b"{not json", "application/json"))


async def test_compiled_plan_is_cached_per_version_and_drafts_are_not(
    sink: RecordingSink, lookups: TableLookups, http: GuardedHttpClient
) -> None:
    cache = ExpressionCache()
    builder = RequestBuilder(lookups, http, expressions=cache)
    body = {"transformationMode": "JSONATA", "transformScript": "{'a': order.id}"}
    v1 = stored(sink.url("/hook"), integration_id="int_c", **body)
    for _ in range(3):
        await build(builder, v1)
    # Compiled once; later builds are served by the builder's own dict in front of the cache.
    assert cache.misses == 1
    v2 = stored(
        sink.url("/hook"),
        version=2,
        integration_id="int_c",
        transformationMode="JSONATA",
        transformScript="1",
    )
    assert (await build(builder, v2)).transformed == 1
    assert cache.misses == 2
    draft = stored(
        sink.url("/hook"),
        version=0,
        integration_id="int_c",
        transformationMode="JSONATA",
        transformScript="2",
    )
    assert (await build(builder, draft)).transformed == 2
    assert cache.misses == 2
    assert len(cache) == 2


async def test_each_action_uses_its_own_target_method_and_transformation(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(
        sink.url("/hook"),
        actions=[
            {"name": "raw"},
            {
                "targetUrl": sink.url("/second"),
                "httpMethod": "PUT",
                "transformationMode": "JSONATA",
                "transformScript": "{'id': order.id}",
            },
        ],
    )
    first, second = integration.integration.effective_actions()
    now = datetime.now(UTC)
    a = await builder.build(integration, first, event(), message_id=MSG, now=now)
    b = await builder.build(integration, second, event(), message_id=MSG, now=now)
    assert (a.method, a.url, a.body) == ("POST", sink.url("/hook"), RAW)
    assert (b.method, b.url, b.transformed) == ("PUT", sink.url("/second"), {"id": "o-1"})


# ---------------------------------------------------------------- static auth


async def test_api_key_header(sink: RecordingSink, builder: RequestBuilder) -> None:
    integration = stored(
        sink.url("/hook"),
        outgoingAuthType="API_KEY",
        outgoingAuthConfig={"name": "X-Api-Key", "value": "key-123456789"},
    )
    request = await build(builder, integration)
    assert request.header("x-api-key") == "key-123456789"
    assert ("X-Api-Key", MASK) in request.masked_headers()
    assert "key-123456789" not in request.curl()


async def test_api_key_in_query_is_encoded_and_masked(
    sink: RecordingSink, http: GuardedHttpClient, builder: RequestBuilder
) -> None:
    secret = "k+y/1=2&3 é%"
    integration = stored(
        sink.url("/hook?existing=1"),
        outgoingAuthType="API_KEY",
        outgoingAuthConfig={"name": "api key", "value": secret, "in": "query"},
    )
    request = await build(builder, integration)
    await send(http, request)
    assert parse_qsl(sink.requests[-1].query) == [("existing", "1"), ("api key", secret)]
    assert request.masked_url() == sink.url("/hook?existing=1&api%20key=") + MASK
    for shown in (request.masked_url(), request.curl()):
        assert "k%2By" not in shown
        assert secret not in shown


async def test_bearer_and_basic(sink: RecordingSink, builder: RequestBuilder) -> None:
    bearer = stored(
        sink.url("/hook"), outgoingAuthType="BEARER", outgoingAuthConfig={"token": "tkn-XYZ-123"}
    )
    request = await build(builder, bearer)
    assert request.header("authorization") == "Bearer tkn-XYZ-123"
    assert ("authorization", "Bearer ****") in request.masked_headers()
    basic = stored(
        sink.url("/hook"),
        outgoingAuthType="BASIC",
        outgoingAuthConfig={"username": "ada", "password": "pä:ss"},
    )
    request = await build(builder, basic)
    value = request.header("authorization") or ""
    assert value.startswith("Basic ")
    assert base64.b64decode(value[6:]).decode() == "ada:pä:ss"
    assert ("authorization", "Basic ****") in request.masked_headers()
    assert value[6:] not in request.curl()


async def test_custom_headers(sink: RecordingSink, builder: RequestBuilder) -> None:
    integration = stored(
        sink.url("/hook"),
        outgoingAuthType="CUSTOM_HEADERS",
        outgoingAuthConfig={"headers": {"X-Tenant": "acme-tenant", "X-Secret": "s3cr3t-value"}},
    )
    request = await build(builder, integration)
    assert request.header("x-tenant") == "acme-tenant"
    assert request.header("x-secret") == "s3cr3t-value"
    masked = dict(request.masked_headers())
    assert masked["X-Tenant"] == MASK
    assert masked["X-Secret"] == MASK
    assert masked["webhook-id"] == MSG  # everything else is shown


async def test_custom_content_type_replaces_ours(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    integration = stored(
        sink.url("/hook"),
        outgoingAuthType="CUSTOM_HEADERS",
        outgoingAuthConfig={"headers": {"Content-Type": "application/vnd.acme+json"}},
    )
    request = await build(builder, integration)
    assert [v for k, v in request.headers if k.lower() == "content-type"] == [
        "application/vnd.acme+json"
    ]


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("API_KEY", {"name": "X-Key", "value": "SECRET-api-key"}),
        ("API_KEY", {"name": "key", "value": "SECRET k+/&=", "in": "query"}),
        ("BEARER", {"token": "SECRET-bearer"}),
        ("BASIC", {"username": "user", "password": "SECRET-password"}),
        ("CUSTOM_HEADERS", {"headers": {"X-A": "SECRET-a", "X-B": "SECRET-b"}}),
        ("OAUTH2", {"tokenUrl": "/token", "clientId": "cid", "clientSecret": "SECRET-cs"}),
    ],
)
async def test_no_credential_survives_masking(
    sink: RecordingSink, builder: RequestBuilder, kind: str, config: dict[str, Any]
) -> None:
    sink.on("/token", Behaviour(200, b'{"access_token": "SECRET-token"}'))
    if kind == "OAUTH2":
        config = {**config, "tokenUrl": sink.url("/token")}
    integration = stored(sink.url("/hook"), outgoingAuthType=kind, outgoingAuthConfig=config)
    request = await build(builder, integration)
    assert request.secret_values
    unmasked = request.curl(masked=False) + request.url
    masked = request.curl() + request.masked_url() + str(request.masked_headers())
    sent = [s for s in request.secret_values if s in unmasked or quote(s, safe="") in unmasked]
    assert sent  # the credential (or its encoded form) is really in the request ...
    for secret in request.secret_values:  # ... and in none of the shown forms
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            assert form not in masked
    if kind in ("BEARER", "BASIC", "OAUTH2"):
        assert f"{'Basic' if kind == 'BASIC' else 'Bearer'} {MASK}" in masked


# ---------------------------------------------------------------- curl


async def test_unmasked_curl_reproduces_the_request_exactly(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    payload = b'{"quote": "it\'s", "dollar": "$HOME", "bang": "!x", "nl": "a\\nb"}'
    integration = stored(
        sink.url("/hook?q=1"),
        outgoingAuthType="BEARER",
        outgoingAuthConfig={"token": "tok-'quoted'"},
    )
    request = await build(builder, integration, event(payload))
    assert "tok-'quoted'" not in request.curl()
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", request.curl(masked=False) + " -s -o /dev/null",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(10):
        _, err = await proc.communicate()
    assert proc.returncode == 0, err
    received = sink.requests[-1]
    assert received.body == payload
    assert received.query == "q=1"
    got = headers_of(sink)
    assert got["authorization"] == "Bearer tok-'quoted'"
    Webhook(SECRET).verify(received.body, got)
    assert shlex.split(request.curl())[:4] == ["curl", "-X", "POST", sink.url("/hook?q=1")]


# ---------------------------------------------------------------- OAuth2


def oauth_integration(sink: RecordingSink, version: int = 1, **config: Any) -> StoredIntegration:
    return stored(
        sink.url("/hook"),
        version=version,
        integration_id="int_oauth",
        outgoingAuthType="OAUTH2",
        outgoingAuthConfig={
            "tokenUrl": sink.url("/token"),
            "clientId": "client-1",
            "clientSecret": "cl/ent secret",
            "scope": ["orders.write", "orders.read"],
            **config,
        },
    )


async def test_oauth2_fetches_with_basic_client_auth_and_caches(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    sink.on("/token", Behaviour(200, TOKEN_BODY, {"Content-Type": "application/json"}))
    integration = oauth_integration(sink, audience="https://api.example")
    first = await build(builder, integration)
    second = await build(builder, integration)
    assert first.header("authorization") == second.header("authorization") == "Bearer tok-AAA"
    (token_request,) = sink.requests_to("/token")
    form = dict(parse_qsl(token_request.body.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "scope": "orders.write orders.read",
        "audience": "https://api.example",
    }
    assert token_request.header("content-type") == "application/x-www-form-urlencoded"
    basic = (token_request.header("authorization") or "").removeprefix("Basic ")
    assert base64.b64decode(basic).decode() == "client-1:cl%2Fent+secret"  # RFC 6749 2.3.1
    assert "tok-AAA" in first.secret_values
    for shown in (first.curl(), str(first.masked_headers())):
        assert "tok-AAA" not in shown
        assert "cl/ent secret" not in shown


async def test_oauth2_client_secret_post(sink: RecordingSink, builder: RequestBuilder) -> None:
    sink.on("/token", Behaviour(200, TOKEN_BODY))
    await build(builder, oauth_integration(sink, clientAuthMethod="client_secret_post"))
    (token_request,) = sink.requests_to("/token")
    form = dict(parse_qsl(token_request.body.decode()))
    assert form["client_id"] == "client-1"
    assert form["client_secret"] == "cl/ent secret"
    assert token_request.header("authorization") is None


async def test_oauth2_concurrent_builds_share_one_fetch(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    sink.on("/token", Behaviour(200, TOKEN_BODY, delay=0.2))
    integration = oauth_integration(sink)
    requests = await asyncio.gather(*(build(builder, integration) for _ in range(20)))
    assert {r.header("authorization") for r in requests} == {"Bearer tok-AAA"}
    assert len(sink.requests_to("/token")) == 1
    assert builder.oauth.fetches == 1


async def test_oauth2_token_expiry_and_invalidation_refetch(
    sink: RecordingSink, lookups: TableLookups, http: GuardedHttpClient
) -> None:
    clock = [1000.0]
    builder = RequestBuilder(lookups, http, oauth=OAuthTokenCache(http, clock=lambda: clock[0]))
    sink.on(
        "/token",
        Behaviour(200, b'{"access_token": "t1", "expires_in": 100}'),
        Behaviour(200, b'{"access_token": "t2", "expires_in": 100}'),
        Behaviour(200, b'{"access_token": "t3", "expires_in": 100}'),
    )
    integration = oauth_integration(sink)
    assert (await build(builder, integration)).header("authorization") == "Bearer t1"
    clock[0] += 89.0  # within expires_in minus the 10 s safety margin
    assert (await build(builder, integration)).header("authorization") == "Bearer t1"
    clock[0] += 2.0  # past it
    assert (await build(builder, integration)).header("authorization") == "Bearer t2"
    builder.invalidate_token(integration)  # the destination said 401
    assert (await build(builder, integration)).header("authorization") == "Bearer t3"
    assert len(sink.requests_to("/token")) == 3


@pytest.mark.parametrize(
    ("answer", "fresh_until"),
    [
        (b'{"access_token": "t1"}', 270.0),  # no expires_in: 300 s, 30 s margin
        (b'{"access_token": "t1", "expires_in": "7200"}', 7140.0),  # as a string; 60 s margin
        (b'{"access_token": "t1", "expires_in": 10}', 9.0),
    ],
)
async def test_oauth2_token_lifetime_and_safety_margin(
    sink: RecordingSink,
    lookups: TableLookups,
    http: GuardedHttpClient,
    answer: bytes,
    fresh_until: float,
) -> None:
    clock = [0.0]
    builder = RequestBuilder(lookups, http, oauth=OAuthTokenCache(http, clock=lambda: clock[0]))
    sink.on("/token", Behaviour(200, answer))
    integration = oauth_integration(sink)
    await build(builder, integration)
    clock[0] = fresh_until - 0.5
    await build(builder, integration)
    assert len(sink.requests_to("/token")) == 1
    clock[0] = fresh_until + 0.5
    await build(builder, integration)
    assert len(sink.requests_to("/token")) == 2


async def test_oauth2_token_survives_unrelated_new_version(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    sink.on("/token", Behaviour(200, TOKEN_BODY))
    await build(builder, oauth_integration(sink))
    renamed = stored(
        sink.url("/hook"),
        version=2,
        integration_id="int_oauth",
        name="renamed",
        outgoingAuthType="OAUTH2",
        outgoingAuthConfig=dict(oauth_integration(sink).integration.auth.settings)
        | {"clientSecret": "cl/ent secret"},
    )
    await build(builder, renamed)
    assert len(sink.requests_to("/token")) == 1
    changed = oauth_integration(sink, version=3, clientSecret="another secret")
    await build(builder, changed)
    assert len(sink.requests_to("/token")) == 2


async def test_oauth2_without_resolving_shows_a_placeholder(
    sink: RecordingSink, builder: RequestBuilder
) -> None:
    request = await build(builder, oauth_integration(sink), resolve_auth=False)
    assert request.header("authorization") == OAUTH2_PLACEHOLDER
    assert ("authorization", OAUTH2_PLACEHOLDER) in request.masked_headers()
    assert "cl/ent secret" not in request.curl(masked=False)  # never in the request at all
    assert sink.requests_to("/token") == []


@pytest.mark.parametrize(
    ("behaviour", "retryable", "message"),
    [
        (Behaviour(401, b'{"error": "invalid_client"}'), False, "HTTP 401 (invalid_client)"),
        (Behaviour(400, b'{"error": "cl/ent secret"}'), False, "HTTP 400"),
        (Behaviour(503), True, "HTTP 503"),
        (Behaviour(429), True, "HTTP 429"),
        (Behaviour(200, b'{"token_type": "Bearer"}'), False, "without a usable access_token"),
        (Behaviour(200, b'{"access_token": "bad\\r\\nInjected: 1"}'), False, "usable"),
        (Behaviour(200, b"<html>"), False, "usable"),
        (Behaviour.reset(), True, "ECONNRESET"),
    ],
)
async def test_oauth2_token_endpoint_failures(
    sink: RecordingSink,
    builder: RequestBuilder,
    behaviour: Behaviour,
    retryable: bool,
    message: str,
) -> None:
    sink.on("/token", behaviour)
    with pytest.raises(OAuthTokenError) as caught:
        await build(builder, oauth_integration(sink))
    assert caught.value.retryable is retryable
    assert message in caught.value.message
    assert "cl/ent secret" not in str(caught.value)
    assert "client-1" not in str(caught.value)
    # A failure is not cached: the next delivery asks again.
    sink.on("/token", Behaviour(200, TOKEN_BODY))
    assert (await build(builder, oauth_integration(sink))).header("authorization")


async def test_oauth2_token_endpoint_timeout(
    sink: RecordingSink, lookups: TableLookups, http: GuardedHttpClient
) -> None:
    builder = RequestBuilder(lookups, http, oauth=OAuthTokenCache(http, timeout_seconds=0.2))
    sink.on("/token", Behaviour.hang())
    with pytest.raises(OAuthTokenError) as caught:
        await build(builder, oauth_integration(sink))
    assert caught.value.retryable
    assert caught.value.kind is not None


async def test_oauth2_refused_token_url(sink: RecordingSink, builder: RequestBuilder) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    integration = oauth_integration(sink, tokenUrl=f"http://127.0.0.1:{port}/token")
    with pytest.raises(OAuthTokenError) as caught:
        await build(builder, integration)
    assert caught.value.retryable is False
    assert caught.value.message == f"OAuth2 token request failed: {REFUSED_MESSAGE}"


# ---------------------------------------------------------------- the real lookup service


async def test_simple_lookup_reads_the_event_tenants_tables_from_the_store(
    world: World, services: Services, sink: RecordingSink, http: GuardedHttpClient
) -> None:
    """SQLite and PostgreSQL: an org's entry, overridden by its unit's own."""
    client, user = world.client, world.headers["user_a"]
    for org, value in ((100, "female"), (101, "woman")):
        response = await client.post(
            f"/api/v1/lookups?orgId={org}",
            json={"type": "GENDER", "key": "F", "value": value},
            headers=user,
        )
        assert response.status_code == 201, response.text
    builder = RequestBuilder(services.lookups, http)
    integration = stored(
        sink.url("/hook"), transformationMode="SIMPLE", fieldMappings=SIMPLE_MAPPINGS
    )
    integration = replace(integration, org_id=100)
    action = integration.integration.effective_actions()[0]
    now = datetime.now(UTC)
    for org, expected in ((100, "female"), (101, "woman"), (200, "F")):  # 200: a miss
        request = await builder.build(
            integration, action, replace(event(), org_id=org), message_id=MSG, now=now
        )
        assert request.transformed["customer"]["gender"] == expected
