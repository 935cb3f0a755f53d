"""The database adapter: one engine, read and write units of work, and the dialect hooks.

Queries are written once in SQLAlchemy Core; only engine set-up and error detection differ
between SQLite and PostgreSQL. Driver exceptions never leave this module: a lost database is
``ServiceUnavailableError``, a violated constraint ``ConflictError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_only, greenlet_spawn

from junctionbox.errors import ConflictError, JunctionboxError, ServiceUnavailableError
from junctionbox.store.queries.driver_calls import pg_call, pg_driver
from junctionbox.store.sqlite_inline import (
    AUTOCHECKPOINT_PAGES,
    InlineConnection,
    inline_connect,
)

log = logging.getLogger(__name__)
_WRITE = "jb_write"
_INLINE = "jb_inline"
_IDLE_SINCE = "jb_idle_since"
_HELD_IDLE_SINCE = "jb_held_idle_since"  # set by _HeldConnections when it hands one back
# A pooled PostgreSQL connection idle this long is checked before use (see _ping_when_idle).
PING_AFTER_IDLE_SECONDS = 10.0
# Connections ``Database.driver`` keeps checked out between units of work (PostgreSQL): as
# many as the dispatcher's partitions in parallel, the appends and the worker's commits use
# at once at a moderate load.
HELD_DRIVER_CONNECTIONS = 4


class Database:
    """An async engine with ``read()`` and ``write()`` transactions.

    On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on
    the busy timeout instead of failing when a read lock would have to be upgraded, and the
    writers of one process also queue on a lock of their own: SQLite's busy handler polls with
    growing sleeps and is not fair, so under load (API, dispatcher and workers in one process)
    a writer could wait past the busy timeout while others keep winning. The in-process queue
    is first come, first served and hands the lock over without polling.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        busy_timeout_ms: int = 5000,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.ping_after_idle = ping_after_idle
        self._backend_pids: set[int] = set()
        self.engine: AsyncEngine = self._create_engine(url, pool_size, busy_timeout_ms)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._option_engines: dict[tuple[bool, bool], AsyncEngine] = {}
        # One is all SQLite's write lock lets ``driver()`` use at once; a small pool keeps
        # most of its connections for transactions.
        held = 1 if self.is_sqlite else min(HELD_DRIVER_CONNECTIONS, max(1, pool_size // 2))
        self._held = _HeldConnections(held, ping_after_idle)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _create_engine(self, url: str, pool_size: int, busy_timeout_ms: int) -> AsyncEngine:
        if self.dialect == "sqlite":
            _ensure_sqlite_directory(url)
            in_file = _file_of(url) is not None
            engine = create_async_engine(
                url,
                json_serializer=dumps_json,
                json_deserializer=loads_json,
                pool_reset_on_return=None,  # _on_reset below rolls back only when needed
                # Connections that can run short transactions inline (store.sqlite_inline);
                # an in-memory database's connection is bound to its own thread.
                connect_args={"async_creator_fn": inline_connect} if in_file else {},
            )
            _install_sqlite_hooks(engine, busy_timeout_ms)
            return engine
        engine = create_async_engine(
            url,
            json_serializer=dumps_json,
            json_deserializer=loads_json,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=1800,
            # Most recently used first: a moderate load keeps to a few connections, whose
            # prepared statements have settled on their plans (PostgreSQL plans each
            # statement five times per connection before it may keep one plan).
            pool_use_lifo=True,
            connect_args={
                "timeout": 5,
                "command_timeout": 60,
                "server_settings": {"application_name": "junctionbox"},
            },
        )
        _ping_when_idle(engine, self.ping_after_idle)
        _track_backends(engine, self._backend_pids)
        return engine

    @asynccontextmanager
    async def read(self, *, inline: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read transaction; ``inline``: a short one whose SQLite calls run on this
        thread (see :mod:`junctionbox.store.sqlite_inline`; no effect on PostgreSQL)."""
        async with self._transaction(write=False, inline=inline) as conn:
            yield conn

    @asynccontextmanager
    async def write(
        self, *, durable: bool = True, inline: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction. ``durable=False`` is for work that is redone if a crash
        loses it (the dispatcher's jobs and cursor: the events are durable, and the jobs'
        ids are derived from them): on PostgreSQL its commit returns without waiting for
        the WAL flush (``synchronous_commit = off``, an fsync saved: about 3 ms on this
        machine's disk). A later durable commit flushes it too, as WAL is written in order.
        SQLite's commits (WAL, ``synchronous=NORMAL``) never wait for a flush.
        ``inline``: a short transaction whose SQLite calls run on this thread (see
        :mod:`junctionbox.store.sqlite_inline`)."""
        if self._write_lock is None:
            async with self._transaction(write=True) as conn:
                if not durable:
                    # On the driver: through SQLAlchemy's cursor this one statement cost
                    # about as much CPU as a dispatcher batch's own statements.
                    driver = await pg_driver(conn)
                    await pg_call(driver.execute("SET LOCAL synchronous_commit = off"))
                yield conn
            return
        async with self._write_lock, self._transaction(write=True, inline=inline) as conn:
            yield conn

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """A pooled connection's own driver connection (aiosqlite's or asyncpg's), outside
        any transaction, for a unit of work that runs entirely on the driver and ends its
        own transaction (one statement on PostgreSQL; BEGIN IMMEDIATE … COMMIT in one call
        on aiosqlite's thread). On SQLite the write lock is held meanwhile, as in
        ``write()``. It skips SQLAlchemy's connection and transaction (about 0.1 ms of CPU to check
        out a connection, as much again to begin and commit): for the hottest small writes.

        The last few such connections stay checked out between units of work
        (:class:`_HeldConnections`): the pool's checkout and checkin cost about 30 µs of
        CPU together, and the appends, the dispatcher and the worker's commits each make
        one or more such units of work per event at a moderate load.

        If the work fails the connection is discarded (the pool opens another): it may be
        broken, or be left in the middle of a statement."""
        async with self._write_lock or contextlib.nullcontext():
            raw = await self._held.take()
            if raw is None:
                try:
                    raw = await self.engine.raw_connection()
                except SQLAlchemyError as exc:
                    raise translate_error(exc) from exc
                except (TimeoutError, OSError) as exc:
                    raise ServiceUnavailableError("database unavailable") from exc
            try:
                yield raw.driver_connection
            except BaseException:
                lost = _is_closed(raw.driver_connection)
                await greenlet_spawn(raw.invalidate)
                if lost:  # the server may have dropped the others too (a restart)
                    await self._held.discard_all()
                raise
            await self._held.give_back(raw)

    @asynccontextmanager
    async def _transaction(
        self, *, write: bool, inline: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine_for(write, inline).connect() as conn, conn.begin():
                yield conn
        except JunctionboxError:
            raise
        except SQLAlchemyError as exc:
            raise translate_error(exc) from exc
        except (TimeoutError, OSError) as exc:
            raise ServiceUnavailableError("database unavailable") from exc

    def _engine_for(self, write: bool, inline: bool) -> AsyncEngine:
        """The engine whose connections carry the transaction's options (the begin hook
        reads them): set once per kind here, not per transaction (``execution_options`` on
        a connection is one more pass through SQLAlchemy's greenlet, about 20 % of an
        empty transaction's CPU)."""
        inline = inline and self.is_sqlite
        if not (write or inline):
            return self.engine
        key = (write, inline)
        engine = self._option_engines.get(key)
        if engine is None:
            options = {_WRITE: write, _INLINE: inline}
            engine = self._option_engines[key] = self.engine.execution_options(**options)
        return engine

    def owns_backend(self, pid: int) -> bool:
        """PostgreSQL: whether ``pid`` is the server process of one of this pool's
        connections (a NOTIFY it sent came from this process)."""
        return pid in self._backend_pids

    async def ping(self, limit_seconds: float = 2.0) -> float:
        """Round-trip time in seconds; ``ServiceUnavailableError`` when unreachable."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_seconds), self.read() as conn:
                await conn.execute(text("SELECT 1"))
        except TimeoutError as exc:
            raise ServiceUnavailableError("database did not answer in time") from exc
        return time.perf_counter() - started

    async def dispose(self) -> None:
        await self._held.release_all()
        await self.engine.dispose()


class _HeldConnections:
    """The last few connections ``Database.driver`` used, kept checked out of the pool.

    A transaction its unit of work left open is rolled back; one idle longer than the
    pool's ping threshold goes back to the pool instead of being used, so that the pool's
    checkout checks it (``_ping_when_idle``) as it would any connection that sat idle."""

    def __init__(self, limit: int, ping_after_idle: float) -> None:
        self._limit = limit
        self._ping_after_idle = ping_after_idle
        self._idle: list[tuple[Any, float]] = []  # (pooled connection, idle since)

    async def take(self) -> Any | None:
        """The most recently used held connection; None when none is held, or it idled too
        long (then it went back to the pool)."""
        if not self._idle:
            return None
        raw, since = self._idle.pop()
        if time.monotonic() - since < self._ping_after_idle:
            return raw
        await _hand_back(raw, since)
        await self.release_all()  # the others idled longer still
        return None

    async def give_back(self, raw: Any) -> None:
        if _in_transaction(raw.driver_connection):
            # Against the contract of ``driver()``; the pool's reset would not see it on
            # PostgreSQL either (SQLAlchemy's adapter did not begin it).
            try:
                await raw.driver_connection.execute("ROLLBACK")
            except Exception:  # the work itself succeeded: only the connection is lost
                await greenlet_spawn(raw.invalidate)
                return
        if len(self._idle) < self._limit:
            self._idle.append((raw, time.monotonic()))
        else:
            await greenlet_spawn(raw.close)

    async def release_all(self) -> None:
        """Hand every held connection back to the pool."""
        idle, self._idle = self._idle, []
        for raw, since in idle:
            await _hand_back(raw, since)

    async def discard_all(self) -> None:
        """Close every held connection (the pool opens others as needed)."""
        idle, self._idle = self._idle, []
        for raw, _ in idle:
            await greenlet_spawn(raw.invalidate)


async def _hand_back(raw: Any, idle_since: float) -> None:
    """Check a held connection back in to the pool, which then counts it idle since
    ``idle_since`` (and so pings it at its next checkout if that was long ago)."""
    raw.info[_HELD_IDLE_SINCE] = idle_since
    await greenlet_spawn(raw.close)


def _is_closed(driver: Any) -> bool:
    """Whether an asyncpg connection was closed (its server dropped it); False for
    aiosqlite's, which no server can drop."""
    is_closed = getattr(driver, "is_closed", None)
    return bool(is_closed()) if is_closed is not None else False


def _in_transaction(driver: Any) -> bool:
    """Whether a driver connection (asyncpg's or aiosqlite's) is inside a transaction."""
    is_in = getattr(driver, "is_in_transaction", None)
    return bool(is_in()) if is_in is not None else bool(getattr(driver, "in_transaction", True))


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps_json(value: Any) -> str:
    """JSON columns' serialiser: orjson (several times faster than ``json.dumps``; the
    delivery worker writes a few JSON documents per attempt). Values orjson refuses (``str``
    subclasses, integers beyond 64 bits) take the standard library's path."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def loads_json(text: str | bytes) -> Any:
    """JSON columns' parser: orjson, or the standard library for what orjson refuses
    (``NaN``, integers beyond 64 bits), so that every stored document still reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def translate_error(exc: SQLAlchemyError) -> JunctionboxError:
    if isinstance(exc, IntegrityError):
        return ConflictError("conflicts with an existing resource")
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return ServiceUnavailableError("database unavailable")
    if isinstance(exc, DBAPIError) and _is_connection_failure(exc):
        return ServiceUnavailableError("database unavailable")
    return JunctionboxError()


def _is_connection_failure(exc: DBAPIError) -> bool:
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return "Connection" in name or "CannotConnect" in name or "Interface" in name


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """``pool_pre_ping``, for connections idle at least ``idle_seconds`` only.

    SQLAlchemy's pre-ping on asyncpg is three round trips (BEGIN, a query, ROLLBACK) on every
    checkout: more than the rest of a small transaction. A connection in steady use is known
    to work; one that sat in the pool may have been dropped (a database restart, a proxy's
    idle timeout) and is checked, and replaced if dead, before it is handed out. A connection
    lost within ``idle_seconds`` of its last use fails its next transaction (503), and
    SQLAlchemy then replaces the whole pool's connections."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            # One held idle by Database.driver has been idle since then, not since now.
            record.info[_IDLE_SINCE] = record.info.pop(_HELD_IDLE_SINCE, None) or time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError("pooled connection failed its ping") from exc


def _track_backends(engine: AsyncEngine, pids: set[int]) -> None:
    """Keep ``pids`` the server process ids of the pool's open connections."""

    def _pid(dbapi_connection: Any) -> int | None:
        try:
            return int(dbapi_connection.driver_connection.get_server_pid())
        except Exception:  # a connection that broke before it could say
            return None

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if (pid := _pid(dbapi_connection)) is not None:
            pids.add(pid)

    @event.listens_for(engine.sync_engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        pids.discard(_pid(dbapi_connection))

    @event.listens_for(engine.sync_engine, "close_detached")
    def _on_close_detached(dbapi_connection: Any) -> None:
        pids.discard(_pid(dbapi_connection))


def _ensure_sqlite_directory(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _file_of(url: str) -> str | None:
    """The SQLite database's file; None for an in-memory or URI database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide when transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if isinstance(dbapi_connection.driver_connection, InlineConnection):
            dbapi_connection.driver_connection.busy_timeout_ms = busy_timeout_ms
        for pragma in (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA busy_timeout={busy_timeout_ms}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA synchronous=NORMAL",
            f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        statement = "BEGIN IMMEDIATE" if options.get(_WRITE, False) else "BEGIN"
        driver = conn.connection.driver_connection
        try:
            inline = options.get(_INLINE, False) and isinstance(driver, InlineConnection)
            if inline and driver.begin_inline(statement):
                return
            # Straight on the driver: one hand-over to its thread, where exec_driver_sql
            # takes three (cursor, execute, close) and costs more CPU than the work.
            await_only(driver.execute(statement))
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if isinstance(driver, InlineConnection):
            driver.leave_inline()  # the next transaction decides for itself

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        # Connections come back with their transaction committed or rolled back: the pool's
        # usual rollback-on-return would be one more hand-over to the driver's thread, for
        # nothing. Only one still in a transaction (a failed commit) is rolled back here.
        if not state.asyncio_safe or state.terminate_only:
            return
        try:
            open_transaction = dbapi_connection.driver_connection.in_transaction
        except ValueError:  # the driver's connection is closed: nothing to reset
            return
        if open_transaction:
            dbapi_connection.rollback()
