"""Time-sortable, type-prefixed identifiers (``evt_01J…``, ``int_01J…``).

The body is a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32, so
ids sort by creation time as plain strings on every database.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PREFIX = re.compile(r"^[a-z]{2,8}$")
ID_PATTERN = re.compile(r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$")


# RFC 4648 base32 maps 5-bit groups to a different alphabet; translating afterwards gives
# Crockford's. Twenty bytes are exactly 32 characters, of which the first six carry only the
# 30 leading zero bits, so the last 26 are the 130-bit ULID (a C-speed encode, ~1 µs).
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def _encode(value: int) -> str:
    encoded = base64.b32encode(value.to_bytes(20, "big"))[6:]
    return encoded.translate(_TO_CROCKFORD).decode()


@functools.lru_cache(maxsize=64)
def _check_prefix(prefix: str) -> None:
    if not _PREFIX.match(prefix):
        raise ValueError(f"id prefix must be 2-8 lowercase letters, got {prefix!r}")


def new_id(prefix: str, *, now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A new id ``{prefix}_{ulid}``; ``now_ms`` and ``entropy`` are injectable for tests."""
    _check_prefix(prefix)
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    random_bits = entropy if entropy is not None else os.urandom(10)
    if len(random_bits) != 10:
        raise ValueError("entropy must be 10 bytes")
    value = (millis << 80) | int.from_bytes(random_bits, "big")
    return f"{prefix}_{_encode(value)}"


def has_prefix(identifier: str, prefix: str) -> bool:
    """Whether ``identifier`` is a well-formed id of the given type."""
    return bool(ID_PATTERN.match(identifier)) and identifier.startswith(prefix + "_")
