"""Gateway routes as pure values: path patterns, IP rules, CORS, versioning headers.

Nothing here does I/O. The service stores route configurations; this module turns them into
precompiled matchers and answers the questions a request asks of its route.

Path patterns: literal segments, ``{name}`` for one segment, and a final ``*`` for the
rest of the path (``/orders/{id}``, ``/files/*``). More literal segments win over fewer
when two patterns match.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from junctionbox.domain.proxy import HOP_BY_HOP
from junctionbox.errors import FieldProblem, ValidationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=:@%-]+$")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


def invalid(loc: tuple[str | int, ...], message: str) -> ValidationError:
    where = ".".join(str(p) for p in loc)
    return ValidationError(f"{where}: {message}", problems=[FieldProblem(loc, message)])


# --- path patterns ---


@dataclass(frozen=True)
class PathPattern:
    text: str
    regex: re.Pattern[str]
    literals: int  # literal segments, for specificity
    wildcard: bool

    def match(self, path: str) -> dict[str, str | None] | None:
        found = self.regex.fullmatch(path)
        return None if found is None else found.groupdict()

    def render(self, template: str, params: Mapping[str, str | None]) -> str:
        out = template
        for name, value in params.items():
            out = out.replace("{" + name + "}", value or "")
        return out


def compile_pattern(text: str, loc: tuple[str | int, ...] = ("body", "path")) -> PathPattern:
    if not text.startswith("/") or len(text) > 500:
        raise invalid(loc, "must start with / and be at most 500 characters")
    segments = text.strip("/").split("/") if text.strip("/") else []
    parts: list[str] = []
    names: set[str] = set()
    literals = 0
    wildcard = False
    for index, segment in enumerate(segments):
        param = _PARAM.match(segment)
        if segment == "*" and index == len(segments) - 1:
            wildcard = True
            continue
        if param:
            name = param.group(1)
            if name in names or name == "rest":
                raise invalid(loc, f"parameter {{{name}}} is repeated or reserved")
            names.add(name)
            parts.append(f"/(?P<{name}>[^/]+)")
            continue
        if segment in ("", ".", "..") or not _SEGMENT.match(segment):
            raise invalid(loc, f"bad segment {segment!r} (use literals, {{name}} or a final *)")
        parts.append("/" + re.escape(segment))
        literals += 1
    tail = "(?:/(?P<rest>.*))?" if wildcard else "/?"
    return PathPattern(text, re.compile("".join(parts) + tail), literals, wildcard)


def safe_request_path(path: str) -> bool:
    """False for paths that try to climb out of the route (``..``, encoded slashes)."""
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in path or "%2e" in lowered:
        return False
    return all(segment not in (".", "..") for segment in path.split("/"))


# --- headers ---


def check_header(name: str, value: str, loc: tuple[str | int, ...]) -> None:
    if not _HEADER_NAME.match(name):
        raise invalid(loc, f"{name!r} is not a valid header name")
    if any(c in value for c in "\r\n\0"):
        raise invalid((*loc, name), "header values must not contain CR, LF or NUL")
    if name.lower() in HOP_BY_HOP or name.lower() in {"host", "content-length"}:
        raise invalid(loc, f"{name} is managed by the gateway and cannot be set")


@dataclass(frozen=True)
class HeaderOps:
    """Headers to set (replace) and to remove, applied in that order: remove, then set."""

    set: tuple[tuple[str, str], ...] = ()
    remove: frozenset[str] = frozenset()

    def apply(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        drop = self.remove | {name.lower() for name, _ in self.set}
        kept = [(k, v) for k, v in headers if k.lower() not in drop]
        return [*kept, *self.set]


def header_ops(
    set_: Mapping[str, str], remove: Iterable[str], loc: tuple[str | int, ...]
) -> HeaderOps:
    for name, value in set_.items():
        check_header(name, value, (*loc, "set"))
    for name in remove:
        if not _HEADER_NAME.match(name):
            raise invalid((*loc, "remove"), f"{name!r} is not a valid header name")
    return HeaderOps(tuple(set_.items()), frozenset(n.lower() for n in remove))


# --- IP rules ---


def parse_networks(values: Sequence[str], loc: tuple[str | int, ...]) -> tuple[IPNetwork, ...]:
    nets = []
    for index, value in enumerate(values):
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise invalid((*loc, index), f"{value!r} is not an IP address or CIDR") from None
    return tuple(nets)


@dataclass(frozen=True)
class IpRules:
    """Deny wins; with an allow list, only listed addresses pass."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    def permits(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return not self.allow
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in self.deny):
            return False
        return not self.allow or any(address in net for net in self.allow)


