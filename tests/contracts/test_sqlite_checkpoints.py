"""The state database copies its write-ahead log back on a thread of its own.

Inside a commit, SQLite's automatic checkpoint made one commit in about thirty wait for an
fsync of the database file (the p99 of one-at-a-time identity resolution: 21–24 ms with it,
6–8 ms without). Checked here by what lands in the files, never by timing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from segue.storage._sqlite_db import SqliteFile, transaction
from segue.storage.sqlite import SqliteProfileStore

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"


def _fill(conn: sqlite3.Connection, start: int) -> None:
    conn.executemany(
        "INSERT INTO t (k, v) VALUES (?, ?)", [(start + i, b"x" * 2000) for i in range(50)]
    )


def _checkpointer_threads(stem: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"sqlite-c-{stem}"]


def test_background_checkpoints_copy_the_log_and_stop_with_the_file(tmp_path: Path) -> None:
    async def run() -> None:
        db = SqliteFile(tmp_path / "bg.db", _SCHEMA, checkpoint_in_background=True)
        await db.open()
        assert len(_checkpointer_threads("bg")) == 1
        expected = (tmp_path / "bg.db").stat().st_size + 500 * 2000
        for batch in range(10):
            await db.write(lambda conn, b=batch: transaction(conn, lambda c: _fill(c, b * 50)))
        # the thread runs shortly after each burst of commits (a slow machine may need more
        # than one round to copy all ten): wait for it, bounded, then look. The file grows
        # while a round runs, before the round is counted: wait for both.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            (tmp_path / "bg.db").stat().st_size < expected or db.checkpoints < 1
        ):
            await asyncio.sleep(0.02)
        assert db.checkpoints >= 1
        # 500 rows of 2 KB: copied into the database file itself, not only logged
        assert (tmp_path / "bg.db").stat().st_size >= expected
        # an erasure's truncation still works beside the thread
        assert await db.truncate_wal()
        assert (tmp_path / "bg.db-wal").stat().st_size == 0
        rows = await db.read(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0])
        assert rows == 500
        await db.aclose()
        assert _checkpointer_threads("bg") == []

    asyncio.run(run())


def test_a_file_without_the_option_has_no_checkpoint_thread(tmp_path: Path) -> None:
    async def run() -> None:
        db = SqliteFile(tmp_path / "plain.db", _SCHEMA)
        await db.open()
        await db.write(lambda conn: transaction(conn, lambda c: _fill(c, 0)))
        assert _checkpointer_threads("plain") == []
        assert db.checkpoints == 0
        await db.aclose()

    asyncio.run(run())


def test_the_state_store_checkpoints_in_the_background(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteProfileStore(tmp_path)
        await store.open()
        assert len(_checkpointer_threads("state")) == 1
        await store.aclose()
        assert _checkpointer_threads("state") == []

    asyncio.run(run())
