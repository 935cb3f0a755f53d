"""SQLite WAL checkpoints on a thread of their own, off the writers' path.

By default SQLite checkpoints in the connection whose commit takes the WAL past 1000 pages
(4 MiB): that commit copies the WAL's pages into the database file and waits for its
fsync before it returns. In this process every writer queues on one in-process lock
(:class:`junctionbox.store.database.Database`), so the publish, the dispatcher and the
delivery worker all waited behind that one commit: with 1 KiB events a delivery writes
about 5 KiB (its job and its log row), and a checkpoint came every 800 deliveries or so
and held the lock for tens of milliseconds (measured: a commit of 200 deliveries took
22 ms on average with checkpoints in the commit, 3.6 ms without).

Here a daemon thread checkpoints every ``interval`` seconds on its own connection, in
``PASSIVE`` mode: it copies what no reader still needs and never blocks a reader or a
writer (SQLite's WAL lets writers append while a checkpoint runs). The pooled connections
keep an automatic checkpoint only as a backstop, at a much larger WAL (``BACKSTOP_PAGES``),
should this thread fall behind or stop. Durability is unchanged: a commit is in the WAL
before it returns, as before; checkpoints only move committed pages into the main file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

INTERVAL_SECONDS: Final = 0.1
# The pooled connections' own automatic checkpoint, in pages (64 MiB of 4 KiB pages).
BACKSTOP_PAGES: Final = 16384
SQLITE_AUTOCHECKPOINT_PAGES: Final = 1000  # SQLite's default, where no thread checkpoints


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite database at ``path`` on a daemon thread until
    :meth:`stop` (or until ``owner`` is garbage collected, if one was given: a database that
    was never disposed of does not leave a thread behind for good)."""

    def __init__(
        self, path: str, *, interval: float = INTERVAL_SECONDS, owner: object | None = None
    ) -> None:
        self.path = path
        self.interval = interval
        self._owner = weakref.ref(owner) if owner is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="sqlite-wal-checkpoints", daemon=True
        )

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _orphaned(self) -> bool:
        return self._owner is not None and self._owner() is None

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval) and not self._orphaned():
                if connection is None:
                    connection = self._connect()
                if connection is not None:
                    self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        """A connection to the existing file (``mode=rw``: never creates one), or None
        until the database exists."""
        if not Path(self.path).exists():
            return None
        uri = Path(self.path).resolve().as_uri() + "?mode=rw"
        try:
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return None

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next tick tries again
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
