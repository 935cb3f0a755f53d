"""Pure rules of the HTTP proxy: framing, hop-by-hop headers, X-Forwarded-*, sub-paths.

* **Framing** (request smuggling): a request with both ``Content-Length`` and
  ``Transfer-Encoding``, several differing ``Content-Length`` values, a non-numeric length
  or a transfer coding other than exactly ``chunked`` is ambiguous and refused (400).
* **Hop-by-hop headers** (RFC 9110 7.6.1) are removed both ways, with every header the
  ``Connection`` header names; the caller's credentials and cookies for junctionbox never
  reach the upstream.
* **X-Forwarded-For/Proto/Host**: incoming values are kept (and extended) only when the
  direct peer is a trusted proxy (``JB_TRUSTED_PROXIES``); otherwise they are replaced.
* **Sub-paths** after the integration's type are appended to the target's path segment by
  segment; a segment that decodes to ``.`` or ``..`` or contains ``/``, ``\\`` or NUL is
  refused, so the result can never leave the target's path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from junctionbox.errors import ValidationError

Headers = Sequence[tuple[str, str]]

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers never forwarded: framing is recomputed, the host is the target's, the
# forwarding headers are rebuilt, and junctionbox's own credentials stay here.
_NOT_FORWARDED: Final = HOP_BY_HOP | {
    "host",
    "content-length",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-api-key",
    "authorization",
    "cookie",
}
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_PATH_SAFE: Final = "!$&'()*+,;=:@-._~"


def check_framing(headers: Headers) -> None:
    """Refuse a request whose body length could be read two ways (CL.TE / TE.CL)."""
    lengths: list[str] = []
    codings: list[str] = []
    for key, value in headers:  # one pass: this runs for every proxied call
        name = key.lower()
        if name == "content-length":
            lengths.append(value.strip())
        elif name == "transfer-encoding":
            codings.append(value.strip().lower())
    if not codings and len(lengths) == 1 and lengths[0].isdigit():
        return  # the usual request: one plain length
    if lengths and codings:
        raise ValidationError("ambiguous framing: Content-Length and Transfer-Encoding")
    values = {part.strip() for value in lengths for part in value.split(",")}
    if len(values) > 1 or any(not v.isdigit() for v in values):
        raise ValidationError("ambiguous or invalid Content-Length")
    if codings and codings != ["chunked"]:
        raise ValidationError("unsupported Transfer-Encoding (only a single 'chunked')")


def _connection_named(headers: Headers) -> set[str]:
    named: set[str] = set()
    for key, value in headers:
        if key.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return named


def forwardable_request_headers(
    headers: Headers, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The caller's headers that go upstream (``drop``: more names, lower-case)."""
    names = [k.lower() for k, _ in headers]
    if "connection" in names:
        skip = _NOT_FORWARDED | _connection_named(headers) | set(drop)
        return [(k, v) for (k, v), name in zip(headers, names, strict=True) if name not in skip]
    # Without a Connection header (HTTP/1.1 callers rarely send one): no set to build.
    dropped = drop if isinstance(drop, frozenset | set) else frozenset(drop)
    return [
        (k, v)
        for (k, v), name in zip(headers, names, strict=True)
        if name not in _NOT_FORWARDED and name not in dropped
    ]


def forwardable_response_headers(
    headers: Headers, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The upstream's response headers that go back to the caller (``drop``: more names,
    lower-case)."""
    names = [k.lower() for k, _ in headers]
    # Without a Connection header (the usual answer) no set is built for it.
    skip = HOP_BY_HOP | _connection_named(headers) if "connection" in names else HOP_BY_HOP
    if drop:
        skip = skip.union(drop)
    return [(k, v) for (k, v), name in zip(headers, names, strict=True) if name not in skip]


@dataclass(frozen=True)
class TrustedProxies:
    """``JB_TRUSTED_PROXIES``: addresses or CIDRs (``*`` trusts every peer)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    everyone: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        networks = []
        everyone = False
        for entry in entries:
            if entry == "*":
                everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # a host name: uvicorn's list allows them; we match addresses only
        return cls(tuple(networks), everyone)

    def trusts(self, peer: str | None) -> bool:
        if peer is None:
            return False
        if self.everyone:
            return True
        if not self.networks:  # the usual case: no proxy is trusted, nothing to parse
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def forwarded_headers(
    headers: Headers, *, peer: str | None, scheme: str, host: str | None, trusted: bool
) -> list[tuple[str, str]]:
    """``X-Forwarded-For/Proto/Host`` for the upstream request."""
    if not trusted:  # the usual case: the caller's forwarding headers are all replaced
        found = [("X-Forwarded-For", peer or "unknown"), ("X-Forwarded-Proto", scheme)]
        if host:
            found.append(("X-Forwarded-Host", host))
        return found

    def first(name: str) -> str | None:
        return next((v for k, v in headers if k.lower() == name), None)

    chain = [v.strip() for k, v in headers if k.lower() == "x-forwarded-for"] if trusted else []
    chain.append(peer or "unknown")
    proto = (first("x-forwarded-proto") if trusted else None) or scheme
    forwarded_host = (first("x-forwarded-host") if trusted else None) or host
    found = [("X-Forwarded-For", ", ".join(c for c in chain if c)), ("X-Forwarded-Proto", proto)]
    if forwarded_host:
        found.append(("X-Forwarded-Host", forwarded_host))
    return found


def confined_path(base_path: str, raw_sub_path: str) -> str:
    """``base_path`` with the caller's ``raw_sub_path`` (still percent-encoded) appended.

    Each segment is decoded once and checked, then encoded again: an encoded slash or dot
    segment (``%2e%2e``, ``%2F``) is refused like a plain one, so the upstream can never
    be asked for a path outside ``base_path``.
    """
    segments: list[str] = []
    for raw in raw_sub_path.split("/"):
        if raw == "":
            continue  # '//' collapses
        decoded = unquote_to_bytes(raw)
        if decoded in (b".", b"..") or any(c in decoded for c in (b"/", b"\\", b"\x00")):
            raise ValidationError("invalid path: traversal outside the target is not allowed")
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("invalid path: segments must be UTF-8") from None
        segments.append(quote(text, safe=_PATH_SAFE))
    if not segments:
        return base_path or "/"
    return base_path.rstrip("/") + "/" + "/".join(segments)


def should_retry(method: str, *, status: int | None, retry_non_idempotent: bool) -> bool:
    """A network failure (``status`` None) or a 5xx is retried for idempotent methods,
    and for the others only when the integration says so."""
    if status is not None and status < 500:
        return False
    return retry_non_idempotent or method.upper() in IDEMPOTENT_METHODS
