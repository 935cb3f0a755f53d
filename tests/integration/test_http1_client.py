"""The HTTP/1.1 wire rules of the outbound client, against scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import ipaddress
import socket
import ssl
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.integration.raw_http_server import (
    CLOSE,
    RESET,
    RawServer,
    SeenRequest,
    Step,
    chunked,
    response,
)

from junctionbox.connectors.http1 import Deadline, Http1Client, Response, request_head
from junctionbox.connectors.http_client import (
    GuardedHttpClient,
    OutboundNetworkError,
    OutboundTimeoutError,
    StreamedResponse,
)
from junctionbox.domain.netguard import TargetRefusedError, parse_allowlist
from junctionbox.domain.retry import NetworkErrorKind

T = 2.0  # the default bound of every request here; tests that time out pass their own


def ok(_req: SeenRequest) -> list[Step]:
    return [response(200, b"ok")]


def client_for(server: RawServer, **kwargs: object) -> GuardedHttpClient:
    options: dict[str, object] = {"timeout_seconds": T, "max_response_bytes": 1024}
    options.update(kwargs)
    return GuardedHttpClient(parse_allowlist(server.allowlist_entry), **options)  # type: ignore[arg-type]


async def _kinds(client: GuardedHttpClient, url: str) -> NetworkErrorKind:
    with pytest.raises(OutboundNetworkError) as info:
        await client.send("GET", url)
    return info.value.kind


# -- keep-alive and the retry rule -------------------------------------------------------


async def test_connections_are_kept_alive_and_reused() -> None:
    async with RawServer(ok) as server, client_for(server) as client:
        for _ in range(3):
            result = await client.send("POST", server.url("/a"), body=b"x")
            assert (result.status, result.body) == (200, b"ok")
    assert server.connections == 1
    assert [r.number for r in server.requests] == [0, 1, 2]


async def test_server_closing_an_idle_connection_is_noticed_before_reuse() -> None:
    def once_then_close(_req: SeenRequest) -> list[Step]:
        return [response(200, b"ok"), CLOSE]

    async with RawServer(once_then_close) as server, client_for(server) as client:
        await client.send("POST", server.url(), body=b"1")
        await asyncio.sleep(0.1)  # the FIN arrives while the connection is idle
        result = await client.send("POST", server.url(), body=b"2")
    assert result.status == 200
    assert [r.body for r in server.requests] == [b"1", b"2"]  # nothing sent twice
    assert server.connections == 2


def _close_second_request(req: SeenRequest) -> list[Step]:
    # Answers the first request on each connection; the second on a connection is read and
    # the connection closed without a byte of answer (a keep-alive race lost by the client).
    if req.number == 0:
        return [response(200, b"ok")]
    return [CLOSE]


async def test_idempotent_request_is_resent_once_on_a_fresh_connection() -> None:
    async with RawServer(_close_second_request) as server, client_for(server) as client:
        await client.send("GET", server.url("/first"))
        result = await client.send("GET", server.url("/again"))
    assert result.status == 200
    assert [(r.connection, r.number, r.path) for r in server.requests] == [
        (0, 0, "/first"),
        (0, 1, "/again"),
        (1, 0, "/again"),
    ]


async def test_post_that_may_have_been_received_is_never_resent() -> None:
    async with RawServer(_close_second_request) as server, client_for(server) as client:
        await client.send("POST", server.url("/first"), body=b"1")
        with pytest.raises(OutboundNetworkError) as info:
            await client.send("POST", server.url("/again"), body=b"2")
    assert info.value.kind is NetworkErrorKind.CONNECTION_RESET
    assert [r.body for r in server.requests] == [b"1", b"2"]


async def test_failure_on_a_fresh_connection_is_not_retried() -> None:
    async with RawServer(lambda _r: [CLOSE]) as server, client_for(server) as client:
        with pytest.raises(OutboundNetworkError) as info:
            await client.send("GET", server.url())
    assert info.value.kind is NetworkErrorKind.CONNECTION_RESET
    assert len(server.requests) == 1


async def test_response_cut_short_is_not_retried_even_for_get() -> None:
    def cut(req: SeenRequest) -> list[Step]:
        if req.number == 0:
            return [response(200, b"ok")]
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", CLOSE]

    async with RawServer(cut) as server, client_for(server) as client:
        await client.send("GET", server.url())
        with pytest.raises(OutboundNetworkError) as info:
            await client.send("GET", server.url())
    assert info.value.kind is NetworkErrorKind.CONNECTION_RESET
    assert len(server.requests) == 2


async def test_connection_close_header_is_honoured() -> None:
    def closing(_req: SeenRequest) -> list[Step]:
        return [response(200, b"ok", [("Connection", "close")])]

    async with RawServer(closing) as server, client_for(server) as client:
        for _ in range(2):
            assert (await client.send("GET", server.url())).body == b"ok"
    assert server.connections == 2


async def test_http10_without_keep_alive_is_not_reused() -> None:
    def old(_req: SeenRequest) -> list[Step]:
        return [response(200, b"ok", version="1.0")]

    async with RawServer(old) as server, client_for(server) as client:
        for _ in range(2):
            assert (await client.send("GET", server.url())).body == b"ok"
    assert server.connections == 2


async def test_request_never_asks_to_close_and_framing_is_ours() -> None:
    async with RawServer(ok) as server, client_for(server) as client:
        port = server.port
        await client.send(
            "POST",
            server.url(),
            headers=[("Content-Length", "99"), ("Transfer-Encoding", "chunked"), ("X-A", "1")],
            body=b"abc",
        )
    (req,) = server.requests
    assert req.body == b"abc"
    assert req.header("content-length") == "3"
    assert req.header("transfer-encoding") is None
    assert req.header("host") == f"127.0.0.1:{port}"
    assert req.header("connection") is None
    assert req.header("accept-encoding") == "gzip, deflate"


async def test_header_with_a_newline_is_refused_before_anything_is_sent() -> None:
    async with RawServer(ok) as server, client_for(server) as client:
        with pytest.raises(ValueError, match="newline"):
            await client.send("GET", server.url(), headers={"X-A": "1\r\nX-Injected: 2"})
    assert server.connections == 0


async def test_unsolicited_bytes_on_an_idle_connection_drop_it() -> None:
    def chatty(_req: SeenRequest) -> list[Step]:
        return [response(200, b"ok"), 0.05, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]

    async with RawServer(chatty) as server, client_for(server) as client:
        await client.send("GET", server.url())
        await asyncio.sleep(0.2)
        assert (await client.send("GET", server.url())).body == b"ok"
    assert server.connections == 2


async def test_bytes_after_a_complete_response_spoil_only_the_connection() -> None:
    def twice(_req: SeenRequest) -> list[Step]:
        return [response(200, b"first", [("X-N", "1")]) + response(200, b"second", [("X-N", "2")])]

    async with RawServer(twice) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
        assert (result.body, result.header("x-n")) == (b"first", "1")
        assert (await client.send("GET", server.url())).body == b"first"
    assert server.connections == 2


async def test_close_closes_idle_connections() -> None:
    async with RawServer(ok) as server:
        client = client_for(server)
        await client.send("GET", server.url())
        await client.close()
        for _ in range(50):
            if server.closed_by_client:
                break
            await asyncio.sleep(0.01)
        assert server.closed_by_client == 1
        assert (await client.send("GET", server.url())).status == 200  # a new pool
        await client.close()


# -- framing ------------------------------------------------------------------------------


async def test_chunked_body_is_reassembled() -> None:
    def chunks(_req: SeenRequest) -> list[Step]:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        return [head, chunked(b"hello ", b"chunked ")[:-5], 0.05, b"0\r\n\r\n"]

    async with RawServer(chunks) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
        assert result.body == b"hello chunked "
        await client.send("GET", server.url())
    assert server.connections == 1  # chunked framing ended cleanly: reused


async def test_body_without_length_is_read_to_eof_then_closed() -> None:
    def eof(_req: SeenRequest) -> list[Step]:
        return [response(200, b"until the end", length=False), 0.05, b" of it", CLOSE]

    async with RawServer(eof) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
        assert result.body == b"until the end of it"
        assert (await client.send("GET", server.url())).status == 200
    assert server.connections == 2


async def test_head_response_has_no_body_and_connection_is_reused() -> None:
    def head(_req: SeenRequest) -> list[Step]:
        return [b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"]

    async with RawServer(head) as server, client_for(server) as client:
        for _ in range(2):
            result = await client.send("HEAD", server.url())
            assert (result.status, result.body, result.header("content-length")) == (
                200,
                b"",
                "1234",
            )
    assert server.connections == 1


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    def empty(_req: SeenRequest) -> list[Step]:
        return [f"HTTP/1.1 {status} X\r\nETag: e\r\n\r\n".encode()]

    async with RawServer(empty) as server, client_for(server) as client:
        for _ in range(2):
            result = await client.send("GET", server.url())
            assert (result.status, result.body) == (status, b"")
    assert server.connections == 1


async def test_informational_response_is_skipped() -> None:
    def continued(_req: SeenRequest) -> list[Step]:
        return [b"HTTP/1.1 100 Continue\r\n\r\n", response(201, b"made")]

    async with RawServer(continued) as server, client_for(server) as client:
        result = await client.send("POST", server.url(), body=b"x")
    assert (result.status, result.body) == (201, b"made")


async def test_headers_keep_order_case_and_duplicates() -> None:
    def cookies(_req: SeenRequest) -> list[Step]:
        headers = [("Set-Cookie", "a=1"), ("X-Mixed-Case", "v"), ("set-cookie", "b=2")]
        return [response(200, b"", headers)]

    async with RawServer(cookies) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
    assert result.headers[:3] == (
        ("Set-Cookie", "a=1"),
        ("X-Mixed-Case", "v"),
        ("set-cookie", "b=2"),
    )
    assert result.header_values("SET-COOKIE") == ["a=1", "b=2"]


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 300 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["garbage", "cl-and-te", "two-lengths", "bad-chunk", "too-many-headers", "huge-head"],
)
async def test_invalid_or_ambiguous_responses_are_protocol_errors(raw: bytes) -> None:
    async with RawServer(lambda _r: [raw, 0.5]) as server, client_for(server) as client:
        assert await _kinds(client, server.url()) is NetworkErrorKind.CONNECTION_ABORTED


async def test_reset_before_an_answer_is_econnreset() -> None:
    async with RawServer(lambda _r: [RESET]) as server, client_for(server) as client:
        with pytest.raises(OutboundNetworkError) as info:
            await client.send("POST", server.url(), body=b"x")
    assert info.value.kind is NetworkErrorKind.CONNECTION_RESET


# -- bodies: compression and the cap ------------------------------------------------------


def _gzip_answer(_req: SeenRequest) -> list[Step]:
    return [response(200, gzip.compress(b"z" * 3000), [("Content-Encoding", "gzip")])]


async def test_send_decodes_gzip_and_caps_the_decoded_body() -> None:
    async with RawServer(_gzip_answer) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
    assert result.truncated
    assert result.body == b"z" * 1024
    assert result.header("content-encoding") == "gzip"


@pytest.mark.parametrize("raw_deflate", [False, True])
async def test_send_decodes_deflate(raw_deflate: bool) -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
    packed = packer.compress(b"deflated") + packer.flush()

    def deflate(_req: SeenRequest) -> list[Step]:
        return [response(200, packed, [("Content-Encoding", "deflate")])]

    async with RawServer(deflate) as server, client_for(server) as client:
        assert (await client.send("GET", server.url())).body == b"deflated"


async def test_corrupt_gzip_is_an_error_not_garbage() -> None:
    def corrupt(_req: SeenRequest) -> list[Step]:
        return [response(200, b"not gzip at all", [("Content-Encoding", "gzip")])]

    async with RawServer(corrupt) as server, client_for(server) as client:
        assert await _kinds(client, server.url()) is NetworkErrorKind.CONNECTION_RESET


async def test_caller_accept_encoding_is_kept() -> None:
    async with RawServer(ok) as server, client_for(server) as client:
        await client.send("GET", server.url(), headers={"Accept-Encoding": "identity"})
    assert server.requests[0].header("accept-encoding") == "identity"


async def test_stream_passes_encoding_through_unless_asked_to_decode() -> None:
    async with RawServer(_gzip_answer) as server, client_for(server) as client:
        async with client.stream("GET", server.url()) as upstream:
            raw = b"".join([c async for c in upstream.chunks()])
        assert gzip.decompress(raw) == b"z" * 3000
        async with client.stream("GET", server.url(), decompress=True) as upstream:
            body, truncated = await upstream.read(10_000)
        assert (body, truncated) == (b"z" * 3000, False)
    assert server.connections == 1  # both bodies read to the end: the connection was kept


async def test_truncated_read_drops_a_connection_still_receiving() -> None:
    def big(_req: SeenRequest) -> list[Step]:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
        return [head + b"b" * 2000, 0.1, b"b" * 3000]

    async with RawServer(big) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
        assert (len(result.body), result.truncated) == (1024, True)
        await client.send("GET", server.url())
    assert server.connections == 2  # the remainder was not drained


async def test_truncated_body_received_whole_keeps_the_connection() -> None:
    def big(_req: SeenRequest) -> list[Step]:
        return [response(200, b"b" * 5000)]

    async with RawServer(big) as server, client_for(server) as client:
        result = await client.send("GET", server.url())
        assert (len(result.body), result.truncated) == (1024, True)
        await asyncio.sleep(0.05)
        await client.send("GET", server.url())
    assert server.connections == 1


async def test_large_body_is_streamed_with_back_pressure() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, more than the client buffers

    def huge(_req: SeenRequest) -> list[Step]:
        return [response(200, payload)]

    received = bytearray()
    async with (
        RawServer(huge) as server,
        client_for(server) as client,
        client.stream("GET", server.url()) as upstream,
    ):
        async for chunk in upstream.chunks(size=4096):
            assert len(chunk) <= 4096
            received += chunk
            await asyncio.sleep(0)
    assert bytes(received) == payload


async def test_large_request_body_is_sent_whole() -> None:
    body = b"q" * (3 * 1024 * 1024)
    async with RawServer(ok) as server, client_for(server) as client:
        assert (await client.send("PUT", server.url(), body=body)).status == 200
    assert server.requests[0].body == body


# -- pool limits and timeouts -------------------------------------------------------------


def _slow(_req: SeenRequest) -> list[Step]:
    return [0.2, response(200, b"ok")]


async def test_pool_limit_makes_requests_wait_for_a_free_connection() -> None:
    async with RawServer(_slow) as server, client_for(server, pool_size=1) as client:
        results = await asyncio.gather(*(client.send("GET", server.url()) for _ in range(3)))
    assert [r.status for r in results] == [200, 200, 200]
    assert server.max_open == 1


async def test_per_host_limit() -> None:
    async with RawServer(_slow) as server, client_for(server, per_host_limit=2) as client:
        await asyncio.gather(*(client.send("GET", server.url()) for _ in range(4)))
    assert server.max_open == 2


async def test_wait_for_a_free_connection_is_bounded_by_the_timeout() -> None:
    async with RawServer(_slow) as server, client_for(server, pool_size=1) as client:
        first = asyncio.create_task(client.send("GET", server.url()))
        await asyncio.sleep(0.05)
        with pytest.raises(OutboundTimeoutError):
            await client.send("GET", server.url(), timeout_seconds=0.05)
        assert (await first).status == 200
        # The timed-out waiter gave its place back: the pool still works.
        assert (await client.send("GET", server.url())).status == 200
    assert len(server.requests) == 2


async def test_stream_head_timeout() -> None:
    async with RawServer(lambda _r: [5.0]) as server, client_for(server) as client:
        with pytest.raises(OutboundTimeoutError):
            async with client.stream("GET", server.url(), timeout_seconds=0.1):
                pass


async def test_stream_read_timeout_applies_to_each_read() -> None:
    def stalls(_req: SeenRequest) -> list[Step]:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
        return [head, b"abc", 0.06, b"d", 0.06, b"e", 5.0, b"f"]

    got: list[bytes] = []

    async def read_all(upstream: StreamedResponse) -> None:
        async for chunk in upstream.chunks():
            got.append(chunk)

    async with (
        RawServer(stalls) as server,
        client_for(server) as client,
        client.stream("GET", server.url(), timeout_seconds=0.3) as upstream,
    ):
        with pytest.raises(OutboundTimeoutError):
            await read_all(upstream)
    assert (
        b"".join(got) == b"abcde"
    )  # the whole transfer outlived no single read's bound but the last


# -- TLS and the guard --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "junctionbox test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("partner.test"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
async def tls_server(tls_files: tuple[Path, Path]) -> AsyncIterator[RawServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    async with RawServer(ok, ssl_context=context) as server:
        yield server


async def test_tls_to_a_trusted_certificate(
    tls_server: RawServer, tls_files: tuple[Path, Path]
) -> None:
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    async with client_for(tls_server, ssl_context=trusted) as client:
        for _ in range(2):
            assert (await client.send("GET", tls_server.url())).body == b"ok"
    assert tls_server.connections == 1


async def test_untrusted_certificate_is_a_tls_error(tls_server: RawServer) -> None:
    async with client_for(tls_server) as client:
        assert await _kinds(client, tls_server.url()) is NetworkErrorKind.TLS
    assert tls_server.requests == []


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make the running loop resolve ``answers``' names; returns the names looked up."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> object:
        if host not in answers:
            return await real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


async def test_dns_name_is_resolved_once_vetted_and_connected_with_sni(
    tls_server: RawServer, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _fake_dns(monkeypatch, {"partner.test": ["127.0.0.1"]})
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    allow = parse_allowlist(f"partner.test:{tls_server.port}")
    async with GuardedHttpClient(allow, timeout_seconds=T, ssl_context=trusted) as client:
        for _ in range(2):
            result = await client.send("GET", tls_server.url("/x", host="partner.test"))
            assert result.status == 200
    assert asked == ["partner.test"]
    assert tls_server.requests[0].header("host") == f"partner.test:{tls_server.port}"


async def test_dns_name_resolving_to_a_private_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with RawServer(ok) as server:
        _fake_dns(monkeypatch, {"evil.test": ["127.0.0.1"]})
        async with GuardedHttpClient(timeout_seconds=T) as client:
            with pytest.raises(TargetRefusedError):
                await client.send("GET", server.url(host="evil.test"))
    assert server.connections == 0


async def test_private_ip_literal_is_refused_without_connecting() -> None:
    async with RawServer(ok) as server, GuardedHttpClient(timeout_seconds=T) as client:
        with pytest.raises(TargetRefusedError):
            await client.send("GET", server.url())
    assert server.connections == 0


async def test_answer_before_the_whole_body_was_sent_is_returned() -> None:
    async def refuse_upload(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head only; the body is never read
        writer.write(response(413, b"too big", [("Connection", "close")]))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(refuse_upload, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with GuardedHttpClient(
            parse_allowlist(f"127.0.0.1:{port}"), timeout_seconds=T
        ) as client:
            result = await client.send(
                "POST", f"http://127.0.0.1:{port}/", body=b"u" * (32 * 1024 * 1024)
            )
    finally:
        server.close()
        await server.wait_closed()
    assert (result.status, result.body) == (413, b"too big")


async def test_idle_connections_are_closed_after_the_keepalive_time() -> None:
    async def vetted(host: str, _port: int) -> str:
        return host

    async with RawServer(ok) as server:
        client = Http1Client(vetted, limit=4, keepalive_seconds=0.1)
        head = request_head("GET", "/", f"127.0.0.1:{server.port}", [], 0)
        response = await client.request(("http", "127.0.0.1", server.port), "GET", head)
        assert await response.next_chunk() == b"ok"
        assert await response.next_chunk() == b""
        response.release()
        for _ in range(100):
            if server.closed_by_client:
                break
            await asyncio.sleep(0.02)
        assert server.closed_by_client == 1
        client.close()


async def test_deadline_turns_only_its_own_cancellation_into_timeout() -> None:
    with pytest.raises(TimeoutError), Deadline(0.01):
        await asyncio.sleep(1)

    async def cancelled_from_outside() -> None:
        with Deadline(5):
            await asyncio.sleep(1)

    task = asyncio.create_task(cancelled_from_outside())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_released_response_is_freed_without_the_garbage_collector() -> None:
    # Its parser holds its callbacks: a reference cycle per exchange unless release breaks
    # it, and the collector's passes cost more than the exchange (the proxy's benchmark).
    async with RawServer(ok) as server, client_for(server) as client:
        await client.send("POST", server.url("/a"), body=b"x")  # the connection is open
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept for inspection
        try:
            upstream = await client.open("POST", server.url("/a"), body=b"x")
            assert await upstream.read(1024) == (b"ok", False)
            upstream.release()
            del upstream
            gc.collect()
            assert not [o for o in gc.garbage if isinstance(o, Response)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
