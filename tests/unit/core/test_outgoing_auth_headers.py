"""Outgoing auth pieces and the prepared request's masking and curl rendering (no I/O)."""

from __future__ import annotations

import base64
import shlex
import subprocess
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from junctionbox.domain.outbound import AuthType, OutgoingAuth, parse_integration
from junctionbox.errors import ValidationError
from junctionbox.services.outbound_request import MASK, PreparedRequest
from junctionbox.services.outgoing_auth import (
    RESERVED_HEADERS,
    check_header,
    static_auth,
    validate_auth,
    with_query,
)


def auth_of(kind: str, config: dict[str, Any]) -> OutgoingAuth:
    body = {
        "name": "n",
        "eventType": "e",
        "targetUrl": "https://hooks.example.com/x",
        "outgoingAuthType": kind,
        "outgoingAuthConfig": config,
    }
    return parse_integration(body).auth


def test_none_adds_nothing() -> None:
    auth = static_auth(OutgoingAuth(), "int_1")
    assert (auth.headers, auth.query, auth.secret_values, auth.oauth) == ((), (), (), None)


def test_api_key_header_and_query() -> None:
    header = static_auth(auth_of("API_KEY", {"name": "X-Key", "value": "v1"}), "int_1")
    assert header.headers == (("X-Key", "v1"),)
    assert header.query == ()
    query = static_auth(auth_of("API_KEY", {"name": "key", "value": "v1", "in": "query"}), "int_1")
    assert query.query == (("key", "v1"),)
    assert query.headers == ()
    assert query.secret_values == ("v1",)


def test_api_key_accepts_other_tools_spellings() -> None:
    auth = static_auth(auth_of("API_KEY", {"headerName": "X-Key", "apiKey": "abc"}), "int_1")
    assert auth.headers == (("X-Key", "abc"),)


def test_bearer_and_basic() -> None:
    bearer = static_auth(auth_of("BEARER", {"token": "t0k"}), "int_1")
    assert bearer.headers == (("authorization", "Bearer t0k"),)
    basic = static_auth(auth_of("BASIC", {"username": "u", "password": "p w"}), "int_1")
    ((name, value),) = basic.headers
    blob = value.removeprefix("Basic ")
    assert (name, base64.b64decode(blob)) == ("authorization", b"u:p w")
    assert set(basic.secret_values) == {"p w", blob}  # the encoded form is a credential too


def test_custom_headers_are_all_secret() -> None:
    auth = static_auth(auth_of("CUSTOM_HEADERS", {"headers": {"X-A": "1", "X-B": "two"}}), "i")
    assert auth.headers == (("X-A", "1"), ("X-B", "two"))
    assert auth.secret_values == ("1", "two")


def test_custom_headers_cannot_forge_signature_headers() -> None:
    auth = OutgoingAuth(AuthType.CUSTOM_HEADERS, {}, {"headers": {"Webhook-Signature": "v1,x"}})
    with pytest.raises(ValidationError, match="cannot be set"):
        static_auth(auth, "int_1")
    assert [p.loc for p in validate_auth(auth)] == [
        ("body", "outgoingAuthConfig", "headers", "Webhook-Signature")
    ]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature", "host"} <= RESERVED_HEADERS


def test_oauth2_client_and_cache_key() -> None:
    config = {
        "tokenUrl": "https://auth.example.com/token",
        "clientId": "cid",
        "clientSecret": "cs",
        "scope": "a b",
        "extraParams": {"resource": "r"},
    }
    auth = static_auth(auth_of("OAUTH2", config), "int_1")
    assert auth.oauth is not None
    assert auth.headers == ()
    assert auth.oauth.form == (
        ("grant_type", "client_credentials"),
        ("scope", "a b"),
        ("resource", "r"),
    )
    assert auth.oauth.method == "client_secret_basic"
    assert auth.secret_values == ("cs",)
    assert "cs" not in auth.oauth.cache_key
    same = static_auth(auth_of("OAUTH2", config), "int_1").oauth
    other = static_auth(auth_of("OAUTH2", {**config, "clientSecret": "cs2"}), "int_1").oauth
    elsewhere = static_auth(auth_of("OAUTH2", config), "int_2").oauth
    assert same is not None
    assert other is not None
    assert elsewhere is not None
    assert same.cache_key == auth.oauth.cache_key
    assert len({auth.oauth.cache_key, other.cache_key, elsewhere.cache_key}) == 3


