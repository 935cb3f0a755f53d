"""The pure core of the SSRF guard for junctionbox's one outbound HTTP client.

The adapter that owns the socket (built elsewhere) does, for every request:

1. ``parse_outbound_url`` on the configured URL (done once, at configuration time, too);
2. resolve the host itself, once;
3. ``check_target(host, port, resolved_ips, allowlist)`` and connect *only* to the address it
   returns (never re-resolve: a second lookup is how DNS rebinding gets past a guard);
4. follow no redirect (a 3xx is a delivery outcome, not an instruction to go elsewhere).

An address is public only if it is globally routable unicast. Translation forms that carry
an IPv4 address inside IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are unwrapped
and the embedded address decides, so ``::ffff:127.0.0.1`` is as refused as ``127.0.0.1``.

``JB_SSRF_ALLOWLIST`` holds comma-separated exceptions: ``host:port`` (``[v6]:port`` for IPv6
literals) allows that host or address on that port only; a CIDR (or a bare address, read as a
single-address network) allows those addresses on any port. Tests allow only their own sink.

Every refusal raises ``TargetRefusedError`` with the same message, whatever the reason, so
that a caller probing the network learns nothing about which address was refused or why.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

from junctionbox.errors import ConfigurationError, FieldProblem, ForbiddenError, ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_SETTING: Final = "JB_SSRF_ALLOWLIST"
REFUSED_MESSAGE: Final = "destination address is not allowed"
MAX_URL_LENGTH: Final = 2048


class TargetRefusedError(ForbiddenError):
    """The destination address is not allowed."""

    # A 4xx subclass (FORBIDDEN, 403): a retry policy treats it as final, which is the point;
    # retrying cannot make a refused address acceptable. It is a subclass so the delivery
    # worker can dead-letter it at once without parsing messages.


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Written out rather than trusting ``ipaddress.is_global`` alone: its tables change between
# Python releases (3.11 calls 224.0.0.1 and 64:ff9b::a00:1 global).
_REFUSED_V4: Final = _nets(
    "0.0.0.0/8",  # "this network", includes the unspecified address
    "10.0.0.0/8",
    "100.64.0.0/10",  # CGNAT shared space; also Alibaba's metadata 100.100.100.200
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local; AWS/GCP/Azure/OCI metadata 169.254.169.254
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # TEST-NET-1
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    "168.63.129.16/32",  # Azure WireServer: public space, but a platform endpoint
)

# IPv6 is refused unless it is global unicast (2000::/3); these are the holes inside it.
_GLOBAL_UNICAST_V6: Final = ipaddress.IPv6Network("2000::/3")
_REFUSED_V6: Final = _nets(
    "2001::/23",  # IETF protocol assignments (benchmarking 2001:2::/48, ORCHID ...)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation (RFC 9637)
)
_METADATA_V6: Final = ipaddress.IPv6Address("fd00:ec2::254")  # AWS IMDS over IPv6 (in ULA)

_MAPPED_V4: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE_V4: Final = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
# The local-use NAT64 prefix may embed IPv4 at any of several offsets (RFC 6052 lengths
# /48../96), so unwrapping it is guesswork; IANA lists it as not globally reachable: refuse.
_NAT64_LOCAL: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIXTO4: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO: Final = ipaddress.IPv6Network("2001::/32")


def parse_ip(value: str | IPAddress) -> IPAddress:
    """Parse an address as a resolver or URL gives it (``[::1]`` brackets allowed)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_address(text)


