"""One SQLite file used from asyncio: a single writer thread and a pool of reader threads.

SQLite allows one writer at a time; funnelling every write through one thread makes that
explicit and lets callers batch many logical writes into one transaction (group commit).
Readers get their own connections (WAL lets them run beside the writer).

A file may also copy its write-ahead log back into the database on a thread of its own
(``checkpoint_in_background``). By default SQLite does it inside the commit that takes the
log past 1,000 pages, fsyncing the database file, and that commit waits: one identify at a
time against 100,000 profiles, a commit writes ~30 pages to the state database's log, so
about one in thirty paid for a checkpoint — the p99 of resolution was 21–24 ms with them and
7 ms without. The writer keeps a much higher automatic threshold, so the log stays bounded
even if the background thread falls behind.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from segue.errors import BackendUnavailable

T = TypeVar("T")
V = TypeVar("V")


class CommitWatch:
    """Whether anyone may have committed to a WAL-mode database since the last look,
    without a query.

    Every commit, by any process, rewrites the WAL-index header at the start of the
    ``-shm`` file: that is how other connections learn of new frames. Reading its first
    136 bytes with ``pread`` takes a few microseconds on the caller's thread, where asking
    the database takes a reader thread and back (~150–200 µs). A process polling for
    another's appends did that ~430 times a second while idle, 8 % of a core for a server
    with nothing to do. The bytes are only a hint: any change means "look", and every
    ``fallback_s`` the caller looks anyway (reopening the file, in case it was replaced),
    so a header that moved in a way these bytes miss costs latency, never an event.
    """

    #: the two copies of the WAL-index header and the checkpoint information
    HEADER_BYTES = 136

    def __init__(self, database: Path, fallback_s: float = 0.1) -> None:
        self._shm = database.with_name(database.name + "-shm")
        self._fallback_s = fallback_s
        self._fd: int | None = None
        self._seen = b""
        self._looked_at = 0.0

    def moved(self) -> bool:
        now = time.monotonic()
        if now - self._looked_at >= self._fallback_s:
            self.close()  # reopened below: the file may have been replaced
        try:
            if self._fd is None:
                self._fd = os.open(self._shm, os.O_RDONLY)
            header = os.pread(self._fd, self.HEADER_BYTES, 0)
        except OSError:
            self.close()
            header = b""
        if header == self._seen and header and now - self._looked_at < self._fallback_s:
            return False
        self._seen, self._looked_at = header, now
        return True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SqliteFile:
    """Connections and threads for one database file.

    Args:
        path: the database file; its folder is created.
        synchronous: ``FULL`` makes every commit survive power loss (fsync of the WAL);
            ``NORMAL`` survives a process crash but not power loss.
        schema: SQL run once by the writer at open.
        secure_delete: overwrite deleted content with zeros (files that hold personal
            data: an erasure must leave no copy in free pages).
        checkpoint_in_background: checkpoint the write-ahead log on a thread of its own,
            shortly after commits, instead of inside the commit that fills it.
    """

    #: the writer's own automatic checkpoint threshold (pages) when a thread does it
    FALLBACK_AUTOCHECKPOINT = 16_000
    #: how long the checkpoint thread lets commits gather before it runs (seconds)
    CHECKPOINT_DELAY = 0.05

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        synchronous: str = "FULL",
        readers: int = 2,
        secure_delete: bool = False,
        checkpoint_in_background: bool = False,
    ) -> None:
        self.path = path
        self._schema = schema
        self._synchronous = synchronous
        self._secure_delete = secure_delete
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-w-{path.stem}")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix=f"sqlite-r-{path.stem}")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._background = checkpoint_in_background
        self._committed = threading.Event()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        #: checkpoints the background thread has run
        self.checkpoints = 0

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        if self._secure_delete:
            conn.execute("PRAGMA secure_delete=ON")
        if self._background:
            conn.execute(f"PRAGMA wal_autocheckpoint={self.FALLBACK_AUTOCHECKPOINT}")
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def connection(self) -> sqlite3.Connection:
        """The calling thread's own connection, for synchronous work on a thread the caller
        owns (another file's writer thread, which must not wait for a hand-off)."""
        return self._conn()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def init() -> None:
            self._conn().executescript(self._schema)

        await self.write(lambda _conn: init())
        if self._background and self._checkpointer is None:
            self._closing.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name=f"sqlite-c-{self.path.stem}", daemon=True
            )
            self._checkpointer.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread; it owns the transaction (BEGIN/COMMIT)."""
        result = await self._run(self._writer, fn)
        if self._background:
            self._committed.set()
        return result

    def _checkpoint_loop(self) -> None:
        """Copy committed log pages into the database soon after each burst of commits.

        PASSIVE never waits for the writer or for readers: it copies what it can now, and
        the next round copies the rest. An error is left to the next round (and to the
        writer's own automatic checkpoint, which bounds the log whatever happens here).
        """
        conn = self._connect()
        try:
            while True:
                self._committed.wait()
                self._committed.clear()  # a commit from now on asks for another round
                if self._closing.wait(self.CHECKPOINT_DELAY):
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    continue
                self.checkpoints += 1
        finally:
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            conn.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run ``fn`` on a reader thread, or with ``inline`` on the caller's own thread.

        ``inline`` is for point reads of a few keys: on this machine a hand-off to a thread
        and back costs ~150 µs (p99 ~0.5 ms), more than such a read itself (~40–110 µs),
        and one identify at a time made three of them. The caller's thread gets its own
        connection; WAL readers never wait for the writer, so the loop is held only for the
        read's own work.
        """
        if not inline:
            return await self._run(self._readers, fn)
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"sqlite {self.path.name}: {exc}") from exc

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, lambda: fn(self._conn()))
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"sqlite {self.path.name}: {exc}") from exc

    async def truncate_wal(self, attempts: int = 50) -> bool:
        """Copy the write-ahead log into the database and truncate it to zero bytes.

        After an erasure the WAL still holds the old pages; this removes them from disk.
        A reader in the middle of a transaction blocks the truncation, so it is retried
        briefly. Returns whether the WAL was truncated.
        """

        def checkpoint(conn: sqlite3.Connection) -> bool:
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError:  # the background checkpoint holds the file
                return False
            return int(busy) == 0

        for _ in range(attempts):
            if await self.write(checkpoint):
                return True
            await asyncio.sleep(0.01)
        return False

    async def aclose(self) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._closing.set()
            self._committed.set()
            await asyncio.to_thread(checkpointer.join)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` inside BEGIN IMMEDIATE … COMMIT, rolling back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def in_chunks(values: list[V], size: int) -> Iterator[tuple[list[V], str]]:
    """``values`` in slices of at most ``size``, each with its ``?,?,…`` placeholders.

    For ``IN (…)`` lists that must stay under SQLite's bound-parameter limit; only the
    placeholders are interpolated into SQL, the values are bound.
    """
    for start in range(0, len(values), size):
        chunk = values[start : start + size]
        yield chunk, ",".join("?" * len(chunk))