# --- CORS ---


@dataclass(frozen=True)
class CorsPolicy:
    origins: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    credentials: bool = False
    max_age: int = 600

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def _origin_headers(self, origin: str) -> dict[str, str]:
        wildcard = "*" in self.origins and not self.credentials
        out = {"access-control-allow-origin": "*" if wildcard else origin, "vary": "Origin"}
        if self.credentials:
            out["access-control-allow-credentials"] = "true"
        return out

    def preflight(self, origin: str, method: str, route_methods: Iterable[str]) -> dict[str, str]:
        """Headers of a successful preflight answer, or {} when it is refused."""
        allowed = self.methods or tuple(route_methods)
        if not self.allows(origin) or method.upper() not in allowed:
            return {}
        out = self._origin_headers(origin)
        out["access-control-allow-methods"] = ", ".join(allowed)
        out["access-control-allow-headers"] = ", ".join(self.headers) or "*"
        out["access-control-max-age"] = str(self.max_age)
        return out

    def response_headers(self, origin: str | None) -> dict[str, str]:
        if not origin or not self.allows(origin):
            return {}
        return self._origin_headers(origin)


# --- versioning ---


@dataclass(frozen=True)
class Versioning:
    strategy: str = "none"  # none | path | header
    version: str | None = None
    header: str = "X-API-Version"
    deprecated: bool = False
    deprecated_at: datetime | None = None
    sunset: datetime | None = None
    link: str | None = None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.deprecated or self.deprecated_at is not None:
            when = self.deprecated_at
            out["deprecation"] = "true" if when is None else f"@{int(when.timestamp())}"
        if self.sunset is not None:
            out["sunset"] = format_datetime(self.sunset.astimezone(UTC), usegmt=True)
        if self.link and out:
            out["link"] = f'<{self.link}>; rel="deprecation"'
        return out


# --- load balancing (passive health) ---


@dataclass
class TargetHealth:
    """Consecutive failures of one upstream; marked down for ``cooldown`` after ``threshold``."""

    url: str
    failures: int = 0
    down_until: float = 0.0
    last_status: int | None = None
    last_error: str | None = None
    last_seen: float | None = None

    def is_up(self, now: float) -> bool:
        return now >= self.down_until

    def record(self, ok: bool, now: float, threshold: int, cooldown: float, detail: str) -> None:
        self.last_seen = now
        if ok:
            self.failures, self.down_until, self.last_error = 0, 0.0, None
            return
        self.failures += 1
        self.last_error = detail
        if self.failures >= threshold:
            self.down_until = now + cooldown


@dataclass
class Balancer:
    """Round robin over the targets that are up; if none is, the one down longest ago."""

    targets: list[TargetHealth]
    cursor: int = 0
    threshold: int = 3
    cooldown: float = 30.0

    def pick(self, now: float) -> TargetHealth:
        count = len(self.targets)
        for step in range(count):
            candidate = self.targets[(self.cursor + step) % count]
            if candidate.is_up(now):
                self.cursor = (self.cursor + step + 1) % count
                return candidate
        return min(self.targets, key=lambda t: t.down_until)
