"""The change feed of an embedded installation: a table in ``<data>/changes.db``.

Several processes on one machine (``segue serve --workers N``, ``segue worker``) share the
data folder; a note is a row, and every process polls for rows past the last it saw — a
few microseconds per poll on an index, every few milliseconds. Notes may name people
(identifiers, consent subjects): rows older than a minute are deleted, with
``secure_delete`` so their bytes do not stay in the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from functools import partial
from pathlib import Path

import structlog

from segue.core.changes import Change, encode_change
from segue.storage._sqlite_db import CommitWatch, SqliteFile, transaction

__all__ = ["SqliteChangeFeed"]

_log = structlog.get_logger("segue.changes")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    at   REAL NOT NULL,
    body BLOB NOT NULL
);
-- each process: the last note it applied, and when it last said so (alive if recent)
CREATE TABLE IF NOT EXISTS readers (
    origin  TEXT PRIMARY KEY,
    applied INTEGER NOT NULL,
    at      REAL NOT NULL
);
"""
#: a process that has not reported for this long is gone: nobody waits for it
_ALIVE_S = 1.5
#: the longest a confirmed publish waits for the others
_CONFIRM_S = 0.5
#: seconds a note stays readable; a process slower than that to poll flushes its caches
_KEEP_S = 60.0
#: seconds between polls while waiting for a note
_POLL_S = 0.004


class SqliteChangeFeed:
    """Notes as rows; receivers poll. See the module docstring."""

    def __init__(self, folder: Path) -> None:
        self._db = SqliteFile(
            Path(folder) / "changes.db", _SCHEMA, synchronous="NORMAL", secure_delete=True
        )
        self._seen = 0
        #: notes of other processes, seen without a query while nothing moves
        self._watch = CommitWatch(self._db.path)
        self._applied_at = 0.0
        self._published = 0
        self._origin = ""
        #: a file on this machine is always there
        self.live = True

    async def open(self, origin: str) -> None:
        self._origin = origin
        await self._db.open()
        self._seen = await self._db.read(_head)
        await self.applied()

    async def publish(self, note: bytes, *, confirm: bool = False) -> None:
        now = time.time()
        self._published += 1
        trim = self._published % 500 == 1
        origin = self._origin

        def body(conn: sqlite3.Connection) -> int:
            seq = conn.execute(
                "INSERT INTO changes (at, body) VALUES (?, ?)", (now, note)
            ).lastrowid
            if trim:
                conn.execute("DELETE FROM changes WHERE at < ?", (now - _KEEP_S,))
                conn.execute("DELETE FROM readers WHERE at < ?", (now - _KEEP_S,))
            return int(seq or 0)

        seq = await self._db.write(lambda conn: transaction(conn, body))
        if confirm:
            await self._confirm(seq, origin)

    async def _confirm(self, seq: int, origin: str) -> None:
        """Until every other live process has applied note ``seq`` (or the wait is over)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONFIRM_S
        while True:
            behind = await self._db.read(
                partial(_behind, origin=origin, alive=time.time() - _ALIVE_S, seq=seq)
            )
            if not behind:
                return
            if loop.time() >= deadline:
                _log.warning("change_not_confirmed", processes=behind)
                return
            await asyncio.sleep(_POLL_S / 4)

    async def applied(self) -> None:
        now = time.time()
        seen, origin = self._seen, self._origin
        self._applied_at = now
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO readers (origin, applied, at) VALUES (?, ?, ?) "
                "ON CONFLICT (origin) DO UPDATE SET applied = excluded.applied, at = excluded.at",
                (origin, seen, now),
            )
        )

    async def receive(self, timeout: float) -> list[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = self._seen
            rows = await self._db.read(partial(_after, seen=seen)) if self._watch.moved() else []
            if rows:
                notes = [bytes(body) for _, body in rows]
                if rows[0][0] > seen + 1 and seen > 0:  # trimmed before this process read
                    notes.insert(0, encode_change(Change(origin="", flush=True)))
                self._seen = rows[-1][0]
                return notes
            if loop.time() >= deadline:
                return []
            await asyncio.sleep(_POLL_S)

    async def erase(self) -> int:
        flush = encode_change(Change(origin="", flush=True))

        def body(conn: sqlite3.Connection) -> int:
            dropped = int(conn.execute("DELETE FROM changes").rowcount)
            # a note past the gap: a reader that missed the dropped ones flushes its caches
            conn.execute("INSERT INTO changes (at, body) VALUES (?, ?)", (time.time(), flush))
            return dropped

        dropped = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return dropped

    async def aclose(self) -> None:
        origin = self._origin
        # gone: nobody waits for this process's confirmations any more
        await self._db.write(
            lambda conn: conn.execute("DELETE FROM readers WHERE origin = ?", (origin,))
        )
        self._watch.close()
        await self._db.aclose()


def _after(conn: sqlite3.Connection, seen: int) -> list[tuple[int, bytes]]:
    return conn.execute(
        "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000", (seen,)
    ).fetchall()


def _behind(conn: sqlite3.Connection, origin: str, alive: float, seq: int) -> int:
    """How many other live processes have not applied note ``seq`` yet."""
    return int(
        conn.execute(
            "SELECT count(*) FROM readers WHERE origin != ? AND at > ? AND applied < ?",
            (origin, alive, seq),
        ).fetchone()[0]
    )


def _head(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
