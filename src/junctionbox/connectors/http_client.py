"""junctionbox's one outbound HTTP client: a lean HTTP/1.1 client behind the SSRF guard.

Every request goes through :class:`GuardedHttpClient`, which

1. validates the URL with :func:`~junctionbox.domain.netguard.parse_outbound_url` (once per
   URL string: the verdict is remembered);
2. for an IP-literal host runs :func:`~junctionbox.domain.netguard.check_target` before
   anything is sent;
3. for a DNS name resolves once through :class:`GuardedResolver`, which checks *every*
   resolved address and hands back only the vetted one, and connects the socket to exactly
   that address (no second lookup, no DNS-rebinding window); vetted answers are cached for
   ``dns_cache_seconds``;
4. never follows a redirect: a 3xx is returned as the outcome;
5. ignores proxy environment variables and keeps no cookies (one pool serves all tenants).

The wire protocol is :mod:`junctionbox.connectors.http1` (asyncio Protocols and httptools),
which replaced aiohttp's client for speed (see ``docs/benchmarks.md``, "Outbound HTTP
client"): keep-alive pool, framing checks, limits on the response head, and its rule for
resending a request (only idempotent ones, only when a kept-alive connection was closed
before any response byte).

``send`` asks for ``gzip, deflate`` unless the caller sets ``Accept-Encoding`` and decodes
the body; ``stream`` passes the body on as encoded unless ``decompress=True``. Bodies read
by ``send`` (and ``StreamedResponse.read``) are capped.

Refused targets raise :class:`~junctionbox.domain.netguard.TargetRefusedError` (final, one
generic message). Network failures raise :class:`OutboundNetworkError` whose ``kind`` is the
:class:`~junctionbox.domain.retry.NetworkErrorKind` the retry classifier takes. Messages carry
neither the URL (its query may hold a token) nor any header value.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from junctionbox.connectors.http1 import (
    BodyDecodeError,
    BodyDecoder,
    Deadline,
    Http1Client,
    InvalidResponseError,
    Origin,
    PeerClosedError,
    Response,
    body_decoder,
    request_head,
)
from junctionbox.domain.netguard import (
    REFUSED_MESSAGE,
    Allowlist,
    TargetRefusedError,
    check_target,
    parse_outbound_url,
)
from junctionbox.domain.retry import NetworkErrorKind
from junctionbox.errors import UpstreamError, UpstreamTimeoutError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "GuardedHttpClient",
    "GuardedResolver",
    "HttpResult",
    "OutboundNetworkError",
    "OutboundTimeoutError",
    "StreamedResponse",
]

DEFAULT_POOL_SIZE: Final = 64
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
DEFAULT_USER_AGENT: Final = "junctionbox"
_READ_CHUNK: Final = 16 * 1024
_VETTED_URLS: Final = 4096  # URLs whose vetting is remembered (per client)
_CACHED_NAMES: Final = 4096  # vetted DNS answers remembered (per client)
_ACCEPT_ENCODING: Final = "gzip, deflate"
DefaultHeaders = tuple[tuple[str, str, str], ...]


class OutboundNetworkError(UpstreamError):
    """The destination could not be reached or did not answer with valid HTTP."""

    def __init__(self, kind: NetworkErrorKind, message: str | None = None) -> None:
        self.kind = kind
        super().__init__(message or f"outbound request failed: {kind.value}")


class OutboundTimeoutError(OutboundNetworkError, UpstreamTimeoutError):
    """The destination did not answer in time (kind is always ``ETIMEDOUT``)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(NetworkErrorKind.TIMEOUT, message)


class NameResolutionError(OSError):
    """The destination's name could not be resolved."""


