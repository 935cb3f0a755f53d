"""Encryption at rest for secrets we must be able to read back (destination credentials,
signing secrets). AES-256-GCM with a key derived from the server secret; the stored form is
``v1.<base64url(nonce || ciphertext)>`` so that the scheme can change without ambiguity.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1."
_NONCE_BYTES = 12


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """A key for one purpose (``"secretbox"``, ``"jwt"``, …) so no two uses share a key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(secret_key.encode())


class SecretBox:
    """Seals and opens small secrets. ``associated`` binds a value to its owner (e.g. an id)."""

    def __init__(self, secret_key: str) -> None:
        self._aead = AESGCM(derive_key(secret_key, "secretbox"))

    def seal(self, plaintext: str, associated: str = "") -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), associated.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, associated: str = "") -> str:
        if not token.startswith(_VERSION):
            raise ValueError("not a sealed secret")
        raw = base64.urlsafe_b64decode(token[len(_VERSION) :])
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated.encode())
        except InvalidTag as exc:
            raise ValueError("sealed secret does not open with this key") from exc
        return plain.decode()

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(_VERSION)
