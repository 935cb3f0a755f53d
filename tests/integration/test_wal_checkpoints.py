"""SQLite's WAL is checkpointed by a thread of its own, not inside the writers' commits."""

from __future__ import annotations

import asyncio
import gc
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from junctionbox.store.database import Database
from junctionbox.store.wal_checkpoints import BACKSTOP_PAGES, WalCheckpointer

pytestmark = pytest.mark.usefixtures("sqlite_only")


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's; PostgreSQL checkpoints by itself")


def _rows_in_main_file(path: Path, copy: Path) -> int:
    """Rows of ``t`` in the database file alone, without its WAL: what a checkpoint moved."""
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # the table itself is still only in the WAL
            return 0


async def test_committed_pages_reach_the_database_file_without_a_writer_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jb.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
        async with db.read() as conn:
            raw = await conn.get_raw_connection()
            cursor = await raw.driver_connection.execute("PRAGMA wal_autocheckpoint")
            assert (await cursor.fetchone())[0] == BACKSTOP_PAGES  # writers checkpoint late
        for _ in range(100):  # the thread checkpoints every 0.1 s
            if _rows_in_main_file(path, tmp_path / "copy.db") == 3:
                break
            await asyncio.sleep(0.05)
        assert _rows_in_main_file(path, tmp_path / "copy.db") == 3
    finally:
        await db.dispose()


async def test_disposing_of_the_database_stops_its_checkpoint_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'jb.db'}")
    checkpointer = db._checkpointer
    assert checkpointer is not None
    assert checkpointer.running
    await db.dispose()
    assert not checkpointer.running


def test_a_checkpointer_whose_database_is_gone_stops_by_itself(tmp_path: Path) -> None:
    class Owner:
        pass

    owner = Owner()
    checkpointer = WalCheckpointer(str(tmp_path / "jb.db"), interval=0.01, owner=owner)
    checkpointer.start()
    del owner
    gc.collect()
    for _ in range(500):
        if not checkpointer.running:
            break
        time.sleep(0.01)
    assert not checkpointer.running


async def test_an_in_memory_database_keeps_sqlites_own_checkpoints() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    try:
        assert db._checkpointer is None
    finally:
        await db.dispose()
