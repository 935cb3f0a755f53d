"""Reading an external SQL table for the SQL event source (SQLite, PostgreSQL, MariaDB/MySQL).

The source's configuration names a table and its columns; this adapter turns that into
``SELECT <columns> FROM <table> WHERE <id> > :checkpoint ORDER BY <id> LIMIT :batch`` built
from SQLAlchemy's ``table()``/``column()`` constructs (identifiers are quoted by the dialect,
values are bound; nothing the user typed is formatted into SQL text).

- URLs may be written in their synchronous spelling (``mysql://``, ``postgres://``,
  ``sqlite:///``); they are mapped to the async drivers we ship.
- One engine per source, cached and kept small; it is replaced when the URL changes and
  disposed after a failure, so a broken connection is never reused.
- The table is reflected once per engine: configured columns must exist (matched exactly, else
  case-insensitively), and the id column's type decides how the text checkpoint is bound, so
  numeric ids compare as numbers (10 after 9), not as strings.
- Columns other than the id are read untyped: drivers hand back JSON as the text the database
  holds (PostgreSQL's JSON codec is told to keep it), so payload bytes stay as stored.
- Failures become our errors, keeping the cause: an unreachable or failing database is
  ``UpstreamError`` (502), a slow one ``UpstreamTimeoutError`` (504), an unknown table or
  column ``ValidationError`` (400) naming the configuration field. Messages never carry the
  URL's password.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from sqlalchemy import bindparam, column, func, inspect, select, table
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import Integer, NullType, Numeric, TypeEngine, Uuid

from junctionbox.domain.redaction import MASK, is_secret_key, redact_text
from junctionbox.errors import (
    FieldProblem,
    JunctionboxError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS: Final = 5.0
QUERY_TIMEOUT_SECONDS: Final = 30.0
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_INTEGER = re.compile(r"^-?[0-9]{1,30}$")
_MAX_MESSAGE = 300

# Sync and async spellings users write -> the async driver we use.
_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+pg8000": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mysql+pymysql": "mysql+aiomysql",
    "mysql+mysqldb": "mysql+aiomysql",
    "mysql+aiomysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "mariadb+pymysql": "mysql+aiomysql",
    "mariadb+mariadbconnector": "mysql+aiomysql",
    "mariadb+aiomysql": "mysql+aiomysql",
}


class _ConnectTimeout(Exception):
    """No connection within the connect timeout."""


class RawJson(str):
    """JSON text exactly as the database returned it (PostgreSQL json/jsonb columns)."""

    __slots__ = ()


def _keep_json_text(text: str) -> RawJson:
    return RawJson(text)


# --- URLs ---


def normalize_url(text: str, *, field_name: str = "connectionString") -> URL:
    """The URL with an async driver; ``ValidationError`` naming ``field_name`` otherwise."""

    def refuse(message: str) -> ValidationError:
        return ValidationError(message, problems=[FieldProblem(("body", field_name), message)])

    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError) as exc:
        raise refuse("not a valid database URL (e.g. mysql://user:pass@host:3306/db)") from exc
    driver = _DRIVERS.get(url.drivername.lower())
    if driver is None:
        raise refuse(
            f"unsupported database {url.drivername!r}: use sqlite, postgresql or mysql/mariadb"
        )
    url = url.set(drivername=driver)
    if driver.startswith("sqlite"):
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise refuse("a SQLite source needs a database file path (sqlite:////path/to/db)")
    elif not url.host or not url.database:
        raise refuse("the URL needs a host and a database name")
    return url


def mask_url(url: URL) -> str:
    """The URL for display: password and secret-looking query values replaced by ``***``."""
    query = {key: (MASK if is_secret_key(key) else value) for key, value in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return redact_text(shown)


def masked(text: str) -> str:
    """``mask_url`` of a URL string; anything unparseable is masked whole."""
    try:
        return mask_url(normalize_url(text))
    except ValidationError:
        return MASK


# --- what to read ---


def check_identifier(name: str, field_name: str, *, qualified: bool = False) -> list[FieldProblem]:
    """Problems with a table or column name (``schema.table`` when ``qualified``)."""
    parts = name.split(".") if qualified else [name]
    if len(parts) > 2 or not all(_IDENTIFIER.match(part) for part in parts):
        what = "[schema.]table" if qualified else "column"
        message = (
            f"{name!r} is not a valid {what} name: letters, digits and '_', "
            "not starting with a digit, at most 64 characters"
        )
        return [FieldProblem(("body", field_name), message)]
    return []


@dataclass(frozen=True)
class TableQuery:
    """What to read: ``columns`` maps a field name of the source configuration (used to name
    problems and as the keys of returned rows) to its column; ``id_field`` is one of them."""

    table: str
    columns: Mapping[str, str]
    id_field: str
    table_field: str = "table"

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.table, tuple(sorted(self.columns.items()))


@dataclass(frozen=True)
class _Resolved:
    """A reflected table: the clause to select from and the id column's type."""

    clause: TableClause
    names: Mapping[str, str]  # field -> actual column name
    id_type: TypeEngine[Any]


