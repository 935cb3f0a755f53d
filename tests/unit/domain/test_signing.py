from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from junctionbox.domain.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    decode_secret,
    generate_keypair,
    generate_secret,
    public_key_for,
    sign,
    sign_hex,
    signed_content,
    verify,
    verify_headers,
    verify_hex,
    webhook_headers,
)
from junctionbox.errors import UnauthorizedError, ValidationError

# Published vectors of the Standard Webhooks reference libraries (python and go tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ED25519 = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_V1A = (
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)

BODY = b'{"type":"user.created","data":{"id":42,"name":"J\xc3\xb6rg"}}'
MSG = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
TS = 1_700_000_000


def _fixed(n: int) -> bytes:
    return bytes(range(n))


# ---------------------------------------------------------------- published vectors


def test_symmetric_test_vector() -> None:
    assert sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY, [VECTOR_SECRET]) == VECTOR_V1


def test_asymmetric_test_vector() -> None:
    assert sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY, [VECTOR_ED25519]) == VECTOR_V1A


def test_test_vectors_verify() -> None:
    header = f"{VECTOR_V1} {VECTOR_V1A}"
    verify(VECTOR_ID, str(VECTOR_TS), VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TS)
    public = public_key_for(VECTOR_ED25519)
    verify(VECTOR_ID, str(VECTOR_TS), VECTOR_BODY, VECTOR_V1A, [public], now=VECTOR_TS)


# ---------------------------------------------------------------- cross-check with the library


def test_our_signature_verifies_with_the_reference_library() -> None:
    secret = generate_secret()
    now = int(time.time())  # the library reads the wall clock itself
    headers = webhook_headers(MSG, now, BODY, [secret])
    assert Webhook(secret).verify(BODY, headers, json_parse=False) is None


def test_reference_library_signature_verifies_with_ours() -> None:
    secret = generate_secret(24)
    stamp = datetime.fromtimestamp(TS, UTC)
    theirs = Webhook(secret).sign(MSG, stamp, BODY.decode())
    headers = {"Webhook-Id": MSG, "Webhook-Timestamp": str(TS), "Webhook-Signature": theirs}
    verify_headers(headers, BODY, [secret], now=TS)
    assert theirs == sign(MSG, TS, BODY, [secret])


def test_reference_library_accepts_our_rotation_header() -> None:
    old, new = generate_secret(), generate_secret()
    now = int(time.time())
    headers = webhook_headers(MSG, now, BODY, [new, old, generate_keypair()[0]])
    Webhook(old).verify(BODY, headers, json_parse=False)
    Webhook(new).verify(BODY, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers, json_parse=False)


# ---------------------------------------------------------------- secrets and keys


def test_generated_secret_format() -> None:
    secret = generate_secret(token_bytes=_fixed)
    assert secret == "whsec_" + base64.b64encode(_fixed(32)).decode()
    assert decode_secret(secret) == _fixed(32)
    assert len(decode_secret(generate_secret(24))) == 24


@pytest.mark.parametrize("n", [23, 65])
def test_secret_size_outside_spec_is_rejected(n: int) -> None:
    with pytest.raises(ValidationError):
        generate_secret(n)


def test_secrets_differ() -> None:
    assert generate_secret() != generate_secret()


@pytest.mark.parametrize("bad", ["whsec_", "whsec_!!!notbase64!!!", ""])
def test_decode_secret_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValidationError):
        decode_secret(bad)


def test_decode_secret_accepts_unprefixed_and_unpadded() -> None:
    raw = decode_secret(VECTOR_SECRET)
    assert decode_secret(VECTOR_SECRET.removeprefix("whsec_")) == raw
    assert decode_secret(base64.b64encode(_fixed(25)).decode().rstrip("=")) == _fixed(25)


def test_keypair_format_and_derivation() -> None:
    private, public = generate_keypair(token_bytes=_fixed)
    assert private == "whsk_" + base64.b64encode(_fixed(32)).decode()
    assert public.startswith("whpk_")
    assert public == public_key_for(private)
    assert len(base64.b64decode(public.removeprefix("whpk_"))) == 32


