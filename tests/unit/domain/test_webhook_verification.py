"""Every inbound verification scheme against reference vectors and the senders' own libraries."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import stripe
from standardwebhooks.webhooks import Webhook

from junctionbox.domain import signing
from junctionbox.domain.webhook_verification import (
    GENERIC_MESSAGE,
    Encoding,
    Scheme,
    VerificationFailed,
    Verified,
    Verifier,
    check_secret,
    generate_secret,
    parse_stripe_header,
    sign_hmac,
    stripe_header,
    verify,
)

# The Standard Webhooks reference vector (the spec's libraries test with it).
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# GitHub's documented example ("Validating webhook deliveries").
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

STANDARD = Verifier(Scheme.STANDARD_WEBHOOKS)
NOW = float(SW_TIMESTAMP)


def sw_headers(
    msg_id: str = SW_ID, ts: int = SW_TIMESTAMP, sig: str = SW_SIGNATURE
) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def check(
    verifier: Verifier,
    headers: dict[str, str],
    body: bytes,
    secrets: list[str],
    now: float = NOW,
    tolerance: float = 300,
) -> Verified:
    return verify(verifier, headers, body, secrets, now=now, tolerance=tolerance)


def refused(
    verifier: Verifier, headers: dict[str, str], body: bytes, secrets: list[str], now: float = NOW
) -> str:
    with pytest.raises(VerificationFailed) as caught:
        check(verifier, headers, body, secrets, now)
    assert caught.value.message == GENERIC_MESSAGE  # the sender never learns which part failed
    assert caught.value.status == 401
    return caught.value.reason


# ---------------------------------------------------------------- Standard Webhooks


def test_standard_webhooks_reference_vector() -> None:
    got = check(STANDARD, sw_headers(), SW_BODY, [SW_SECRET])
    assert got == Verified(SW_ID, SW_TIMESTAMP)


def test_the_reference_library_produces_the_vector_we_accept() -> None:
    sent_at = datetime.fromtimestamp(SW_TIMESTAMP, UTC)
    assert Webhook(SW_SECRET).sign(SW_ID, sent_at, SW_BODY.decode()) == SW_SIGNATURE


def test_signed_now_by_the_reference_library() -> None:
    secret = signing.generate_secret()
    now = int(time.time())
    body = b'{"type": "invoice.paid", "amount": 12}'
    sig = Webhook(secret).sign("msg_abc", datetime.fromtimestamp(now, UTC), body.decode())
    got = check(STANDARD, sw_headers("msg_abc", now, sig), body, [secret], now=now)
    assert got.message_id == "msg_abc"


def test_svix_header_names_are_accepted() -> None:
    headers = {
        "svix-id": SW_ID,
        "svix-timestamp": str(SW_TIMESTAMP),
        "svix-signature": SW_SIGNATURE,
    }
    assert check(STANDARD, headers, SW_BODY, [SW_SECRET]).message_id == SW_ID


def test_v1a_ed25519_with_the_senders_public_key() -> None:
    private, public = signing.generate_keypair()
    sig = signing.sign("msg_1", SW_TIMESTAMP, SW_BODY, [private])
    assert sig.startswith("v1a,")
    assert check(STANDARD, sw_headers("msg_1", sig=sig), SW_BODY, [public]).message_id == "msg_1"
    other_public = signing.generate_keypair()[1]
    refused(STANDARD, sw_headers("msg_1", sig=sig), SW_BODY, [other_public])


def test_standard_webhooks_refusals() -> None:
    assert "no matching" in refused(STANDARD, sw_headers(), SW_BODY, [signing.generate_secret()])
    assert "no matching" in refused(STANDARD, sw_headers(), SW_BODY + b" ", [SW_SECRET])
    assert "no matching" in refused(STANDARD, sw_headers(msg_id="msg_other"), SW_BODY, [SW_SECRET])
    assert "tolerance" in refused(STANDARD, sw_headers(), SW_BODY, [SW_SECRET], now=NOW + 301)
    assert "tolerance" in refused(STANDARD, sw_headers(), SW_BODY, [SW_SECRET], now=NOW - 301)
    assert "missing" in refused(STANDARD, {"webhook-id": SW_ID}, SW_BODY, [SW_SECRET])
    assert "integer" in refused(
        STANDARD, sw_headers(ts=0) | {"webhook-timestamp": "soon"}, SW_BODY, [SW_SECRET]
    )


def test_the_tolerance_boundary_is_accepted_both_ways() -> None:
    check(STANDARD, sw_headers(), SW_BODY, [SW_SECRET], now=NOW + 300)
    check(STANDARD, sw_headers(), SW_BODY, [SW_SECRET], now=NOW - 300)


def test_rotation_either_active_secret_verifies() -> None:
    new = signing.generate_secret()
    check(STANDARD, sw_headers(), SW_BODY, [new, SW_SECRET])
    both = signing.sign(SW_ID, SW_TIMESTAMP, SW_BODY, [new, SW_SECRET]).split()[0]
    check(STANDARD, sw_headers(sig=both), SW_BODY, [new, SW_SECRET])
    refused(STANDARD, sw_headers(sig=both), SW_BODY, [SW_SECRET])


def test_no_active_secret_refuses_everything() -> None:
    assert "no active secret" in refused(STANDARD, sw_headers(), SW_BODY, [])


# ---------------------------------------------------------------- HMAC header, GitHub


def test_github_documented_example() -> None:
    got = check(
        Verifier(Scheme.GITHUB),
        {"x-hub-signature-256": GH_SIGNATURE, "x-github-delivery": "d-1"},
        GH_BODY,
        [GH_SECRET],
    )
    assert got == Verified("d-1", None)
    assert "sha256=" + sign_hmac(GH_BODY, GH_SECRET) == GH_SIGNATURE


def test_github_refusals() -> None:
    github = Verifier(Scheme.GITHUB)
    headers = {"x-hub-signature-256": GH_SIGNATURE}
    assert "match" in refused(github, headers, GH_BODY + b"!", [GH_SECRET])
    assert "match" in refused(github, headers, GH_BODY, ["It's a Secret to Nobody"])
    assert "start" in refused(
        github, {"x-hub-signature-256": GH_SIGNATURE[7:]}, GH_BODY, [GH_SECRET]
    )
    assert "missing" in refused(github, {"x-hub-signature": GH_SIGNATURE}, GH_BODY, [GH_SECRET])


@pytest.mark.parametrize("encoding", [Encoding.HEX, Encoding.BASE64])
def test_hmac_sha256_header_in_hex_and_base64(encoding: Encoding) -> None:
    verifier = Verifier(Scheme.HMAC_SHA256, "X-Shop-Hmac", encoding)
    body = b'{"order": 1}'
    signature = sign_hmac(body, "s3cret", encoding)
    assert check(verifier, {"x-shop-hmac": signature}, body, ["s3cret"]) == Verified()
    refused(verifier, {"x-shop-hmac": signature}, body + b"x", ["s3cret"])
    refused(verifier, {"x-shop-hmac": signature}, body, ["other"])
    refused(verifier, {"x-shop-hmac": "not-an-encoding!"}, body, ["s3cret"])


def test_hmac_known_value_and_prefix() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    body = b"what do ya want for nothing?"
    verifier = Verifier(Scheme.HMAC_SHA256, "x-signature", Encoding.HEX, "sha256=")
    check(verifier, {"x-signature": "sha256=" + expected}, body, ["Jefe"])
    check(verifier, {"x-signature": "sha256=" + expected.upper()}, body, ["Jefe"])
    assert "start" in refused(verifier, {"x-signature": expected}, body, ["Jefe"])
    b64 = base64.b64encode(bytes.fromhex(expected)).decode()
    check(
        Verifier(Scheme.HMAC_SHA256, "x-signature", Encoding.BASE64),
        {"x-signature": b64},
        body,
        ["Jefe"],
    )


# ---------------------------------------------------------------- Stripe


def test_stripe_signed_by_the_stripe_library() -> None:
    body = b'{"id": "evt_1", "type": "charge.succeeded"}'
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_test", now)
    got = check(
        Verifier(Scheme.STRIPE), {"stripe-signature": header}, body, ["whsec_test"], now=now
    )
    assert got == Verified(None, now)


def test_our_stripe_header_passes_the_stripe_library() -> None:
    body = b'{"id": "evt_2"}'
    now = int(time.time())
    header = stripe_header(body, "whsec_test", now)
    assert stripe.WebhookSignature.verify_header(body, header, "whsec_test", tolerance=300)


def test_stripe_refusals() -> None:
    stripe_v = Verifier(Scheme.STRIPE)
    body = b'{"id": "evt_1"}'
    header = stripe_header(body, "whsec_a", SW_TIMESTAMP)
    assert "match" in refused(stripe_v, {"stripe-signature": header}, body, ["whsec_b"])
    assert "match" in refused(stripe_v, {"stripe-signature": header}, body + b" ", ["whsec_a"])
    assert "tolerance" in refused(
        stripe_v, {"stripe-signature": header}, body, ["whsec_a"], now=NOW + 301
    )
    assert "tolerance" in refused(
        stripe_v, {"stripe-signature": header}, body, ["whsec_a"], now=NOW - 301
    )
    v0_only = header.replace("v1=", "v0=")
    assert "v1" in refused(stripe_v, {"stripe-signature": v0_only}, body, ["whsec_a"])
    assert "missing" in refused(stripe_v, {}, body, ["whsec_a"])


def test_stripe_header_with_several_signatures() -> None:
    body = b"{}"
    good = stripe_header(body, "whsec_new", SW_TIMESTAMP).split(",")[1]
    header = f"t={SW_TIMESTAMP},v1={'00' * 32},{good},v0=abc"
    assert parse_stripe_header(header)[0] == SW_TIMESTAMP
    assert len(parse_stripe_header(header)[1]) == 2
    check(Verifier(Scheme.STRIPE), {"stripe-signature": header}, body, ["whsec_new"])


# ---------------------------------------------------------------- basic auth, API key


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth() -> None:
    verifier = Verifier(Scheme.BASIC, username="partner")
    assert check(verifier, basic("partner", "pa:ss"), b"", ["pa:ss"]) == Verified()
    check(verifier, basic("partner", "new"), b"", ["new", "pa:ss"])
    assert "wrong" in refused(verifier, basic("partner", "nope"), b"", ["pa:ss"])
    assert "wrong" in refused(verifier, basic("intruder", "pa:ss"), b"", ["pa:ss"])
    assert "Basic" in refused(verifier, {"authorization": "Bearer pa:ss"}, b"", ["pa:ss"])
    assert "base64" in refused(verifier, {"authorization": "Basic ???"}, b"", ["pa:ss"])


def test_api_key_header() -> None:
    verifier = Verifier(Scheme.API_KEY, "X-Partner-Key")
    assert check(verifier, {"x-partner-key": "k-123"}, b"{}", ["k-123"]) == Verified()
    assert "wrong" in refused(verifier, {"x-partner-key": "k-124"}, b"{}", ["k-123"])
    assert "missing" in refused(verifier, {"x-api-key": "k-123"}, b"{}", ["k-123"])


# ---------------------------------------------------------------- secrets


def test_secrets_are_checked_per_scheme_and_generated_in_their_form() -> None:
    assert check_secret(Scheme.STANDARD_WEBHOOKS, SW_SECRET) is None
    assert check_secret(Scheme.STANDARD_WEBHOOKS, "plain text") is not None
    assert check_secret(Scheme.STANDARD_WEBHOOKS, signing.generate_keypair()[0]) is not None
    assert check_secret(Scheme.STANDARD_WEBHOOKS, signing.generate_keypair()[1]) is None
    assert check_secret(Scheme.GITHUB, GH_SECRET) is None
    assert check_secret(Scheme.API_KEY, " padded ") is not None
    assert check_secret(Scheme.API_KEY, "") is not None

    def fixed(n: int) -> bytes:
        return b"\x07" * n

    assert generate_secret(Scheme.STANDARD_WEBHOOKS, fixed).startswith("whsec_")
    assert (
        check_secret(Scheme.STANDARD_WEBHOOKS, generate_secret(Scheme.STANDARD_WEBHOOKS, fixed))
        is None
    )
    assert len(generate_secret(Scheme.HMAC_SHA256, fixed)) == 43