@dataclass
class _Entry:
    url: str
    engine: AsyncEngine
    tables: dict[Any, _Resolved] = field(default_factory=dict)


# --- the reader ---


class SqlTableReader:
    """Reads batches from external tables, one cached engine per key (the source id)."""

    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        query_timeout: float = QUERY_TIMEOUT_SECONDS,
        pool_size: int = 2,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self.pool_size = pool_size
        self._entries: dict[str, _Entry] = {}
        self._lock = asyncio.Lock()

    async def read_after(
        self, key: str, url: URL, query: TableQuery, checkpoint: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` rows with an id above ``checkpoint`` (all rows when None), in id
        order, each as ``{field: value}``."""

        async def work(entry: _Entry) -> list[dict[str, Any]]:
            resolved = await self._resolve(entry, query)
            id_col = resolved.clause.c[resolved.names[query.id_field]]
            # Labelled by field: one column may serve two fields (e.g. subject and type).
            statement = select(
                *(resolved.clause.c[resolved.names[f]].label(f) for f in query.columns)
            )
            if checkpoint is None:
                # NULL ids cannot be checkpointed; they would be read again forever.
                statement = statement.where(id_col.is_not(None))
            else:
                bound = coerce_checkpoint(checkpoint, resolved.id_type)
                statement = statement.where(
                    id_col > bindparam("checkpoint", bound, type_=resolved.id_type)
                )
            statement = statement.order_by(id_col).limit(limit)
            async with self._connect(entry) as conn:
                rows = (await conn.execute(statement)).all()
            fields = list(query.columns)
            return [dict(zip(fields, row, strict=True)) for row in rows]

        rows: list[dict[str, Any]] = await self._run(key, url, work)
        return rows

    async def max_id(self, key: str, url: URL, query: TableQuery) -> str | None:
        """The highest id in the table now, as checkpoint text (None when it is empty)."""

        async def work(entry: _Entry) -> str | None:
            resolved = await self._resolve(entry, query)
            id_col = resolved.clause.c[resolved.names[query.id_field]]
            async with self._connect(entry) as conn:
                value = (await conn.execute(select(func.max(id_col)))).scalar()
            return None if value is None else checkpoint_text(value)

        found: str | None = await self._run(key, url, work)
        return found

    def cached_keys(self) -> list[str]:
        return list(self._entries)

    async def dispose(self, key: str) -> None:
        """Forget the engine of ``key`` (its source changed or was deleted)."""
        async with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            await entry.engine.dispose()

    async def close(self) -> None:
        for key in list(self._entries):
            await self.dispose(key)

    async def _run(self, key: str, url: URL, work: Any) -> Any:
        entry = await self._entry(key, url)
        try:
            async with asyncio.timeout(self.connect_timeout + self.query_timeout):
                return await work(entry)
        except JunctionboxError:
            entry.tables.clear()
            raise
        except _ConnectTimeout as exc:
            await self.dispose(key)
            raise UpstreamTimeoutError(
                f"could not connect to the source database within {self.connect_timeout:g} s"
            ) from exc
        except TimeoutError as exc:
            await self.dispose(key)
            raise UpstreamTimeoutError(
                f"the source database did not answer within {self.query_timeout:g} s"
            ) from exc
        except Exception as exc:
            # Everything in ``work`` talks to the external database, so any other failure is
            # its (drivers raise more than SQLAlchemy wraps). A connection that failed once is
            # not trusted again: start over next time.
            if not isinstance(exc, SQLAlchemyError | OSError):
                log.warning("unexpected error from a source database driver", exc_info=exc)
            await self.dispose(key)
            raise UpstreamError(f"source database error: {describe(exc)}") from exc

    @asynccontextmanager
    async def _connect(self, entry: _Entry) -> AsyncIterator[AsyncConnection]:
        """A connection within the connect timeout: drivers bound the TCP connect only, not
        the handshake a half-open server never answers."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await entry.engine.connect()
        except TimeoutError as exc:
            raise _ConnectTimeout from exc
        try:
            yield conn
        finally:
            await conn.close()

    async def _entry(self, key: str, url: URL) -> _Entry:
        rendered = url.render_as_string(hide_password=False)
        async with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.url == rendered:
                return entry
            if entry is not None:
                await entry.engine.dispose()
            entry = _Entry(rendered, self._create_engine(url))
            self._entries[key] = entry
            return entry

    def _create_engine(self, url: URL) -> AsyncEngine:
        backend = url.get_backend_name()
        if backend == "sqlite":
            return create_async_engine(
                url, poolclass=NullPool, connect_args={"timeout": self.connect_timeout}
            )
        if backend == "postgresql":
            connect_args: dict[str, Any] = {
                "timeout": self.connect_timeout,
                "command_timeout": self.query_timeout,
                "server_settings": {"application_name": "junctionbox-sql-source"},
            }
        else:
            connect_args = {"connect_timeout": self.connect_timeout}
        return create_async_engine(
            url,
            pool_size=self.pool_size,
            max_overflow=0,
            pool_pre_ping=True,
            pool_recycle=1800,
            pool_timeout=self.connect_timeout,
            connect_args=connect_args,
            json_deserializer=_keep_json_text,
        )

    async def _resolve(self, entry: _Entry, query: TableQuery) -> _Resolved:
        cached = entry.tables.get(query.key)
        if cached is not None:
            return cached
        schema, _, name = query.table.rpartition(".")
        async with self._connect(entry) as conn:
            reflected = await conn.run_sync(_reflect, name, schema or None)
        if reflected is None:
            raise _problem(query.table_field, f"table {query.table!r} not found")
        resolved = _match_columns(reflected, query, schema or None)
        entry.tables[query.key] = resolved
        return resolved


def _reflect(
    conn: Connection, name: str, schema: str | None
) -> tuple[str, dict[str, TypeEngine[Any]]] | None:
    """The table's actual name and its columns' types; None when there is no such table."""
    inspector = inspect(conn)
    try:
        columns = inspector.get_columns(name, schema=schema)
    except NoSuchTableError:
        columns = []
    if columns:
        return name, {c["name"]: c["type"] for c in columns}
    # Unquoted names fold to lower case (PostgreSQL) or compare case-insensitively (MySQL).
    for candidate in inspector.get_table_names(schema=schema):
        if candidate.lower() == name.lower() and candidate != name:
            found = inspector.get_columns(candidate, schema=schema)
            return candidate, {c["name"]: c["type"] for c in found}
    return None


def _match_columns(
    reflected: tuple[str, dict[str, TypeEngine[Any]]], query: TableQuery, schema: str | None
) -> _Resolved:
    actual_table, types = reflected
    lowered = {name.lower(): name for name in types}
    names: dict[str, str] = {}
    problems: list[FieldProblem] = []
    for field_name, wanted in query.columns.items():
        actual = wanted if wanted in types else lowered.get(wanted.lower())
        if actual is None:
            message = f"column {wanted!r} not found in table {query.table!r}"
            problems.append(FieldProblem(("body", field_name), message))
        else:
            names[field_name] = actual
    if problems:
        raise ValidationError("; ".join(p.message for p in problems), problems=problems)
    id_type = types[names[query.id_field]]
    clause = table(
        actual_table,
        *(column(actual, id_type if f == query.id_field else None) for f, actual in names.items()),
        schema=schema,
    )
    return _Resolved(clause, names, id_type)


def _problem(field_name: str, message: str) -> ValidationError:
    return ValidationError(message, problems=[FieldProblem(("body", field_name), message)])


# --- checkpoints ---


def checkpoint_text(value: Any) -> str:
    """An id as the text kept in the checkpoint column."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def coerce_checkpoint(checkpoint: str, id_type: TypeEngine[Any]) -> Any:
    """The text checkpoint as a value of the id column's type (numbers compare as numbers)."""
    try:
        if isinstance(id_type, Integer):
            return int(checkpoint)
        if isinstance(id_type, Numeric):
            return Decimal(checkpoint)
        if isinstance(id_type, Uuid) and id_type.as_uuid:
            return uuid.UUID(checkpoint)
        if isinstance(id_type, NullType) and _INTEGER.match(checkpoint):
            # An untyped column (SQLite without a declared type): integer-looking ids are
            # integers, or SQLite would compare them as text (every text sorts after numbers).
            return int(checkpoint)
    except (ValueError, InvalidOperation) as exc:
        message = f"checkpoint {checkpoint!r} is not a valid value of the id column ({id_type})"
        raise _problem("checkpoint", message) from exc
    return checkpoint


def describe(exc: BaseException) -> str:
    """A short, secret-free reason: the driver's message, not SQLAlchemy's SQL dump."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    text = redact_text(f"{type(cause).__name__}: {text}")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