def test_expanded_64_byte_private_key_is_accepted() -> None:
    seed = base64.b64decode(VECTOR_ED25519.removeprefix("whsk_"))
    public_raw = base64.b64decode(public_key_for(VECTOR_ED25519).removeprefix("whpk_"))
    expanded = "whsk_" + base64.b64encode(seed + public_raw).decode()
    assert sign(VECTOR_ID, VECTOR_TS, VECTOR_BODY, [expanded]) == VECTOR_V1A


def test_public_key_cannot_sign() -> None:
    _, public = generate_keypair()
    with pytest.raises(ValidationError, match="public"):
        sign(MSG, TS, BODY, [public])


def test_signing_needs_a_key() -> None:
    with pytest.raises(ValidationError):
        sign(MSG, TS, BODY, [])


# ---------------------------------------------------------------- signing


def test_signed_content_is_id_timestamp_and_raw_body() -> None:
    assert signed_content("msg_1", 5, b"\x00{\xff}") == b"msg_1.5.\x00{\xff}"


def test_v1_is_base64_hmac_of_the_signed_content() -> None:
    secret = generate_secret(token_bytes=_fixed)
    digest = hmac.new(_fixed(32), f"{MSG}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(MSG, TS, BODY, [secret]) == "v1," + base64.b64encode(digest).decode()


@given(key=st.binary(min_size=1, max_size=200), body=st.binary(max_size=300))
def test_v1_matches_the_standard_library_hmac_for_any_key_length(key: bytes, body: bytes) -> None:
    # Keys longer than SHA-256's 64-byte block are hashed first (RFC 2104).
    secret = "whsec_" + base64.b64encode(key).decode()
    digest = hmac.new(key, f"{MSG}.{TS}.".encode() + body, hashlib.sha256).digest()
    assert sign(MSG, TS, body, [secret]) == "v1," + base64.b64encode(digest).decode()


def test_rotation_signs_with_every_key_in_order() -> None:
    old, new = generate_secret(), generate_secret()
    private, _ = generate_keypair()
    header = sign(MSG, TS, BODY, [new, old, private])
    parts = header.split(" ")
    assert parts[0] == sign(MSG, TS, BODY, [new])
    assert parts[1] == sign(MSG, TS, BODY, [old])
    assert parts[2].startswith("v1a,")


@pytest.mark.parametrize("bad_id", ["", "msg.1", "msg\n1", "m\u00e9g"])
def test_message_id_that_could_shift_the_signed_content_is_refused(bad_id: str) -> None:
    with pytest.raises(ValidationError):
        sign(bad_id, TS, BODY, [VECTOR_SECRET])


def test_negative_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError):
        sign(MSG, -1, BODY, [VECTOR_SECRET])


def test_headers_helper() -> None:
    headers = webhook_headers(MSG, TS, BODY, [VECTOR_SECRET])
    assert headers == {
        HEADER_ID: MSG,
        HEADER_TIMESTAMP: str(TS),
        HEADER_SIGNATURE: sign(MSG, TS, BODY, [VECTOR_SECRET]),
    }
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}


# ---------------------------------------------------------------- verification


def _verify(
    header: str, keys: list[str], *, now: float = TS, ts: str = str(TS), body: bytes = BODY
) -> None:
    verify(MSG, ts, body, header, keys, now=now)


def test_any_matching_signature_in_the_header_is_enough() -> None:
    secret = generate_secret()
    good = sign(MSG, TS, BODY, [secret])
    header = f"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {good} garbage v1,"
    _verify(header, [secret])


def test_receiver_with_old_and_new_secret_accepts_either() -> None:
    old, new = generate_secret(), generate_secret()
    _verify(sign(MSG, TS, BODY, [old]), [new, old])
    _verify(sign(MSG, TS, BODY, [new]), [new, old])


def test_wrong_secret_is_unauthorized() -> None:
    header = sign(MSG, TS, BODY, [generate_secret()])
    with pytest.raises(UnauthorizedError, match="no matching"):
        _verify(header, [generate_secret()])


def test_tampered_body_is_unauthorized() -> None:
    secret = generate_secret()
    header = sign(MSG, TS, BODY, [secret])
    with pytest.raises(UnauthorizedError):
        _verify(header, [secret], body=BODY + b" ")


