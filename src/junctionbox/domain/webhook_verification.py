"""Verifying the sender of an inbound webhook, one function per scheme.

Schemes and what they sign (the secret is used as its UTF-8 bytes unless said otherwise):

    STANDARD_WEBHOOKS  webhook-id / webhook-timestamp / webhook-signature (svix-* accepted):
                       ``v1`` HMAC-SHA256 (whsec_ base64 key) or ``v1a`` ed25519 (whpk_ key)
                       over ``{id}.{timestamp}.{body}``; timestamp within the tolerance
    HMAC_SHA256        a configurable header holding HMAC-SHA256(body), HEX or BASE64,
                       optionally after a prefix such as ``sha256=``
    GITHUB             ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>``;
                       ``X-GitHub-Delivery`` is the message id
    STRIPE             ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256("{t}.{body}")>``
                       (several v1 entries allowed); t within the tolerance
    BASIC              ``Authorization: Basic`` with the configured username and the secret
    API_KEY            the secret, verbatim, in a configurable header

Every comparison is constant-time (``hmac.compare_digest``). Failures raise
:class:`VerificationFailed`: a 401 whose message is the same for every cause (a sender
learns nothing about which part was wrong); the cause is kept in ``reason`` for the
tenant's inbound log. Several secrets may be given (rotation): any one of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from junctionbox.domain import signing
from junctionbox.errors import UnauthorizedError

GENERIC_MESSAGE = "webhook verification failed"
GITHUB_SIGNATURE = "x-hub-signature-256"
GITHUB_DELIVERY = "x-github-delivery"
STRIPE_SIGNATURE = "stripe-signature"
_SVIX = {
    signing.HEADER_ID: "svix-id",
    signing.HEADER_TIMESTAMP: "svix-timestamp",
    signing.HEADER_SIGNATURE: "svix-signature",
}
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Scheme(StrEnum):
    STANDARD_WEBHOOKS = "STANDARD_WEBHOOKS"
    HMAC_SHA256 = "HMAC_SHA256"
    GITHUB = "GITHUB"
    STRIPE = "STRIPE"
    BASIC = "BASIC"
    API_KEY = "API_KEY"


class Encoding(StrEnum):
    HEX = "HEX"
    BASE64 = "BASE64"


class VerificationFailed(UnauthorizedError):
    """Webhook verification failed."""

    def __init__(self, reason: str) -> None:
        super().__init__(GENERIC_MESSAGE)
        self.reason = reason


@dataclass(frozen=True)
class Verifier:
    """How one source checks its sender (secrets are passed separately, opened per call)."""

    scheme: Scheme
    header: str | None = None  # HMAC_SHA256: signature header; API_KEY: key header
    encoding: Encoding = Encoding.HEX
    prefix: str = ""  # HMAC_SHA256: text before the signature, e.g. "sha256="
    username: str | None = None  # BASIC

    @property
    def uses_timestamp(self) -> bool:
        return self.scheme in (Scheme.STANDARD_WEBHOOKS, Scheme.STRIPE)


@dataclass(frozen=True)
class Verified:
    """What the verified request says about itself: its message id and send time, if any."""

    message_id: str | None = None
    timestamp: int | None = None


def verify(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: float,
) -> Verified:
    """Raise :class:`VerificationFailed` unless the request verifies with one of ``secrets``.

    ``headers`` must have lower-case names.
    """
    if not secrets:
        raise VerificationFailed("the source has no active secret")
    check = _CHECKS[verifier.scheme]
    return check(verifier, headers, body, secrets, now, tolerance)


# ---------------------------------------------------------------- the schemes


def _standard(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    found = {name: headers.get(name) or headers.get(alias) for name, alias in _SVIX.items()}
    msg_id, timestamp = found[signing.HEADER_ID], found[signing.HEADER_TIMESTAMP]
    signature = found[signing.HEADER_SIGNATURE]
    if not (msg_id and timestamp and signature):
        raise VerificationFailed("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        signing.verify(msg_id, timestamp, body, signature, secrets, now=now, tolerance=tolerance)
    except UnauthorizedError as exc:
        raise VerificationFailed(exc.message) from None
    return Verified(msg_id, int(timestamp))


def _hmac_header(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    name = (verifier.header or "").lower()
    value = headers.get(name)
    if value is None:
        raise VerificationFailed(f"missing signature header {name}")
    value = value.strip()
    if verifier.prefix:
        if not value.startswith(verifier.prefix):
            raise VerificationFailed(f"signature does not start with {verifier.prefix!r}")
        value = value[len(verifier.prefix) :]
    given = _decode(value, verifier.encoding)
    if not any(hmac.compare_digest(_mac(s, body), given) for s in secrets):
        raise VerificationFailed("signature does not match")
    return Verified()


def _github(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    github = Verifier(Scheme.HMAC_SHA256, GITHUB_SIGNATURE, Encoding.HEX, "sha256=")
    _hmac_header(github, headers, body, secrets, now, tolerance)
    return Verified(headers.get(GITHUB_DELIVERY) or None)


def _stripe(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    header = headers.get(STRIPE_SIGNATURE)
    if not header:
        raise VerificationFailed("missing Stripe-Signature")
    timestamp, signatures = parse_stripe_header(header)
    if timestamp is None or not signatures:
        raise VerificationFailed("Stripe-Signature has no t= or no v1= entry")
    if abs(now - timestamp) > tolerance:
        raise VerificationFailed("timestamp is outside the tolerance window")
    content = f"{timestamp}.".encode() + body
    expected = [_mac(s, content) for s in secrets]
    if not any(hmac.compare_digest(e, given) for e in expected for given in signatures):
        raise VerificationFailed("signature does not match")
    return Verified(None, timestamp)


def parse_stripe_header(header: str) -> tuple[int | None, list[bytes]]:
    """``t=…,v1=…,v1=…,v0=…`` as (timestamp, the v1 signatures); other entries ignored."""
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1":
            decoded = _unhex(value)
            if decoded:
                signatures.append(decoded)
    return timestamp, signatures


def _basic(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        raise VerificationFailed("missing Basic authorization")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed("Basic credentials are not base64") from None
    user, sep, password = decoded.partition(b":")
    if not sep:
        raise VerificationFailed("Basic credentials have no ':'")
    # Both parts compared every time, so the time taken does not tell which one was wrong.
    user_ok = hmac.compare_digest(user, (verifier.username or "").encode())
    password_ok = any(hmac.compare_digest(password, s.encode()) for s in secrets)
    if not (user_ok and password_ok):
        raise VerificationFailed("wrong username or password")
    return Verified()


def _api_key(
    verifier: Verifier,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    now: float,
    tolerance: float,
) -> Verified:
    name = (verifier.header or "").lower()
    given = headers.get(name)
    if given is None:
        raise VerificationFailed(f"missing key header {name}")
    if not any(hmac.compare_digest(given.strip().encode(), s.encode()) for s in secrets):
        raise VerificationFailed("wrong key")
    return Verified()


_Check = Callable[[Verifier, Mapping[str, str], bytes, Sequence[str], float, float], Verified]
_CHECKS: dict[Scheme, _Check] = {
    Scheme.STANDARD_WEBHOOKS: _standard,
    Scheme.HMAC_SHA256: _hmac_header,
    Scheme.GITHUB: _github,
    Scheme.STRIPE: _stripe,
    Scheme.BASIC: _basic,
    Scheme.API_KEY: _api_key,
}


# ---------------------------------------------------------------- signing (for senders, tests)


def sign_hmac(body: bytes, secret: str, encoding: Encoding = Encoding.HEX) -> str:
    """HMAC-SHA256 of the body keyed with the secret's UTF-8 bytes, hex or base64."""
    mac = _mac(secret, body)
    return mac.hex() if encoding is Encoding.HEX else base64.b64encode(mac).decode()