@dataclass(frozen=True)
class HttpResult:
    """What came back: the status, headers in received order, and a capped body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    truncated: bool  # the body was longer than the cap and was cut there
    elapsed: float  # seconds from the start of ``send`` to the end of reading the body

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in received order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


class GuardedResolver(AbstractResolver):
    """Resolves with the loop's getaddrinfo and returns only an address ``check_target`` vets.

    All answers are checked: one private address among public ones refuses the lot.
    """

    def __init__(self, allowlist: Allowlist) -> None:
        self._allowlist = allowlist

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except socket.gaierror as exc:
            raise OSError(exc.errno, "name resolution failed") from exc
        addresses: list[tuple[int, int, str]] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            if fam == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
                raise TargetRefusedError(REFUSED_MESSAGE)  # scoped (link-local) address
            addresses.append((int(fam), proto, str(sockaddr[0])))
        vetted = check_target(host, port, [a for _f, _p, a in addresses], self._allowlist)
        chosen_family, chosen_proto = next(
            (f, p) for f, p, a in addresses if ipaddress.ip_address(a) == vetted
        )
        return [
            {
                "hostname": host,
                "host": str(vetted),
                "port": port,
                "family": chosen_family,
                "proto": chosen_proto,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class _Target:
    """A vetted URL, split into what goes on the wire."""

    origin: Origin  # (scheme, host, port): the pool's key; host is IDNA or an IP literal
    host_header: str  # host[:port] as the Host header carries it
    path: str  # the request target, percent-encoded as aiohttp (yarl) did


class GuardedHttpClient:
    """One shared keep-alive pool for every outbound HTTP request.

    Usable as ``async with``; the pool is created lazily on first use otherwise. Call
    :meth:`close` at shutdown.
    """

    def __init__(
        self,
        allowlist: Allowlist | None = None,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        per_host_limit: int = 0,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        dns_cache_seconds: int = 10,
        user_agent: str = DEFAULT_USER_AGENT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if pool_size < 1 or per_host_limit < 0 or max_response_bytes < 0:
            raise ValueError("pool_size >= 1, per_host_limit >= 0, max_response_bytes >= 0")
        self._allowlist = allowlist or Allowlist()
        self._pool_size = pool_size
        self._per_host_limit = per_host_limit
        self._timeout_seconds = timeout_seconds
        self._max_response_bytes = max_response_bytes
        self._dns_cache_seconds = dns_cache_seconds
        self._user_agent = user_agent
        self._defaults = _defaults(user_agent)
        self._ssl_context = ssl_context
        self._resolver = GuardedResolver(self._allowlist)
        self._client: Http1Client | None = None
        # URL string -> its vetted target. Vetting depends only on the string and the
        # allowlist (fixed per client): an integration's URL is parsed and checked once,
        # not at every delivery. Refusals are not remembered (they raise every time); DNS
        # names are still vetted at each resolution.
        self._vetted: dict[str, _Target] = {}
        # (host, port) -> (vetted address, expiry): only answers that passed the guard.
        self._names: dict[tuple[str, int], tuple[str, float]] = {}

    @property
    def user_agent(self) -> str:
        return self._user_agent

    async def __aenter__(self) -> GuardedHttpClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the pool (idempotent)."""
        self._get_client()

    def _get_client(self) -> Http1Client:
        if self._client is None:
            self._client = Http1Client(
                self._resolve,
                limit=self._pool_size,
                limit_per_host=self._per_host_limit,
                ssl_context=self._ssl_context,
            )
        return self._client

    async def close(self) -> None:
        """Close the pool; further ``send`` calls open a new one."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _target(self, url: str) -> _Target:
        target = self._vetted.get(url)
        if target is None:
            target = _vet_url(url, self._allowlist)
            if len(self._vetted) >= _VETTED_URLS:
                self._vetted.clear()
            self._vetted[url] = target
        return target

    async def _resolve(self, host: str, port: int) -> str:
        """The one address to connect to for ``host:port``, vetted by the guard."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return str(check_target(host, port, [literal], self._allowlist))
        now = time.monotonic()
        cached = self._names.get((host, port))
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            (answer,) = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except OSError as exc:
            raise NameResolutionError(exc.errno, "name resolution failed") from exc
        if len(self._names) >= _CACHED_NAMES:
            self._names.clear()
        self._names[(host, port)] = (answer["host"], now + self._dns_cache_seconds)
        return answer["host"]

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: bytes = b"",
        timeout_seconds: float | None = None,
    ) -> HttpResult:
        """Send one request and return its outcome; any HTTP status is a result, not an error.

        Raises ``ValidationError`` for a malformed URL, ``TargetRefusedError`` for a refused
        destination and ``OutboundNetworkError`` (``OutboundTimeoutError``) for failures.
        """
        target = self._target(url)
        client = self._get_client()
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        method = method.upper()
        head = request_head(
            method, target.path, target.host_header, _pairs(headers), len(body),
            self._defaults[1] if body else self._defaults[0],
        )  # fmt: skip
        started = time.perf_counter()
        try:
            with Deadline(timeout):
                response = await client.request(target.origin, method, head, body)
                try:
                    decoder = body_decoder(response.content_encoding)
                    data, truncated = await _read_capped(
                        response.next_chunk, self._max_response_bytes, decoder
                    )
                finally:
                    response.release()
        except TargetRefusedError:
            raise
        except Exception as exc:  # mapped below; anything unknown is re-raised
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return HttpResult(
            status=response.status,
            headers=tuple(response.headers),
            body=data,
            truncated=truncated,
            elapsed=time.perf_counter() - started,
        )

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout_seconds: float | None = None,
        decompress: bool = False,
    ) -> AbstractAsyncContextManager[StreamedResponse]:
        """Send one request and yield its response with the body unread, for proxying.

        ``async with client.stream(...) as response:``. The same guard and error mapping as
        :meth:`send` (raised on entering the block). ``timeout_seconds`` bounds the wait for
        the response head and each read of the body (not the whole transfer, so a large
        body may stream for longer). Without ``decompress`` the body is passed on as the
        upstream encoded it (its ``Content-Encoding`` stays true). Leaving the block returns
        the connection to the pool if the body was read to the end, else closes it.
        """
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        return _Stream(self, method, url, headers, body, timeout, decompress)

    async def open(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout_seconds: float | None = None,
        decompress: bool = False,
    ) -> StreamedResponse:
        """:meth:`stream` without the context manager, for a caller that hands the response
        on (the proxy answers with it): the caller must :meth:`StreamedResponse.release`
        it, on every path."""
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        response = await self._open_stream(method, url, headers, body, timeout)
        return StreamedResponse(response, timeout, decompress)

    async def _open_stream(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes, bound: float
    ) -> Response:
        target = self._target(url)
        client = self._get_client()
        method = method.upper()
        head = request_head(
            method, target.path, target.host_header, _pairs(headers), len(body),
            self._defaults[1] if body else self._defaults[0],
        )  # fmt: skip
        try:
            with Deadline(bound):
                return await client.request(target.origin, method, head, body)
        except TargetRefusedError:
            raise
        except Exception as exc:
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc


class _Stream:
    """The context of :meth:`GuardedHttpClient.stream` (a class: cheaper than a generator
    context manager on a path taken by every proxied call)."""

    __slots__ = ("_args", "_client", "_decompress", "_response", "_timeout")

    def __init__(
        self,
        client: GuardedHttpClient,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
        decompress: bool,
    ) -> None:
        self._client = client
        self._args = (method, url, headers, body)
        self._timeout = timeout
        self._decompress = decompress
        self._response: Response | None = None

    async def __aenter__(self) -> StreamedResponse:
        method, url, headers, body = self._args
        response = await self._client._open_stream(method, url, headers, body, self._timeout)
        self._response = response
        return StreamedResponse(response, self._timeout, self._decompress)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            self._response.release()


class StreamedResponse:
    """An upstream response whose body is read chunk by chunk (errors mapped).

    Each wait for more of the body is bounded by the request's timeout.
    """

    def __init__(self, response: Response, timeout: float, decompress: bool) -> None:
        self._response = response
        self._timeout = timeout
        self._decoder = body_decoder(response.content_encoding) if decompress else None
        self.status = response.status
        self.headers = tuple(response.headers)

    def release(self) -> None:
        """Give the connection back: to the pool if the body was read to the end, else
        close it. Idempotent."""
        self._response.release()

    async def _next(self) -> bytes:
        response = self._response
        if response.ready:
            return await response.next_chunk()
        with Deadline(self._timeout):
            return await response.next_chunk()

    async def chunks(self, size: int = _READ_CHUNK) -> AsyncIterator[bytes]:
        try:
            decoder = self._decoder
            while True:
                raw = await self._next()
                if not raw:
                    tail = decoder.flush() if decoder is not None else b""
                    if tail:
                        yield tail
                    return
                data = decoder.decode(raw) if decoder is not None else raw
                for start in range(0, len(data), size):
                    yield data[start : start + size]
        except Exception as exc:
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def read(self, cap: int) -> tuple[bytes, bool]:
        """The body, at most ``cap`` bytes; True when it was longer (and cut)."""
        if self._decoder is None:
            whole = self._response.take_whole()  # a short answer has usually all arrived
            if whole is not None:
                return (whole[:cap], True) if len(whole) > cap else (whole, False)
        try:
            return await _read_capped(self._next, cap, self._decoder)
        except Exception as exc:
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc


def _vet_url(url: str, allowlist: Allowlist) -> _Target:
    parsed = parse_outbound_url(url)
    # yarl encodes the path as aiohttp used to send it (non-ASCII percent-encoded).
    yurl = URL(parsed.url)
    host = yurl.raw_host or ""
    # What we connect to must be what we parsed: refuse any parser differential.
    if host.strip("[]").lower() != parsed.host or yurl.port != parsed.port:
        raise TargetRefusedError(REFUSED_MESSAGE)
    if parsed.ip is not None:
        # An IP literal needs no resolver: check it here, before any send.
        check_target(parsed.host, parsed.port, [parsed.ip], allowlist)
    return _Target(
        origin=(parsed.scheme, parsed.host, parsed.port),
        host_header=parsed.origin.partition("://")[2],
        path=yurl.raw_path_qs,
    )


def _pairs(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> Sequence[tuple[str, str]]:
    # A list or tuple first: the isinstance check against the Mapping ABC costs more.
    if isinstance(headers, list | tuple):
        return headers
    return list(headers.items() if isinstance(headers, Mapping) else headers or ())


def _defaults(user_agent: str) -> tuple[DefaultHeaders, DefaultHeaders]:
    """The headers aiohttp used to add where the caller set none (``request_head``'s
    ``defaults``): without a body, and with one (its ``Content-Type`` too)."""
    bodiless: DefaultHeaders = (
        ("accept", "Accept", "*/*"),
        ("accept-encoding", "Accept-Encoding", _ACCEPT_ENCODING),
        ("user-agent", "User-Agent", user_agent),
    )
    return bodiless, (*bodiless, ("content-type", "Content-Type", "application/octet-stream"))


async def _read_capped(
    next_chunk: Callable[[], Awaitable[bytes]], cap: int, decoder: BodyDecoder | None
) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        raw = await next_chunk()
        if not raw:
            if decoder is not None:
                tail = decoder.flush()
                chunks.append(tail)
                size += len(tail)
            break
        data = decoder.decode(raw, cap + 1 - size) if decoder is not None else raw
        chunks.append(data)
        size += len(data)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if len(data) > cap:
        return data[:cap], True
    return data, False


def _map_error(exc: BaseException) -> OutboundNetworkError | None:
    # Order matters: PeerClosedError is a ConnectionResetError is an OSError.
    if isinstance(exc, TimeoutError):
        return OutboundTimeoutError()
    if isinstance(exc, NameResolutionError):
        return OutboundNetworkError(NetworkErrorKind.DNS)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return OutboundNetworkError(NetworkErrorKind.TLS)
    if isinstance(exc, InvalidResponseError):
        # A response that is not valid HTTP (bad status line, bad headers): protocol failure.
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_ABORTED, "invalid HTTP response")
    if isinstance(exc, PeerClosedError):
        # The peer closed or reset the connection before a complete response.
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_RESET, str(exc))
    if isinstance(exc, BodyDecodeError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_RESET, str(exc))
    if isinstance(exc, ConnectionRefusedError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_REFUSED)
    if isinstance(exc, ConnectionResetError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_RESET)
    if isinstance(exc, OSError):
        return OutboundNetworkError(
            _ERRNO_KINDS.get(exc.errno or 0, NetworkErrorKind.CONNECTION_ABORTED)
        )
    return None


_ERRNO_KINDS: Final = {
    errno.ECONNRESET: NetworkErrorKind.CONNECTION_RESET,
    errno.EPIPE: NetworkErrorKind.CONNECTION_RESET,
    errno.ECONNREFUSED: NetworkErrorKind.CONNECTION_REFUSED,
    errno.ECONNABORTED: NetworkErrorKind.CONNECTION_ABORTED,
    errno.ETIMEDOUT: NetworkErrorKind.TIMEOUT,
}