def is_public_address(ip: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses, after unwrapping IPv4 carriers.

    Accepts an address object or text; text that is not an address is not public.
    """
    try:
        address = parse_ip(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return _is_public_v4(address)
    return _is_public_v6(address)


def _is_public_v4(address: ipaddress.IPv4Address) -> bool:
    if any(address in net for net in _REFUSED_V4):
        return False
    # Belt and braces: whatever this Python's registry tables know that ours do not.
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_link_local
    )


def _is_public_v6(address: ipaddress.IPv6Address) -> bool:
    embedded = _embedded_v4(address)
    if embedded is not None:
        return all(_is_public_v4(v4) for v4 in embedded)
    if address in _NAT64_LOCAL or address == _METADATA_V6:
        return False
    if address not in _GLOBAL_UNICAST_V6 or any(address in net for net in _REFUSED_V6):
        return False
    return not (address.is_multicast or address.is_link_local or address.is_site_local)


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 address(es) an IPv6 carrier form delivers to, or None if it is plain IPv6."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _MAPPED_V4 or address in _NAT64_WELL_KNOWN:
        return (low32,)
    if address in _COMPATIBLE_V4:
        # Deprecated and unroutable, so refuse it whatever it carries; 0.0.0.0 is never public.
        return (ipaddress.IPv4Address(0),)
    if address in _SIXTO4:
        return (ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF),)
    if address in _TEREDO:
        server, client = address.teredo or (low32, low32)
        return (server, client)
    return None


@dataclass(frozen=True)
class Allowlist:
    """Exceptions to the public-address rule, parsed from ``JB_SSRF_ALLOWLIST``."""

    host_ports: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    def allows(self, host: str, port: int, address: IPAddress) -> bool:
        """Whether ``address``, reached as ``host:port``, is explicitly allowed."""
        address = _unmap(address)
        if (_normalise_host(host), port) in self.host_ports:
            return True
        if (str(address), port) in self.host_ports:
            return True
        return any(address in net for net in self.networks)


def _unmap(address: IPAddress) -> IPAddress:
    # ::ffff:a.b.c.d is how a dual-stack socket spells an IPv4 peer: the same host.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_allowlist(text: str) -> Allowlist:
    """Parse ``JB_SSRF_ALLOWLIST``; raises ``ConfigurationError`` naming each bad entry."""
    host_ports: set[tuple[str, int]] = set()
    networks: list[IPNetwork] = []
    problems: list[FieldProblem] = []
    entries = [e.strip() for e in text.split(",")]
    for index, entry in enumerate(e for e in entries if e):
        try:
            parsed = _parse_entry(entry)
        except ValueError as exc:
            problems.append(FieldProblem((ALLOWLIST_SETTING, index), f"{entry!r}: {exc}"))
            continue
        if isinstance(parsed, tuple):
            host_ports.add(parsed)
        else:
            networks.append(parsed)
    if problems:
        details = "; ".join(p.message for p in problems)
        raise ConfigurationError(f"invalid {ALLOWLIST_SETTING}: {details}", problems=problems)
    return Allowlist(frozenset(host_ports), tuple(networks))


def _parse_entry(entry: str) -> tuple[str, int] | IPNetwork:
    if "/" in entry:
        return _parse_cidr(entry)
    if entry.startswith("["):
        host, sep, port = entry[1:].partition("]:")
        if not sep:
            raise ValueError("expected [ipv6]:port")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"not an IPv6 address ({exc})") from exc
        return str(address), _parse_port(port)
    if entry.count(":") > 1:
        # A bare IPv6 address, or an IPv6 host:port missing its brackets.
        return _parse_cidr(entry)
    host, sep, port = entry.rpartition(":")
    if not sep:
        return _parse_cidr(entry)
    return _normalise_host(_parse_host(host)), _parse_port(port)


def _parse_cidr(entry: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(entry, strict=True)
    except ValueError as exc:
        raise ValueError(f"expected host:port, [ipv6]:port or CIDR ({exc})") from exc
    if network.prefixlen == 0:
        raise ValueError("a /0 network would switch the guard off; list what you need")
    return network


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError("port must be a number from 1 to 65535")
    return int(text)


_LABEL: Final = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL: Final = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _parse_host(text: str) -> str:
    """A DNS name or canonical IPv4 literal, lower-cased; raise ValueError otherwise."""
    host = text.lower().removesuffix(".")
    if not host:
        raise ValueError("host is empty")
    labels = host.split(".")
    # Like the WHATWG URL parser: a name whose last label is a number is an IPv4 address,
    # and only the canonical dotted quad is accepted (no 0x7f.1, 017700000001, 127.1).
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError("IPv4 addresses must be written as four decimal parts") from None
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("host is not a valid DNS name")
    return host


def _normalise_host(host: str) -> str:
    host = host.strip().lower().removesuffix(".")
    try:
        return str(parse_ip(host))
    except ValueError:
        return host


def check_target(
    host: str,
    port: int,
    resolved_ips: Sequence[str | IPAddress],
    allowlist: Allowlist,
) -> IPAddress:
    """Return the address to connect to, or raise ``TargetRefusedError``.

    Every resolved address must be public or allowlisted: an attacker's DNS answering with
    one public and one private address must not get a connection to either.
    """
    if not 1 <= port <= 65535 or not resolved_ips:
        raise TargetRefusedError(REFUSED_MESSAGE)
    addresses = _parse_all(resolved_ips)
    if addresses is None or not all(
        is_public_address(a) or allowlist.allows(host, port, a) for a in addresses
    ):
        raise TargetRefusedError(REFUSED_MESSAGE)
    return addresses[0]


def refused_without_dns(url: str, allowlist: Allowlist) -> bool:
    """True when the URL's host is an address (or localhost) the guard would refuse: such a
    URL is refused when an integration is saved. DNS names are left to send time, since
    their answers change."""
    target = parse_outbound_url(url)
    if target.ip is not None:
        candidates: tuple[str | IPAddress, ...] = (target.ip,)
    elif target.host == "localhost" or target.host.endswith(".localhost"):
        candidates = _LOCALHOST
    else:
        return False
    for address in candidates:
        try:
            check_target(target.host, target.port, [address], allowlist)
            return False
        except TargetRefusedError:
            continue
    return True


_LOCALHOST: Final = ("127.0.0.1", "::1")


def _parse_all(values: Iterable[str | IPAddress]) -> list[IPAddress] | None:
    try:
        return [parse_ip(v) for v in values]
    except ValueError:
        return None  # fail closed on anything the resolver should never have produced


@dataclass(frozen=True)
class OutboundUrl:
    """A validated http(s) URL for an integration, split into what the client needs."""

    scheme: str
    host: str  # lower-case DNS name (IDNA) or canonical IP literal without brackets
    port: int  # explicit, or the scheme's default
    target: str  # request target: path (at least "/") plus "?query" if any
    ip: IPAddress | None  # set when the host is an IP literal

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme]
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")

    @property
    def url(self) -> str:
        return self.origin + self.target


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Whitespace and controls smuggle headers (CR/LF) or are silently dropped by urllib (tab),
# and a backslash is read as "/" by browsers but not by urllib: all are parser differentials.
_FORBIDDEN_CHARS: Final = re.compile(r"[\x00-\x20\x7f\\]")


def parse_outbound_url(url: str, *, https_only: bool = False) -> OutboundUrl:
    """Validate an integration's outbound URL; raise ``ValidationError`` saying what is wrong.

    This checks the form only. Whether the host may be reached is decided at connect time by
    ``check_target``, because DNS answers change.
    """
    try:
        return _parse_outbound_url(url, https_only)
    except ValueError as exc:
        raise ValidationError(
            f"invalid URL: {exc}", problems=[FieldProblem(("url",), str(exc))]
        ) from None


def _parse_outbound_url(url: str, https_only: bool) -> OutboundUrl:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise ValueError("contains whitespace, a control character or a backslash")
    parts = urlsplit(url)
    allowed = ("https",) if https_only else ("http", "https")
    if parts.scheme.lower() not in allowed:
        raise ValueError(f"scheme must be {' or '.join(allowed)}")
    if "@" in parts.netloc:
        raise ValueError("credentials in the URL are not allowed; use the auth settings")
    host, ip = _url_host(parts.netloc, parts.hostname)
    scheme = parts.scheme.lower()
    port = _url_port(parts) or _DEFAULT_PORTS[scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return OutboundUrl(scheme, host, port, target, ip)


def _url_host(netloc: str, hostname: str | None) -> tuple[str, IPAddress | None]:
    if not hostname:
        raise ValueError("host is missing")
    if netloc.startswith("["):
        if "%" in hostname:
            raise ValueError("IPv6 zone identifiers are not allowed")
        address = ipaddress.IPv6Address(hostname)
        return str(address), address
    host = _parse_host(_idna(hostname))
    try:
        return host, ipaddress.IPv4Address(host)
    except ValueError:
        return host, None


def _idna(hostname: str) -> str:
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("host is not a valid internationalised domain name") from None


def _url_port(parts: SplitResult) -> int | None:
    try:
        port = parts.port  # urllib raises ValueError for non-numeric or > 65535
    except ValueError:
        raise ValueError("port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("port must be a number from 1 to 65535")
    return port
