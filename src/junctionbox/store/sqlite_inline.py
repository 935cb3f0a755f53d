"""SQLite calls run on the event loop's own thread for short, hot transactions.

aiosqlite runs every call of a connection (each statement, fetch, BEGIN and COMMIT) on a
thread of its own and hands the result back through the event loop: two thread wake-ups,
a pipe write and two GIL hand-overs per call. Measured on the reference machine: 40 µs of
CPU and 45-50 µs of wall time per call, where the statements of a publish, a dispatcher
batch or a worker's commit take a few microseconds each in SQLite itself. A transaction is
at least three calls (BEGIN, its work, COMMIT), and every await in a write transaction also
lengthens everyone's wait for the write lock.

A transaction opened with ``inline=True`` (``Database.write``/``read``) runs its calls
directly on the caller's thread instead. It is for transactions that are known to be short
(the event log's appends, the dispatcher's batches, the delivery worker's claims, reads and
commits): the loop is blocked for their few hundred microseconds instead of paying the
hand-overs. Everything else keeps aiosqlite's thread, so a long query (an API search over a
large table) never blocks the loop.

An inline ``BEGIN IMMEDIATE`` never waits for the write lock on the loop's thread: it tries
once without a busy timeout and, if another process holds the lock, the transaction goes
back to the thread, which waits for it as before. Inside the process, writers already queue
on ``Database``'s own lock, and readers never wait in WAL mode.

WAL checkpoints: SQLite checkpoints in the commit that takes the WAL past
``wal_autocheckpoint`` pages, and a checkpoint (copy the pages, fsync the file) takes
milliseconds to tens of milliseconds. An inline transaction raises that threshold to
``INLINE_AUTOCHECKPOINT_PAGES`` for its own commit, so the checkpoints stay with the
thread-run commits (the event log's appends, large batches), where the loop goes on; the
higher threshold only bounds the WAL when every commit is inline. (A checkpoint from a
connection of its own, on a thread of its own, was tried: the writers then met its locks and
slept in SQLite's busy handler, and single publishes' p99 rose from 13-16 ms to 33-62 ms.)
A connection with a call still running on its thread (an await that was cancelled) is
never used inline until that call has finished.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

IMMEDIATE = "BEGIN IMMEDIATE"
# A transaction over at most this many items (jobs, events, outcomes) is short enough to run
# inline: a few hundred microseconds of SQLite. A larger batch keeps the thread, where its
# SQLite work overlaps the event loop's (the GIL is released while SQLite runs), which is
# worth more than the hand-overs once a batch is large.
SMALL_BATCH = 16
# The checkpoint threshold (pages) of the connections, and the one an inline commit uses.
# Smaller than SQLite's default (1000): a checkpoint holds the write lock while it copies the
# pages and syncs the file, so many small ones stall writers less than a few big ones
# (single publishes at 1000/s, p99: 13-17 ms at 1000 pages, 8.1 ms at 250, 6.6-6.9 at 100).
AUTOCHECKPOINT_PAGES = 100
INLINE_AUTOCHECKPOINT_PAGES = 16384


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs its calls on the caller's thread while ``inline``
    is set, and on its own thread otherwise (aiosqlite's behaviour)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self.inline = False
        self.busy_timeout_ms = 0  # set by the connect hook with the PRAGMA it applies
        self._autocheckpoint = AUTOCHECKPOINT_PAGES
        # Calls handed to the thread, and finished there: each counter is written by one
        # thread only, so their difference is exact without a lock.
        self._handed = 0
        self._finished = 0

    @property
    def idle(self) -> bool:
        """No call of this connection is running on its thread."""
        return self._handed == self._finished

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if self.inline and self.idle:
            return fn(*args, **kwargs)
        function = partial(self._counted, partial(fn, *args, **kwargs))
        future = asyncio.get_running_loop().create_future()
        self._handed += 1
        self._tx.put_nowait((future, function))
        return await future

    def _counted(self, function: Callable[[], Any]) -> Any:
        try:
            return function()
        finally:
            self._finished += 1

    def begin_inline(self, statement: str) -> bool:
        """``statement`` (a BEGIN) on this thread, and the transaction's calls after it;
        False, with nothing begun, when a call of the thread is still running or when it is
        ``BEGIN IMMEDIATE`` and another process holds the write lock (the caller then
        begins on the connection's thread, which waits for the lock). A write's commit
        then leaves the WAL checkpoint to a commit on a thread (see the module)."""
        if not self.idle:
            return False
        sqlite = self._conn
        if statement != IMMEDIATE:
            sqlite.execute(statement)
            self.inline = True
            return True
        sqlite.execute("PRAGMA busy_timeout=0")
        try:
            sqlite.execute(statement)
        except sqlite3.OperationalError as exc:
            if sqlite.in_transaction or "locked" not in str(exc):
                raise
            return False
        finally:
            sqlite.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        self._set_autocheckpoint(INLINE_AUTOCHECKPOINT_PAGES)
        self.inline = True
        return True

    def leave_inline(self) -> None:
        """Back to running calls on the connection's thread (when it returns to the pool),
        with the usual checkpoint threshold: now, or at a later return if a call of the
        thread is still running (whether or not that transaction was inline)."""
        if self._autocheckpoint != AUTOCHECKPOINT_PAGES and self.idle:
            self._set_autocheckpoint(AUTOCHECKPOINT_PAGES)
        self.inline = False

    def _set_autocheckpoint(self, pages: int) -> None:
        self._conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        self._autocheckpoint = pages


def inline_connect(database: str, **kwargs: Any) -> InlineConnection:
    """What ``aiosqlite.connect`` makes, as an :class:`InlineConnection` (SQLAlchemy's
    ``async_creator_fn`` connect argument: called with the URL's arguments)."""

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return connection

    connection = InlineConnection(connector, 64)
    connection._thread.daemon = True  # as SQLAlchemy makes aiosqlite's own
    return connection
