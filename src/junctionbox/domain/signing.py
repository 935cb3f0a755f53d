"""Webhook signatures: Standard Webhooks (v1 HMAC-SHA256, v1a ed25519) and seed 001's hex HMAC.

Standard Webhooks signs ``{webhook-id}.{webhook-timestamp}.{body}`` and sends a
space-separated list of ``version,base64(signature)`` entries, one per active key, so that a
secret can be rotated without downtime. Keys are self-describing strings:

    whsec_<base64 secret>       symmetric, signs and verifies ``v1``
    whsk_<base64 ed25519 seed>  asymmetric private key, signs ``v1a``
    whpk_<base64 ed25519 key>   asymmetric public key, verifies ``v1a``

The body is always ``bytes``: the bytes signed are the bytes sent, never re-serialised.
Key strings are secrets; nothing here logs or echoes them in error messages.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets as _secrets
from collections.abc import Callable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from junctionbox.errors import UnauthorizedError, ValidationError

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
# Seed 001's variant: lowercase hex HMAC-SHA256 of the body alone, in a header of its own.
HEX_SIGNATURE_HEADER = "x-webhook-signature-sha256"

SYMMETRIC_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"

DEFAULT_TOLERANCE_SECONDS = 300.0  # the spec's replay window, both directions
MIN_SECRET_BYTES = 24  # the spec: at least 192 bits ...
MAX_SECRET_BYTES = 64  # ... and at most 512
_ED25519_SEED_BYTES = 32

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


# ---------------------------------------------------------------- keys


def generate_secret(
    nbytes: int = 32, *, token_bytes: Callable[[int], bytes] = _secrets.token_bytes
) -> str:
    """A new ``whsec_`` secret of ``nbytes`` random bytes (24-64, the spec's bounds)."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValidationError(f"secret size must be {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes")
    return SYMMETRIC_PREFIX + _b64(token_bytes(nbytes))


def generate_keypair(
    *, token_bytes: Callable[[int], bytes] = _secrets.token_bytes
) -> tuple[str, str]:
    """A new ed25519 pair as ``(whsk_..., whpk_...)``; the private key is its 32-byte seed."""
    private = PRIVATE_KEY_PREFIX + _b64(token_bytes(_ED25519_SEED_BYTES))
    return private, public_key_for(private)


def public_key_for(private_key: str) -> str:
    """The ``whpk_`` key that verifies what ``private_key`` (``whsk_``) signs."""
    raw = _private_key(private_key).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + _b64(raw)


def decode_secret(secret: str) -> bytes:
    """Raw HMAC key of a ``whsec_`` secret (the prefix is optional, as in the spec's libs)."""
    raw = _unb64(secret.removeprefix(SYMMETRIC_PREFIX))
    if not raw:
        raise ValidationError("signing secret is empty or not base64")
    return raw


def _private_key(key: str) -> Ed25519PrivateKey:
    raw = _unb64(key.removeprefix(PRIVATE_KEY_PREFIX))
    # Some producers serialise the 64-byte expanded key (seed || public); its seed comes first.
    if len(raw) not in (_ED25519_SEED_BYTES, 2 * _ED25519_SEED_BYTES):
        raise ValidationError("whsk_ key must be a base64 ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_SEED_BYTES])


def _public_key(key: str) -> Ed25519PublicKey:
    if key.startswith(PRIVATE_KEY_PREFIX):
        return _private_key(key).public_key()
    raw = _unb64(key.removeprefix(PUBLIC_KEY_PREFIX))
    if len(raw) != _ED25519_SEED_BYTES:
        raise ValidationError("whpk_ key must be a base64 ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def _is_asymmetric(key: str) -> bool:
    return key.startswith((PRIVATE_KEY_PREFIX, PUBLIC_KEY_PREFIX))


# ---------------------------------------------------------------- signing


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """``{id}.{timestamp}.{body}``, the exact bytes that are signed."""
    _check_msg_id(msg_id)
    if timestamp < 0:
        raise ValidationError("webhook timestamp must be >= 0")
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(msg_id: str, timestamp: int, body: bytes, keys: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one entry per key, in the order given.

    During a rotation pass both the new and the old key; the receiver accepts either.
    """
    if not keys:
        raise ValidationError("at least one signing key is required")
    content = signed_content(msg_id, timestamp, body)
    return " ".join(_sign_one(content, key) for key in keys)


def _sign_one(content: bytes, key: str) -> str:
    if key.startswith(PUBLIC_KEY_PREFIX):
        raise ValidationError("a whpk_ public key can verify but not sign")
    if key.startswith(PRIVATE_KEY_PREFIX):
        return "v1a," + _b64(_private_key(key).sign(content))
    return "v1," + _b64(_keyed_sha256(key).digest(content))


class _KeyedSha256:
    """HMAC-SHA256 under one key (RFC 2104) from the two padded-key states, hashed once
    per key: a message then costs two copies and two updates. ``hmac.digest`` derives the
    key's states again for every message (OpenSSL 3 also looks the algorithm up each
    time), twice the cost for a 1 KiB body."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@functools.lru_cache(maxsize=1024)
def _keyed_sha256(key: str) -> _KeyedSha256:
    """The HMAC of a ``whsec_`` secret, decoded and keyed once per secret rather than for
    every message (a memo of a pure function; a bad key raises every time, as exceptions
    are not cached)."""
    return _KeyedSha256(decode_secret(key))


def webhook_headers(
    msg_id: str, timestamp: int, body: bytes, keys: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt.

    ``msg_id`` must stay the same across retries of a message (receivers deduplicate on
    it); ``timestamp`` is the attempt's, so each retry is signed afresh.
    """
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(msg_id, timestamp, body, keys),
    }


# ---------------------------------------------------------------- verification


def verify(
    msg_id: str,
    timestamp: str,
    body: bytes,
    signature_header: str,
    keys: Sequence[str],
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`UnauthorizedError` unless some signature in the header matches a key.

    The timestamp must be an integer within ``tolerance`` seconds of ``now`` either way
    (replay protection; the boundary itself is accepted). ``v1`` entries are checked
    against ``whsec_`` keys, ``v1a`` against ``whpk_``/``whsk_`` keys; unknown versions
    and malformed entries are skipped, as the spec asks for forward compatibility.
    """
    if not _TIMESTAMP.fullmatch(timestamp):
        raise UnauthorizedError("webhook-timestamp is not an integer")
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance:
        raise UnauthorizedError("webhook-timestamp is outside the tolerance window")
    if _msg_id_problem(msg_id):
        raise UnauthorizedError("webhook-id is invalid")
    content = signed_content(msg_id, sent_at, body)
    hmac_keys, public_keys = _verification_keys(keys)
    for version, signature in _entries(signature_header):
        if version == "v1" and _hmac_ok(hmac_keys, signature, content):
            return
        if version == "v1a" and _ed25519_ok(public_keys, signature, content):
            return
    raise UnauthorizedError("no matching webhook signature")


def verify_headers(
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[str],
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """:func:`verify` with the three headers looked up case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    values = [lowered.get(h) for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)]
    msg_id, timestamp, signature = values
    if not (msg_id and timestamp and signature):
        raise UnauthorizedError("missing webhook-id, webhook-timestamp or webhook-signature")
    verify(msg_id, timestamp, body, signature, keys, now=now, tolerance=tolerance)


def _entries(header: str) -> list[tuple[str, bytes]]:
    entries = []
    for item in header.split():
        version, sep, encoded = item.partition(",")
        signature = _unb64(encoded) if sep else b""
        if signature:
            entries.append((version, signature))
    return entries


def _verification_keys(keys: Sequence[str]) -> tuple[list[bytes], list[Ed25519PublicKey]]:
    """Decode every key once; a malformed configured key is a ValidationError, not a 401."""
    hmac_keys = [decode_secret(k) for k in keys if not _is_asymmetric(k)]
    public_keys = [_public_key(k) for k in keys if _is_asymmetric(k)]
    return hmac_keys, public_keys


def _hmac_ok(hmac_keys: Sequence[bytes], signature: bytes, content: bytes) -> bool:
    # compare_digest: constant time, so a receiver cannot be turned into a signing oracle.
    return any(hmac.compare_digest(_hmac(key, content), signature) for key in hmac_keys)


def _ed25519_ok(public_keys: Sequence[Ed25519PublicKey], signature: bytes, content: bytes) -> bool:
    for key in public_keys:
        try:
            key.verify(signature, content)
        except InvalidSignature:
            continue
        return True
    return False


# ---------------------------------------------------------------- seed 001's hex variant


def sign_hex(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the body alone, keyed with the secret string's UTF-8
    bytes exactly as given - what seed 001's ``createHmac('sha256', secret)`` computes.

    It signs neither id nor timestamp, so it offers no replay protection; it exists for
    receivers built to that convention and is sent beside, not instead of, the standard one.
    """
    return _hmac(secret.encode(), body).hex()


def verify_hex(body: bytes, signature: str, secret: str) -> bool:
    """Constant-time check of a :func:`sign_hex` value (hex digits in either case)."""
    expected = sign_hex(body, secret).encode()
    return hmac.compare_digest(expected, signature.strip().lower().encode())


# ---------------------------------------------------------------- helpers


def _check_msg_id(msg_id: str) -> None:
    problem = _msg_id_problem(msg_id)
    if problem:
        raise ValidationError(problem)


def _msg_id_problem(msg_id: str) -> str | None:
    # A '.' would let id and timestamp trade characters inside the signed content.
    if not msg_id or "." in msg_id or not msg_id.isascii() or not msg_id.isprintable():
        return "webhook id must be non-empty printable ASCII without '.'"
    return None


def _hmac(key: bytes, content: bytes) -> bytes:
    return hmac.new(key, content, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict base64 (padding optional), or b"" when it is not base64 at all."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""
