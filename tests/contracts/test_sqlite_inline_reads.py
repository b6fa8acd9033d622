"""Point reads of a few keys run on the caller's thread, larger reads on a reader thread.

A hand-off to a reader thread and back costs more on this machine (~150 µs) than a read of a
few keys (~40–110 µs), and one identify at a time made three of them. Checked here by where
the reads run and what they return, never by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from segue.core.model import Changeset, Identifier, NewRecord, Profile
from segue.errors import BackendUnavailable
from segue.storage._sqlite_db import SqliteFile, transaction
from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"


class _NoThreads(Executor):
    """Stands in for the reader pool: counts what would have gone to a thread, runs nothing."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        future: Future[Any] = Future()
        future.set_exception(RuntimeError("sent to a reader thread"))
        return future


@contextlib.asynccontextmanager
async def _opened(path: Path) -> AsyncIterator[SqliteFile]:
    db = SqliteFile(path, _SCHEMA)
    await db.open()
    try:
        yield db
    finally:
        await db.aclose()


@contextlib.contextmanager
def _without_reader_threads(db: SqliteFile) -> Iterator[_NoThreads]:
    """The file's reader pool replaced by one that refuses (and counts) every read."""
    pool, real = _NoThreads(), db._readers
    db._readers = pool  # type: ignore[assignment]
    try:
        yield pool
    finally:
        db._readers = real


def test_an_inline_read_runs_on_the_calling_thread_and_a_plain_one_does_not(
    tmp_path: Path,
) -> None:
    def where(conn: sqlite3.Connection) -> tuple[int, str]:
        return threading.get_ident(), conn.execute("SELECT v FROM t").fetchone()[0]

    async def run() -> None:
        async with _opened(tmp_path / "r.db") as db:
            await db.write(
                lambda conn: transaction(
                    conn, lambda c: c.execute("INSERT INTO t (k, v) VALUES (1, 'one')")
                )
            )
            here = threading.get_ident()
            assert await db.read(where, inline=True) == (here, "one")
            thread, value = await db.read(where)
            assert thread != here
            assert value == "one"

    asyncio.run(run())


def test_an_inline_read_reports_a_broken_query_as_the_backend_being_unavailable(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with _opened(tmp_path / "r.db") as db:
            with pytest.raises(BackendUnavailable, match=r"r\.db"):
                await db.read(lambda c: c.execute("SELECT nope FROM t").fetchall(), inline=True)

    asyncio.run(run())


def test_the_profile_store_reads_a_few_keys_inline_and_many_on_a_reader_thread(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        store = SqliteProfileStore(tmp_path)
        await store.open()
        people = {f"p{i}": Identifier("email", f"p{i}@example.com") for i in range(40)}
        changes = Changeset()
        for pid, ident in people.items():
            changes.links[ident] = pid
            changes.profiles[pid] = Profile(
                profile_id=pid,
                created_at=1.0,
                updated_at=1.0,
                first_seen=1.0,
                last_seen=1.0,
                identities=[ident],
            )
            changes.block_keys[pid] = [f"k:{pid}", "k:shared"]
            changes.match_records[pid] = pid.encode()
        await store.commit(changes, "c", 1)
        # who holds a block key is answered in memory, read once on a reader thread
        assert (await store.block_candidates(["k:p0"], cap=100)) == {"k:p0": ["p0"]}

        with _without_reader_threads(store._db) as pool:
            few = list(people.items())[:3]
            found = await store.lookup([ident for _, ident in few])
            assert found == {ident: pid for pid, ident in few}
            assert set(await store.profiles([pid for pid, _ in few])) == {pid for pid, _ in few}
            assert await store.match_records(["p1"]) == {"p1": b"p1"}
            blocks = await store.block_candidates(["k:p1", "k:p2"], cap=100)
            assert blocks == {"k:p1": ["p1"], "k:p2": ["p2"]}
            assert pool.submitted == 0

            # the same reads over many keys go to a reader thread (here: refused by the pool)
            with pytest.raises(RuntimeError, match="reader thread"):
                await store.lookup(list(people.values()))
            with pytest.raises(RuntimeError, match="reader thread"):
                await store.profiles(list(people))
            assert pool.submitted == 2
            # block keys, however many, from memory: only their epoch is read, inline
            many = await store.block_candidates([f"k:{pid}" for pid in people], cap=100)
            assert many == {f"k:{pid}": [pid] for pid in people}
            assert pool.submitted == 2
        # and with the real pool they answer
        assert len(await store.lookup(list(people.values()))) == 40
        assert (await store.block_candidates(["k:shared"], cap=100))["k:shared"] != []
        await store.aclose()

    asyncio.run(run())


def _records(prefix: str, n: int) -> list[NewRecord]:
    return [NewRecord("web", f"{prefix}-{i}", 1.0, f"k{i}", b"{}") for i in range(n)]


def test_the_log_reads_inline_only_what_it_knows_is_a_few_records_behind(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        log = SqliteEventLog(tmp_path)
        await log.open()
        await log.append(_records("a", 3))
        with _without_reader_threads(log._db) as pool:
            assert [r.offset for r in await log.read(0, 100)] == [1, 2, 3]
            assert pool.submitted == 0
            await log.append(_records("b", 20))
            with pytest.raises(RuntimeError, match="reader thread"):
                await log.read(3, 100)
            assert pool.submitted == 1
        await log.aclose()

    asyncio.run(run())


def test_records_another_process_appended_are_read_all_the_same(tmp_path: Path) -> None:
    """A reader's known head lags another writer's appends: an inline read stops at its
    bound, and reading on from the last offset returns the rest, in order."""

    async def run() -> None:
        mine, theirs = SqliteEventLog(tmp_path), SqliteEventLog(tmp_path)
        await mine.open()
        await theirs.open()
        await mine.append(_records("mine", 1))
        await theirs.append(_records("theirs", 20))
        seen: list[int] = []
        sizes: list[int] = []
        while batch := await mine.read(seen[-1] if seen else 0, 100):
            seen.extend(r.offset for r in batch)
            sizes.append(len(batch))
        assert seen == list(range(1, 22))
        assert sizes == [8, 13]  # the inline read's bound, then the rest from a thread
        await mine.aclose()
        await theirs.aclose()

    asyncio.run(run())
