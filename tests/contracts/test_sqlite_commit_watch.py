"""Waiting for another process's commits without a query in every poll (``CommitWatch``).

Counts, never timings: how many times the watched file is asked, and that a commit made
by another process (a real one, with its own connection) is always noticed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from segue.core.changes import Change, decode_change, encode_change
from segue.core.model import NewRecord
from segue.storage._sqlite_db import CommitWatch, SqliteFile
from segue.storage.sqlite import SqliteEventLog
from segue.storage.sqlite_changes import SqliteChangeFeed

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY);"


def _commit_in_another_process(path: Path, k: int) -> None:
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('INSERT INTO t (k) VALUES (?)', (int(sys.argv[2]),)); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(k)], check=True)


def test_the_watch_sees_every_commit_of_another_process_and_nothing_else(tmp_path: Path) -> None:
    async def run() -> None:
        db = SqliteFile(tmp_path / "w.db", _SCHEMA)
        await db.open()  # WAL mode, and this process keeps the file open as a server does
        watch = CommitWatch(db.path, fallback_s=3600)
        assert watch.moved()  # the first look always looks
        assert not watch.moved()
        for k in range(5):
            _commit_in_another_process(db.path, k)
            assert watch.moved(), k
            assert not watch.moved(), k
        # a checkpoint that resets the log, then a commit writing its first frames again
        await db.write(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        watch.moved()
        _commit_in_another_process(db.path, 99)
        assert watch.moved()
        watch.close()
        await db.aclose()

    asyncio.run(run())


def test_with_nothing_moving_the_watch_still_looks_every_fallback_period(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_SCHEMA)
    watch = CommitWatch(path, fallback_s=0.05)
    assert watch.moved()
    looks = 0
    deadline = time.monotonic() + 0.5
    polls = 0
    while time.monotonic() < deadline:
        looks += watch.moved()
        polls += 1
        time.sleep(0.002)
    # about ten looks in half a second, out of ~200 polls: the fallback, not every poll
    assert 3 <= looks <= 15, (looks, polls)
    assert polls > 50
    watch.close()
    conn.close()


def test_a_waiting_reader_wakes_for_another_process_append_with_few_queries(
    tmp_path: Path,
) -> None:
    """The processor's wait for records appended by an API process (``serve --workers``):
    woken by them, with a query per commit or fallback rather than per poll."""

    async def run() -> None:
        folder = tmp_path / "log"
        reader, writer = SqliteEventLog(folder), SqliteEventLog(folder)
        await reader.open()
        await writer.open()
        asked = 0
        original = reader.last_offset

        async def counted() -> int:
            nonlocal asked
            asked += 1
            return await original()

        reader.last_offset = counted  # type: ignore[method-assign]
        # nothing comes: ~0.5 s of 5 ms polls, a look only every 100 ms fallback
        await reader.wait(0, 0.5)
        idle_looks = asked
        assert 2 <= idle_looks <= 10, idle_looks
        # the other "process" (its own connections, so no in-process wake-up) appends
        waiting = asyncio.create_task(reader.wait(0, 5.0))
        await asyncio.sleep(0.05)
        record = NewRecord("web", "m-1", time.time(), "anonymous_id:a", b"{}")
        await writer.append([record])
        await asyncio.wait_for(waiting, 5.0)
        assert await reader.last_offset() == 1
        await writer.aclose()
        await reader.aclose()

    asyncio.run(run())


def test_the_file_change_feed_asks_its_file_only_when_it_moved(tmp_path: Path) -> None:
    """A receiver with nothing to receive: polls every 4 ms, queries only on the fallback;
    a note another process publishes still arrives."""

    async def run() -> None:
        receiver, sender = SqliteChangeFeed(tmp_path), SqliteChangeFeed(tmp_path)
        await receiver.open("p0")
        await sender.open("p1")
        asked = 0
        original = receiver._db.read

        async def counted(fn, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal asked
            asked += 1
            return await original(fn, **kwargs)

        receiver._db.read = counted  # type: ignore[method-assign]
        assert await receiver.receive(0.5) == []
        assert 2 <= asked <= 10, asked  # ~125 polls
        await sender.publish(encode_change(Change(origin="p1", flush=True)))
        notes = await receiver.receive(5.0)
        assert [decode_change(n) for n in notes] == [Change(origin="p1", flush=True)]
        await sender.aclose()
        await receiver.aclose()

    asyncio.run(run())
