"""The console's session cookie and CSRF tokens (pure: keys in, strings out).

The session cookie carries the login token that ``AuthService.login`` issues to the API (so
logout revokes it, and a disabled or deleted user's token stops working, exactly as the API's)
plus a stamp of the user's password hash (an HMAC under a server key, so the cookie reveals
nothing of the hash), so that a password change ends every console session of that user. The whole value is HMAC-signed with a key derived from the secret key.

CSRF: a signed double-submit token. A random nonce lives in its own cookie; forms carry
``nonce.HMAC(nonce | session id)``. A cross-site page can neither read the cookie nor forge the
HMAC, and a token from another session does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

SESSION_COOKIE = "jb_session"
CSRF_COOKIE = "jb_csrf"
ORG_COOKIE = "jb_org"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class SessionData:
    token: str  # the API login token (JWT)
    password_stamp: str  # SessionCodec.password_stamp of the password hash at login


class SessionCodec:
    def __init__(self, secret_key: str) -> None:
        root = secret_key.encode()
        self._session_key = hmac.new(root, b"console-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(root, b"console-csrf", hashlib.sha256).digest()
        self._stamp_key = hmac.new(root, b"console-password-stamp", hashlib.sha256).digest()

    def password_stamp(self, password_hash: str) -> str:
        """Changes whenever the password does; keyed, so it cannot be tested offline."""
        return self._sign(self._stamp_key, password_hash.encode())[:32]

    # --- session ---

    def encode(self, data: SessionData) -> str:
        body = base64.urlsafe_b64encode(orjson.dumps({"t": data.token, "p": data.password_stamp}))
        return f"{body.decode()}.{self._sign(self._session_key, body)}"

    def decode(self, value: str | None) -> SessionData | None:
        if not value or "." not in value:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(self._session_key, body.encode())):
            return None
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(body.encode()))
            return SessionData(str(raw["t"]), str(raw["p"]))
        except (ValueError, KeyError, TypeError):
            return None

    # --- CSRF ---

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str, session_id: str) -> str:
        return f"{nonce}.{self._sign(self._csrf_key, f'{nonce}|{session_id}'.encode())}"

    def csrf_valid(self, token: str | None, nonce: str | None, session_id: str) -> bool:
        if not token or not nonce:
            return False
        sent_nonce, _, _ = token.partition(".")
        expected = self.csrf_token(nonce, session_id)
        return hmac.compare_digest(sent_nonce, nonce) and hmac.compare_digest(token, expected)

    @staticmethod
    def _sign(key: bytes, data: bytes) -> str:
        return hmac.new(key, data, hashlib.sha256).hexdigest()


def session_id(data: SessionData | None) -> str:
    """What CSRF tokens are bound to: the session's token digest ('' before login)."""
    if data is None:
        return ""
    return hashlib.sha256(data.token.encode()).hexdigest()[:32]
