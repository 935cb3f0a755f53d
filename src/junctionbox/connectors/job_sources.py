"""Scheduled jobs' data sources: a read-only SQL query, or an HTTP API call.

**SQL** runs against an external database (``dataSource.connectionString``: SQLite,
PostgreSQL, MariaDB/MySQL, URLs as ``connectors.sql_source.normalize_url`` accepts them) or,
without one, the gateway's own store. Two locks keep it read-only: the statement was
checked by ``domain.sql_guard`` (one SELECT/WITH), and every session is read-only -- SQLite
``PRAGMA query_only``, PostgreSQL ``default_transaction_read_only``, MySQL ``SET SESSION
TRANSACTION READ ONLY`` -- so a write the scan missed fails in the database. Variables are
bound parameters (``domain.job_variables.sql_parts``): their values never become SQL text.
Dates bind as dates and instants as timestamps (PostgreSQL: with time zone; MySQL: naive
UTC), except on SQLite, which has no such types: there they bind as ISO text.

Rows stream from a cursor and at most ``max_rows`` are read: a query returning more fails
(a silently cut export would lose data). Values become JSON: DECIMAL as a string (no
precision lost, as Node's MySQL driver does), dates and times ISO 8601, bytes as UTF-8 text
or base64.

**API** sends the configured request through the SSRF-guarded client; the answer must be a
2xx with a JSON body.

Timeouts: connect 5 s, query or request 30 s. Failures are ``UpstreamError`` (502) or
``UpstreamTimeoutError`` (504); messages never carry the URL's password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson
from sqlalchemy import Date, DateTime, bindparam, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from junctionbox.connectors.http_client import GuardedHttpClient, OutboundNetworkError
from junctionbox.connectors.sql_source import describe, normalize_url
from junctionbox.domain.job_config import DataSource
from junctionbox.domain.job_variables import (
    VariableContext,
    VariableError,
    VarRef,
    as_text,
    render_json,
    render_text,
    render_url,
    sql_parts,
)
from junctionbox.domain.netguard import TargetRefusedError
from junctionbox.domain.sql_guard import SqlNotAllowed, check_read_only
from junctionbox.errors import (
    JunctionboxError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)

CONNECT_TIMEOUT_SECONDS: Final = 5.0
QUERY_TIMEOUT_SECONDS: Final = 30.0
MAX_ENGINES: Final = 32
# A colon SQLAlchemy's text() would read as a bind parameter; '::' casts are left alone.
_COLON_PARAM: Final = re.compile(r"(?<![:\w\\]):(?=\w)")


@dataclass(frozen=True)
class Fetched:
    """What a data source returned: ``data`` (rows, or the API's JSON) and a count."""

    data: Any
    records: int


class SqlQueryRunner:
    """Runs read-only queries; one small engine per database URL (least recently used
    engines are disposed beyond ``MAX_ENGINES``)."""

    def __init__(
        self,
        internal_url: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        query_timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> None:
        self.internal_url = make_url(internal_url)
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._engines: OrderedDict[str, AsyncEngine] = OrderedDict()
        self._lock = asyncio.Lock()

    async def query(
        self, connection_string: str | None, sql: str, ctx: VariableContext, max_rows: int
    ) -> Fetched:
        try:
            check_read_only(sql)  # validated at save time; cheap to repeat before running
        except SqlNotAllowed as exc:
            raise ValidationError(str(exc)) from exc
        url = self.internal_url if connection_string is None else normalize_url(connection_string)
        statement = bind_query(sql, ctx, url.get_backend_name())
        engine = await self._engine(url)
        try:
            async with asyncio.timeout(self.connect_timeout + self.query_timeout):
                rows = await self._run(engine, statement, max_rows)
        except JunctionboxError:
            raise
        except TimeoutError as exc:
            await self._drop(url)
            raise UpstreamTimeoutError(
                f"the database did not answer within {self.query_timeout:g} s"
            ) from exc
        except (SQLAlchemyError, OSError, Exception) as exc:
            await self._drop(url)
            raise UpstreamError(f"database error: {describe(exc)}") from exc
        if len(rows) > max_rows:
            raise UpstreamError(
                f"the query returned more than {max_rows} rows (JB_SCHEDULED_JOBS_MAX_ROWS); "
                "narrow it or raise the limit"
            )
        return Fetched(rows, len(rows))

    async def _run(self, engine: AsyncEngine, statement: Any, max_rows: int) -> list[Any]:
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await engine.connect()
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"could not connect to the database within {self.connect_timeout:g} s"
            ) from exc
        try:
            async with conn.begin():
                result = await conn.stream(statement)
                keys = list(result.keys())
                rows = await result.fetchmany(max_rows + 1)
                await result.close()
            return [
                {key: json_value(value) for key, value in zip(keys, row, strict=True)}
                for row in rows
            ]
        finally:
            await conn.close()

    async def close(self) -> None:
        async with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            await engine.dispose()

    async def _engine(self, url: URL) -> AsyncEngine:
        key = _key(url)
        async with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            engine = self._create(url)
            self._engines[key] = engine
            old = None
            if len(self._engines) > MAX_ENGINES:
                old = self._engines.popitem(last=False)[1]
        if old is not None:
            await old.dispose()
        return engine

    async def _drop(self, url: URL) -> None:
        """A connection that failed once is not trusted again: start over next time."""
        async with self._lock:
            engine = self._engines.pop(_key(url), None)
        if engine is not None:
            await engine.dispose()

    def _create(self, url: URL) -> AsyncEngine:
        backend = url.get_backend_name()
        if backend == "sqlite":
            engine = create_async_engine(
                url, poolclass=NullPool, connect_args={"timeout": self.connect_timeout}
            )
            event.listen(engine.sync_engine, "connect", _sqlite_read_only)
            return engine
        if backend == "postgresql":
            connect_args: dict[str, Any] = {
                "timeout": self.connect_timeout,
                "command_timeout": self.query_timeout,
                "server_settings": {
                    "application_name": "junctionbox-scheduled-job",
                    "default_transaction_read_only": "on",
                },
            }
        else:
            connect_args = {
                "connect_timeout": self.connect_timeout,
                "init_command": "SET SESSION TRANSACTION READ ONLY",
            }
        return create_async_engine(
            url,
            pool_size=1,
            max_overflow=2,
            pool_pre_ping=True,
            pool_recycle=1800,
            pool_timeout=self.connect_timeout,
            connect_args=connect_args,
        )


def _key(url: URL) -> str:
    rendered = url.render_as_string(hide_password=False)
    return hashlib.sha256(rendered.encode()).hexdigest()


def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


def bind_query(sql: str, ctx: VariableContext, backend: str) -> Any:
    """A ``text()`` statement of ``sql`` with each variable a bound parameter."""
    pieces: list[str] = []
    params = []
    parts = sql_parts(sql.strip().rstrip(";"))
    for index, part in enumerate(parts):
        if isinstance(part, str):
            pieces.append(_COLON_PARAM.sub(r"\\:", part))
            continue
        name = f"jbv{index}"
        following = parts[index + 1] if index + 1 < len(parts) else ""
        # ":name::int" is not read as a parameter; "(:name)::int" is (PostgreSQL casts).
        cast_next = isinstance(following, str) and following.startswith("::")
        pieces.append(f"(:{name})" if cast_next else f":{name}")
        params.append(_param(name, part, ctx, backend))
    return text("".join(pieces)).bindparams(*params)


def _param(name: str, ref: VarRef, ctx: VariableContext, backend: str) -> Any:
    try:
        value = ctx.value(ref)
    except VariableError as exc:
        raise ValidationError(str(exc)) from exc
    if isinstance(value, datetime):
        if backend == "sqlite":
            return bindparam(name, as_text(value))
        if backend == "postgresql":
            return bindparam(name, value, type_=DateTime(timezone=True))
        return bindparam(name, value.replace(tzinfo=None), type_=DateTime())
    if isinstance(value, date):
        if backend == "sqlite":
            return bindparam(name, value.isoformat())
        return bindparam(name, value, type_=Date())
    return bindparam(name, value)


def json_value(value: Any) -> Any:
    """A database value as JSON (see the module docstring)."""
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


# --- API ---


async def fetch_api(
    http: GuardedHttpClient, source: DataSource, ctx: VariableContext, timeout_s: float
) -> Fetched:
    """Call the configured API; its JSON answer is the data (a list: one record per item)."""
    try:
        url = render_url(source.url or "", ctx)
        headers = [(k, render_text(v, ctx)) for k, v in source.headers.items()]
        body = b""
        if source.body is not None:
            rendered = render_json(source.body, ctx)
            body = rendered.encode() if isinstance(rendered, str) else orjson.dumps(rendered)
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("content-type", "application/json"))
    except VariableError as exc:
        raise ValidationError(str(exc)) from exc
    if any(_bad_header(v) for _, v in headers):
        raise ValidationError("a header value contains CR, LF or NUL after substitution")
    headers.append(("accept", "application/json"))
    try:
        result = await http.send(
            source.method.value, url, headers=headers, body=body, timeout_seconds=timeout_s
        )
    except TargetRefusedError:
        raise
    except OutboundNetworkError as exc:
        cls = UpstreamTimeoutError if isinstance(exc, UpstreamTimeoutError) else UpstreamError
        raise cls(f"data source API unreachable: {exc.kind.value}") from exc
    if not 200 <= result.status <= 299:
        raise UpstreamError(f"data source API answered HTTP {result.status}")
    if result.truncated:
        raise UpstreamError("data source API answer is larger than the response limit")
    try:
        data = orjson.loads(result.body) if result.body.strip() else None
    except orjson.JSONDecodeError as exc:
        kind = result.header("content-type") or "no content type"
        raise UpstreamError(f"data source API answer is not JSON ({kind})") from exc
    return Fetched(data, len(data) if isinstance(data, list) else (0 if data is None else 1))


def _bad_header(value: str) -> bool:
    return any(c in value for c in "\r\n\x00")


def sample(data: Any, limit: int) -> Any:
    """At most ``limit`` records of ``data`` (test-datasource)."""
    return data[:limit] if isinstance(data, list) else data


def cap_json(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` if its JSON fits in ``limit`` bytes, else as many leading list items as fit
    (or a text preview); and whether it was cut."""
    encoded = orjson.dumps(value, default=str)
    if len(encoded) <= limit:
        return value, False
    if isinstance(value, list):
        kept: list[Any] = []
        size = 2
        for item in value:
            piece = len(orjson.dumps(item, default=str)) + 1
            if size + piece > limit:
                break
            kept.append(item)
            size += piece
        return kept, True
    return {"truncatedPreview": encoded[:limit].decode(errors="ignore")}, True


def headers_dict(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        found[name] = f"{found[name]}, {value}" if name in found else value
    return found