def test_validate_auth_problems() -> None:
    assert validate_auth(auth_of("BASIC", {"username": "a:b", "password": "p"}))[0].loc[-1] == (
        "username"
    )
    oauth = auth_of(
        "OAUTH2",
        {
            "tokenUrl": "https://a.example/t",
            "clientId": "c",
            "clientSecret": "s",
            "clientAuthMethod": "private_key_jwt",
            "scope": 3,
            "extraParams": {"x": 1},
        },
    )
    assert [p.loc[-1] for p in validate_auth(oauth)] == [
        "clientAuthMethod",
        "scope",
        "extraParams",
    ]
    assert validate_auth(auth_of("API_KEY", {"name": "Host", "value": "v"}))[0].message == (
        "is a reserved header name"
    )
    assert validate_auth(auth_of("BEARER", {"token": "t"})) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h.example/p", "https://h.example/p?k=a%2Bb%20c%26d%3D%2F%C3%A9"),
        ("https://h.example/p?x=1", "https://h.example/p?x=1&k=a%2Bb%20c%26d%3D%2F%C3%A9"),
        (
            "https://h.example/p?x=1#frag",
            "https://h.example/p?x=1&k=a%2Bb%20c%26d%3D%2F%C3%A9#frag",
        ),
    ],
)
def test_with_query_encodes(url: str, expected: str) -> None:
    result = with_query(url, [("k", "a+b c&d=/é")])
    assert result == expected
    assert dict(parse_qsl(urlsplit(result).query))["k"] == "a+b c&d=/é"


def test_check_header_refuses_injection() -> None:
    check_header("X-Ok", "fine value")
    for name, value in [("X-A", "a\r\nB: c"), ("X-A", "a\nb"), ("Bad Name", "v"), ("X", "\x00")]:
        with pytest.raises(ValidationError):
            check_header(name, value)


# ---------------------------------------------------------------- masking and curl


def prepared(body: bytes = b'{"a": "it\'s $HOME"}', **kwargs: Any) -> PreparedRequest:
    values: dict[str, Any] = {
        "method": "POST",
        "url": "https://h.example/p?x=1&key=s%2Bcret%20key",
        "headers": [
            ("content-type", "application/json"),
            ("webhook-id", "msg_1"),
            ("webhook-signature", "v1,abc="),
            ("authorization", "Bearer tok-123"),
            ("X-Other", "tok-123"),
        ],
        "body": body,
        "signature": "v1,abc=",
        "transformed": None,
        "secret_values": ("s+cret key", "tok-123"),
    }
    values.update(kwargs)
    return PreparedRequest(**values)


def test_masked_headers_and_url() -> None:
    request = prepared()
    assert request.masked_headers() == [
        ("content-type", "application/json"),
        ("webhook-id", "msg_1"),
        ("webhook-signature", "v1,abc="),
        ("authorization", f"Bearer {MASK}"),
        ("X-Other", MASK),
    ]
    assert request.masked_url() == f"https://h.example/p?x=1&key={MASK}"
    assert request.headers[3] == ("authorization", "Bearer tok-123")  # the original is kept


def test_short_credentials_mask_only_their_own_header() -> None:
    request = prepared(
        url="https://h.example/p?n=1&k=1&a=11",
        headers=[("webhook-timestamp", "1700000001"), ("X-Flag", "1"), ("X-Other", "21")],
        secret_values=("1",),
    )
    assert request.masked_headers() == [
        ("webhook-timestamp", "1700000001"),
        ("X-Flag", MASK),
        ("X-Other", "21"),
    ]
    assert request.masked_url() == f"https://h.example/p?n={MASK}&k={MASK}&a=11"


def test_long_credentials_are_masked_inside_other_text() -> None:
    request = prepared(
        url="https://h.example/tok-12345678/p",
        headers=[("X-Trace", "prefix tok-12345678 suffix")],
        secret_values=("tok-12345678",),
    )
    assert request.masked_headers() == [("X-Trace", MASK)]
    assert request.masked_url() == f"https://h.example/{MASK}/p"


def test_without_secrets_nothing_is_masked() -> None:
    request = prepared(secret_values=())
    assert request.masked_headers() == request.headers
    assert request.masked_url() == request.url


def test_curl_round_trips_through_the_shell() -> None:
    request = prepared()
    argv = shlex.split(request.curl(masked=False))
    assert argv[:4] == ["curl", "-X", "POST", request.url]
    assert argv[argv.index("--data-binary") + 1] == '{"a": "it\'s $HOME"}'
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-H"] == [
        f"{k}: {v}" for k, v in request.headers
    ]
    masked = request.curl()
    assert "tok-123" not in masked
    assert "s%2Bcret" not in masked
    assert "s+cret" not in masked


def test_curl_without_body_has_no_data() -> None:
    assert "--data-binary" not in prepared(body=b"").curl()


def test_curl_pipes_bytes_a_shell_argument_cannot_hold() -> None:
    body = b"\x00\xff'%s\\n\n"
    command = prepared(body=body).curl()
    assert command.endswith("--data-binary @-")
    printf = command.split(" | ", 1)[0]
    produced = subprocess.run(["sh", "-c", printf], capture_output=True, timeout=5, check=True)
    assert produced.stdout == body
