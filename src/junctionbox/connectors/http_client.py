"""junctionbox's one outbound HTTP client: aiohttp behind the SSRF guard.

Every request goes through :class:`GuardedHttpClient`, which

1. validates the URL with :func:`~junctionbox.domain.netguard.parse_outbound_url`;
2. for an IP-literal host (which aiohttp connects to without asking the resolver) runs
   :func:`~junctionbox.domain.netguard.check_target` before anything is sent;
3. for a DNS name lets the connector call :class:`GuardedResolver`, which resolves once,
   checks *every* resolved address and hands back only the vetted one, so the socket goes to
   exactly the address that was checked (no second lookup, no DNS-rebinding window);
4. never follows a redirect: a 3xx is returned as the outcome;
5. ignores proxy environment variables and keeps no cookies (one session serves all tenants).

Refused targets raise :class:`~junctionbox.domain.netguard.TargetRefusedError` (final, one
generic message). Network failures raise :class:`OutboundNetworkError` whose ``kind`` is the
:class:`~junctionbox.domain.retry.NetworkErrorKind` the retry classifier takes. Messages carry
neither the URL (its query may hold a token) nor any header value.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

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


class OutboundNetworkError(UpstreamError):
    """The destination could not be reached or did not answer with valid HTTP."""

    def __init__(self, kind: NetworkErrorKind, message: str | None = None) -> None:
        self.kind = kind
        super().__init__(message or f"outbound request failed: {kind.value}")


class OutboundTimeoutError(OutboundNetworkError, UpstreamTimeoutError):
    """The destination did not answer in time (kind is always ``ETIMEDOUT``)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(NetworkErrorKind.TIMEOUT, message)


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
            # aiohttp turns an OSError from here into ClientConnectorDNSError.
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