def test_reserialised_body_is_unauthorized() -> None:
    secret = generate_secret()
    header = sign(MSG, TS, b'{"a": 1}', [secret])
    with pytest.raises(UnauthorizedError):
        _verify(header, [secret], body=b'{"a":1}')


def test_asymmetric_verifies_with_public_or_private_key() -> None:
    private, public = generate_keypair()
    header = sign(MSG, TS, BODY, [private])
    _verify(header, [public])
    _verify(header, [private])
    with pytest.raises(UnauthorizedError):
        _verify(header, [generate_keypair()[1]])


def test_versions_do_not_cross() -> None:
    # a v1 entry is never checked against an ed25519 key, nor v1a against an HMAC secret
    secret = generate_secret()
    v1 = sign(MSG, TS, BODY, [secret])
    with pytest.raises(UnauthorizedError):
        _verify("v1a," + v1.removeprefix("v1,"), [secret])
    private, public = generate_keypair()
    v1a = sign(MSG, TS, BODY, [private])
    with pytest.raises(UnauthorizedError):
        _verify("v1," + v1a.removeprefix("v1a,"), [public])


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_timestamp_tolerance_is_five_minutes_either_way(offset: int, ok: bool) -> None:
    secret = generate_secret()
    header = sign(MSG, TS, BODY, [secret])
    if ok:
        _verify(header, [secret], now=TS + offset)
    else:
        with pytest.raises(UnauthorizedError, match="tolerance"):
            _verify(header, [secret], now=TS + offset)


def test_custom_tolerance() -> None:
    secret = generate_secret()
    header = sign(MSG, TS, BODY, [secret])
    with pytest.raises(UnauthorizedError):
        verify(MSG, str(TS), BODY, header, [secret], now=TS + 61, tolerance=60)


@pytest.mark.parametrize("ts", ["", "abc", "1700000000.5", "-1700000000", "1e9", " 1700000000"])
def test_non_integer_timestamp_is_unauthorized(ts: str) -> None:
    with pytest.raises(UnauthorizedError, match="timestamp"):
        _verify("v1,AAAA", [VECTOR_SECRET], ts=ts)


def test_dotted_message_id_is_unauthorized() -> None:
    with pytest.raises(UnauthorizedError, match="webhook-id"):
        verify("msg.1", str(TS), BODY, "v1,AAAA", [VECTOR_SECRET], now=TS)


@pytest.mark.parametrize("missing", [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE])
def test_missing_header_is_unauthorized(missing: str) -> None:
    headers = webhook_headers(MSG, TS, BODY, [VECTOR_SECRET])
    del headers[missing]
    with pytest.raises(UnauthorizedError, match="missing"):
        verify_headers(headers, BODY, [VECTOR_SECRET], now=TS)


def test_malformed_configured_key_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        _verify(sign(MSG, TS, BODY, [VECTOR_SECRET]), ["whsec_%%%"])


@given(body=st.binary(max_size=256), ts=st.integers(0, 10**10))
def test_sign_then_verify_roundtrip(body: bytes, ts: int) -> None:
    header = sign(MSG, ts, body, [VECTOR_SECRET])
    verify(MSG, str(ts), body, header, [VECTOR_SECRET], now=ts)


@given(header=st.text(max_size=120))
def test_arbitrary_signature_header_never_crashes(header: str) -> None:
    with pytest.raises(UnauthorizedError):
        _verify(header, [VECTOR_SECRET, public_key_for(VECTOR_ED25519)])


# ---------------------------------------------------------------- seed 001's hex variant


def test_hex_signature_matches_seed_001_create_hmac() -> None:
    secret = "shared-secret"
    expected = hmac.new(b"shared-secret", BODY, hashlib.sha256).hexdigest()
    assert sign_hex(BODY, secret) == expected
    assert len(expected) == 64


def test_hex_verify() -> None:
    signature = sign_hex(BODY, "s3cret")
    assert verify_hex(BODY, signature, "s3cret")
    assert verify_hex(BODY, signature.upper(), "s3cret")
    assert not verify_hex(BODY, signature, "other")
    assert not verify_hex(BODY + b"x", signature, "s3cret")
    assert not verify_hex(BODY, signature[:-1], "s3cret")
    assert not verify_hex(BODY, "", "s3cret")