def stripe_header(body: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, f'{timestamp}.'.encode() + body).hex()}"


# ---------------------------------------------------------------- secrets


def check_secret(scheme: Scheme, secret: str) -> str | None:
    """Why ``secret`` cannot serve ``scheme``, or None when it can."""
    if not secret or len(secret) > 500 or secret != secret.strip():
        return "a secret has 1-500 characters without surrounding whitespace"
    if scheme is not Scheme.STANDARD_WEBHOOKS:
        return None
    if secret.startswith(signing.PRIVATE_KEY_PREFIX):
        return "give the sender's whpk_ public key, not its private key"
    if secret.startswith(signing.PUBLIC_KEY_PREFIX):
        raw = _unb64(secret.removeprefix(signing.PUBLIC_KEY_PREFIX))
        return None if len(raw) == 32 else "a whpk_ key is a base64 ed25519 public key"
    if not _unb64(secret.removeprefix(signing.SYMMETRIC_PREFIX)):
        return "a Standard Webhooks secret is whsec_<base64> (or a whpk_ public key)"
    return None


def generate_secret(scheme: Scheme, token_bytes: Callable[[int], bytes]) -> str:
    """A new random secret in the scheme's usual form (whsec_… for Standard Webhooks)."""
    if scheme is Scheme.STANDARD_WEBHOOKS:
        return signing.generate_secret(token_bytes=token_bytes)
    return base64.urlsafe_b64encode(token_bytes(32)).decode().rstrip("=")


# ---------------------------------------------------------------- helpers


def _mac(secret: str, content: bytes) -> bytes:
    return hmac.new(secret.encode(), content, hashlib.sha256).digest()


def _decode(value: str, encoding: Encoding) -> bytes:
    decoded = _unhex(value) if encoding is Encoding.HEX else _unb64(value)
    if not decoded:
        raise VerificationFailed(f"signature is not {encoding.value.lower()}")
    return decoded


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""