class GuardedHttpClient:
    """One shared aiohttp session and pool for every outbound HTTP request.

    Create it inside the running event loop's lifetime, or call :meth:`start` / use
    ``async with``; the session is created lazily on first use otherwise. Call :meth:`close`.
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
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        # URL string -> its vetted yarl URL. Vetting depends only on the string and the
        # allowlist (fixed per client): an integration's URL is parsed and checked once,
        # not at every delivery. Refusals are not remembered (they raise every time); DNS
        # names are still vetted at each resolution by the resolver.
        self._vetted: dict[str, URL] = {}

    @property
    def user_agent(self) -> str:
        return self._user_agent

    async def __aenter__(self) -> GuardedHttpClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the session and pool (idempotent)."""
        self._get_session()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._pool_size,
                limit_per_host=self._per_host_limit,
                resolver=GuardedResolver(self._allowlist),
                # The cache holds only vetted answers, keyed by (host, port) like the check.
                ttl_dns_cache=self._dns_cache_seconds,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # an HTTP(S)_PROXY variable must not route around the guard
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        """Close the pool; further ``send`` calls open a new one."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _target(self, url: str) -> URL:
        """The vetted URL, remembered per URL string (refusals are not remembered; DNS
        answers are still vetted at each connection by the resolver)."""
        target = self._vetted.get(url)
        if target is None:
            target = _vet_url(url, self._allowlist)
            if len(self._vetted) >= _VETTED_URLS:
                self._vetted.clear()
            self._vetted[url] = target
        return target

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
        session = self._get_session()
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        request_headers = _headers(headers, self._user_agent)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                response = await session.request(
                    method.upper(),
                    target,
                    headers=request_headers,
                    data=body,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                )
                try:
                    data, truncated = await _read_capped(response, self._max_response_bytes)
                finally:
                    _finish(response)
        except TargetRefusedError:
            raise
        except Exception as exc:  # mapped below; anything unknown is re-raised
            refused = _refusal_in(exc)
            if refused is not None:
                raise TargetRefusedError(REFUSED_MESSAGE) from None
            mapped = _map_error(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return HttpResult(
            status=response.status,
            headers=tuple((k, v) for k, v in response.headers.items()),
            body=data,
            truncated=truncated,
            elapsed=time.perf_counter() - started,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout_seconds: float | None = None,
        decompress: bool = False,
    ) -> AsyncIterator[StreamedResponse]:
        """Send one request and yield its response with the body unread, for proxying.

        The same guard and error mapping as :meth:`send`. ``timeout_seconds`` bounds the
        wait for the response head and each read of the body (not the whole transfer, so a
        large body may stream for longer). Without ``decompress`` the body is passed on as
        the upstream encoded it (its ``Content-Encoding`` stays true). Leaving the block
        returns the connection to the pool if the body was read to the end, else closes it.
        """
        target = self._target(url)
        session = self._get_session()
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                response = await session.request(
                    method.upper(),
                    target,
                    headers=_headers(headers, self._user_agent),
                    data=body or None,
                    allow_redirects=False,
                    auto_decompress=decompress,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=timeout, sock_read=timeout
                    ),
                )
        except TargetRefusedError:
            raise
        except Exception as exc:
            mapped = _converted(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        try:
            yield StreamedResponse(response)
        finally:
            _finish(response)


class StreamedResponse:
    """An upstream response whose body is read chunk by chunk (library errors mapped)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = tuple((str(k), v) for k, v in response.headers.items())

    async def chunks(self, size: int = _READ_CHUNK) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(size):
                yield chunk
        except Exception as exc:
            mapped = _converted(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def read(self, cap: int) -> tuple[bytes, bool]:
        """The body, at most ``cap`` bytes; True when it was longer (and cut)."""
        try:
            return await _read_capped(self._response, cap)
        except Exception as exc:
            mapped = _converted(exc)
            if mapped is exc:
                raise
            raise mapped from exc


def _converted(exc: Exception) -> Exception:
    """Our error for a library failure (unknown exceptions are returned unchanged)."""
    if _refusal_in(exc) is not None:
        return TargetRefusedError(REFUSED_MESSAGE)
    return _map_error(exc) or exc


def _finish(response: aiohttp.ClientResponse) -> None:
    # A body read to the end returns the connection to the pool; a truncated or failed read
    # drops it, rather than draining an unbounded remainder.
    if response.content.at_eof():
        response.release()
    else:
        response.close()


def _vet_url(url: str, allowlist: Allowlist) -> URL:
    parsed = parse_outbound_url(url)
    target = URL(parsed.url)
    host = target.raw_host or ""
    # What aiohttp will connect to must be what we parsed: refuse any parser differential.
    if host.strip("[]").lower() != parsed.host or target.port != parsed.port:
        raise TargetRefusedError(REFUSED_MESSAGE)
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    address = literal or parsed.ip
    if address is not None:
        # aiohttp does not call the resolver for IP literals: check here, before any send.
        check_target(parsed.host, parsed.port, [address], allowlist)
    return target


def _headers(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None, user_agent: str
) -> list[tuple[str, str]]:
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if not any(k.lower() == "user-agent" for k, _ in pairs):
        pairs.append(("User-Agent", user_agent))
    return pairs


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await response.content.read(min(_READ_CHUNK, cap + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    if len(data) > cap:
        return data[:cap], True
    return data, False


def _refusal_in(exc: BaseException) -> TargetRefusedError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TargetRefusedError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _map_error(exc: BaseException) -> OutboundNetworkError | None:
    # Order matters: aiohttp's classes inherit from each other and from builtins.
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return OutboundTimeoutError()
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return OutboundNetworkError(NetworkErrorKind.DNS)
    if isinstance(
        exc,
        aiohttp.ClientSSLError
        | aiohttp.ServerFingerprintMismatch
        | aiohttp.ClientConnectorCertificateError
        | ssl.SSLError,
    ):
        return OutboundNetworkError(NetworkErrorKind.TLS)
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return OutboundNetworkError(NetworkErrorKind.CONNECTION_REFUSED)
        if isinstance(os_error, ssl.SSLError):
            return OutboundNetworkError(NetworkErrorKind.TLS)
        kind = _ERRNO_KINDS.get(os_error.errno or 0, NetworkErrorKind.CONNECTION_ABORTED)
        return OutboundNetworkError(kind)
    if isinstance(exc, ConnectionRefusedError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_REFUSED)
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        # The peer closed or reset the connection before a complete response.
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_RESET)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_RESET, "response body cut short")
    if isinstance(exc, aiohttp.ClientResponseError):
        # A response that is not valid HTTP (bad status line, bad headers): protocol failure.
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_ABORTED, "invalid HTTP response")
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return OutboundNetworkError(_ERRNO_KINDS[exc.errno])
    if isinstance(exc, aiohttp.ClientError | OSError):
        return OutboundNetworkError(NetworkErrorKind.CONNECTION_ABORTED)
    return None


_ERRNO_KINDS: Final = {
    errno.ECONNRESET: NetworkErrorKind.CONNECTION_RESET,
    errno.EPIPE: NetworkErrorKind.CONNECTION_RESET,
    errno.ECONNREFUSED: NetworkErrorKind.CONNECTION_REFUSED,
    errno.ECONNABORTED: NetworkErrorKind.CONNECTION_ABORTED,
    errno.ETIMEDOUT: NetworkErrorKind.TIMEOUT,
}
