"""The SSRF guard's pure core: which addresses are public, the allowlist, URL validation."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from junctionbox.domain.netguard import (
    REFUSED_MESSAGE,
    Allowlist,
    TargetRefusedError,
    check_target,
    is_public_address,
    parse_allowlist,
    parse_outbound_url,
)
from junctionbox.errors import ConfigurationError, ForbiddenError, ValidationError

REFUSED = [
    # IPv4 special-purpose space
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.0.1",
    "169.254.169.254",  # cloud metadata
    "169.254.170.2",  # ECS task metadata
    "168.63.129.16",  # Azure WireServer
    "100.64.0.1",  # CGNAT
    "100.100.100.200",  # Alibaba metadata, inside CGNAT
    "100.127.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "198.19.255.255",
    "192.88.99.1",
    "224.0.0.1",  # multicast (ipaddress 3.11 calls it global)
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    # IPv6 special-purpose space
    "::",
    "[::]",
    "::1",
    "[::1]",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",  # site-local
    "fc00::1",
    "fd12:3456::1",  # ULA
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "100::1",  # discard-only
    "2001:db8::1",  # documentation
    "3fff::1",  # documentation (RFC 9637)
    "2001:2::1",  # benchmarking
    "5f00::1",  # outside global unicast
    # IPv4 carried in IPv6
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible (deprecated): refused whatever it carries
    "::93.184.216.34",
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    "64:ff9b:1::5db8:d822",  # local-use NAT64: refused outright
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo with client 192.0.2.45
    "2001:0:a00:1::5db8:d822",  # Teredo server 10.0.0.1
    # Not addresses at all
    "",
    "localhost",
    "2130706433",
    "0x7f.0.0.1",
    "example.com",
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.32.0.1",  # just above 172.16/12
    "198.20.0.1",  # just above benchmarking
    "2606:4700::1111",
    "[2606:4700::1111]",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",  # IPv4-mapped public
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(address)


def test_accepts_address_objects() -> None:
    assert is_public_address(ipaddress.ip_address("8.8.8.8"))
    assert not is_public_address(ipaddress.ip_address("::ffff:127.0.0.1"))


ipv4s = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


@given(ipv4s)
def test_carrier_forms_decide_like_the_embedded_ipv4(v4: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(v4))
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1)
    expected = is_public_address(v4)
    assert is_public_address(mapped) is expected
    assert is_public_address(nat64) is expected
    assert is_public_address(six_to_four) is expected


@given(
    st.sampled_from(
        ["10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10"]
    ),
    st.integers(min_value=0),
)
def test_every_address_in_private_ranges_is_refused(cidr: str, offset: int) -> None:
    net = ipaddress.ip_network(cidr)
    assert not is_public_address(net[offset % net.num_addresses])


@given(st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address))
def test_ipv6_outside_global_unicast_is_refused_unless_it_carries_ipv4(
    address: ipaddress.IPv6Address,
) -> None:
    carriers = [ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96")]
    if address in ipaddress.ip_network("2000::/3") or any(address in n for n in carriers):
        return
    assert not is_public_address(address)


# --- check_target -------------------------------------------------------------------------

SINK = parse_allowlist("127.0.0.1:8099, sink.test:9000")


def test_public_target_returns_first_resolved_address() -> None:
    ip = check_target("example.com", 443, ["93.184.216.34", "2606:4700::1111"], Allowlist())
    assert ip == ipaddress.ip_address("93.184.216.34")


@pytest.mark.parametrize(
    ("host", "port", "resolved"),
    [
        ("localhost", 80, ["127.0.0.1"]),
        ("0.0.0.0", 80, ["0.0.0.0"]),
        ("[::]", 80, ["::"]),
        ("metadata", 80, ["169.254.169.254"]),
        ("cgnat", 80, ["100.64.0.1"]),
        ("mapped", 80, ["::ffff:127.0.0.1"]),
        ("nat64", 80, ["64:ff9b::a00:1"]),
        ("sixtofour", 80, ["2002:7f00:1::"]),
        ("rebind", 443, ["93.184.216.34", "10.0.0.1"]),  # one bad answer spoils all
        ("empty", 443, []),
        ("garbage", 443, ["not-an-ip"]),
        ("example.com", 0, ["93.184.216.34"]),
        ("example.com", 65536, ["93.184.216.34"]),
        ("127.0.0.1", 8098, ["127.0.0.1"]),  # allowlisted address, other port
        ("sink.test", 9001, ["127.0.0.1"]),  # allowlisted name, other port
        ("other.test", 8099, ["127.0.0.2"]),  # allowlisted port, other address
    ],
)
def test_refused_targets(host: str, port: int, resolved: list[str]) -> None:
    with pytest.raises(TargetRefusedError) as info:
        check_target(host, port, resolved, SINK)
    assert info.value.message == REFUSED_MESSAGE
    assert not info.value.problems


def test_refusal_is_one_generic_non_retryable_error() -> None:
    messages = set()
    for resolved in (["127.0.0.1"], ["169.254.169.254"], ["::1"], []):
        with pytest.raises(TargetRefusedError) as info:
            check_target("h", 80, resolved, Allowlist())
        messages.add(str(info.value))
        assert isinstance(info.value, ForbiddenError)
        assert info.value.status == 403  # a 4xx: retrying cannot help
    assert messages == {REFUSED_MESSAGE}
    assert "127" not in REFUSED_MESSAGE


@pytest.mark.parametrize(
    ("host", "port", "resolved"),
    [
        ("127.0.0.1", 8099, ["127.0.0.1"]),
        ("[127.0.0.1]", 8099, ["::ffff:127.0.0.1"]),
        ("some-alias", 8099, ["127.0.0.1"]),  # the address:port is what is allowed
        ("SINK.test.", 9000, ["127.0.0.1", "::1"]),  # the name allows all its addresses
    ],
)
def test_allowlisted_targets(host: str, port: int, resolved: list[str]) -> None:
    assert check_target(host, port, resolved, SINK) == ipaddress.ip_address(resolved[0])


def test_cidr_entries_allow_any_port() -> None:
    allow = parse_allowlist("10.20.0.0/16, fd00::/8")
    assert check_target("h", 1, ["10.20.3.4"], allow) == ipaddress.ip_address("10.20.3.4")
    assert check_target("h", 8443, ["fd00::5"], allow) == ipaddress.ip_address("fd00::5")
    with pytest.raises(TargetRefusedError):
        check_target("h", 1, ["10.21.0.1"], allow)


# --- parse_allowlist ----------------------------------------------------------------------


def test_parse_allowlist_entries() -> None:
    allow = parse_allowlist(" 127.0.0.1:8099 ,[::1]:8080, Sink.Test.:9000, 10.0.0.0/8, ::1 ,")
    assert allow.host_ports == {("127.0.0.1", 8099), ("::1", 8080), ("sink.test", 9000)}
    assert allow.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_empty_allowlist() -> None:
    assert parse_allowlist("") == Allowlist()
    assert parse_allowlist(" , ") == Allowlist()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("localhost", "expected host:port"),
        ("10.0.0.1/8", "host bits set"),
        ("0.0.0.0/0", "/0"),
        ("::/0", "/0"),
        ("host:0", "port"),
        ("host:65536", "port"),
        ("host:http", "port"),
        (":80", "host is empty"),
        ("bad_host-.com:80", "DNS name"),
        ("0x7f.1:80", "four decimal parts"),
        ("[::1]80", "[ipv6]:port"),
        ("[nope]:80", "IPv6"),
    ],
)
def test_bad_allowlist_entries_are_named(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_allowlist(f"127.0.0.1:1, {text}")
    assert repr(text) in info.value.message
    assert fragment in info.value.message
    assert [p.loc for p in info.value.problems] == [("JB_SSRF_ALLOWLIST", 1)]


# --- parse_outbound_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "target"),
    [
        ("https://example.com", "https", "example.com", 443, "/"),
        ("HTTP://Example.COM.:8080/a/b?x=1#frag", "http", "example.com", 8080, "/a/b?x=1"),
        ("http://93.184.216.34/", "http", "93.184.216.34", 80, "/"),
        ("http://[2606:4700::1111]:81/p", "http", "2606:4700::1111", 81, "/p"),
        ("https://bücher.example/", "https", "xn--bcher-kva.example", 443, "/"),
        ("http://[::]/", "http", "::", 80, "/"),  # well-formed; refused at connect time
    ],
)
def test_valid_urls(url: str, scheme: str, host: str, port: int, target: str) -> None:
    parsed = parse_outbound_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.target) == (
        scheme,
        host,
        port,
        target,
    )


def test_parsed_url_round_trip() -> None:
    parsed = parse_outbound_url("https://[2606:4700::1111]:443/hook?a=b")
    assert parsed.url == "https://[2606:4700::1111]/hook?a=b"
    assert parsed.ip == ipaddress.ip_address("2606:4700::1111")
    assert parse_outbound_url("http://example.com:8080").ip is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("//example.com/", "scheme"),
        ("https://user:pass@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https:///path", "host is missing"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "port"),
        ("https://example.com:https/", "port"),
        ("https://example.com/a\r\nX-Injected: 1", "whitespace"),
        ("https://example.com/\n", "whitespace"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/\t", "whitespace"),
        ("https://example.com\\@evil.test/", "backslash"),
        ("https://127.1/", "four decimal parts"),
        ("https://0x7f000001/", "four decimal parts"),
        ("https://2130706433/", "four decimal parts"),
        ("https://017700000001/", "four decimal parts"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://exa%2empe.com/", "DNS name"),
        ("https://" + "a" * 2100 + ".com/", "longer than"),
    ],
)
def test_invalid_urls(url: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_outbound_url(url)
    assert fragment in info.value.message
    assert info.value.problems[0].loc == ("url",)


def test_https_only() -> None:
    assert parse_outbound_url("https://example.com", https_only=True).scheme == "https"
    with pytest.raises(ValidationError, match="scheme must be https"):
        parse_outbound_url("http://example.com", https_only=True)


@given(st.text(max_size=20), st.sampled_from(["\r", "\n", " ", "\x00", "\t"]), st.text(max_size=20))
def test_control_characters_are_always_rejected(head: str, bad: str, tail: str) -> None:
    with pytest.raises(ValidationError):
        parse_outbound_url(f"https://example.com/{head}{bad}{tail}")
