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

from segue.core.changes import Change, encode_change
from segue.storage._sqlite_db import SqliteFile, transaction

__all__ = ["SqliteChangeFeed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    at   REAL NOT NULL,
    body BLOB NOT NULL
);
"""
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
        self._published = 0
        #: a file on this machine is always there
        self.live = True

    async def open(self) -> None:
        await self._db.open()
        self._seen = await self._db.read(_head)

    async def publish(self, note: bytes) -> None:
        now = time.time()
        self._published += 1
        trim = self._published % 500 == 1

        def body(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO changes (at, body) VALUES (?, ?)", (now, note))
            if trim:
                conn.execute("DELETE FROM changes WHERE at < ?", (now - _KEEP_S,))

        await self._db.write(lambda conn: transaction(conn, body))

    async def receive(self, timeout: float) -> list[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            seen = self._seen
            rows = await self._db.read(partial(_after, seen=seen))
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
        await self._db.aclose()


def _after(conn: sqlite3.Connection, seen: int) -> list[tuple[int, bytes]]:
    return conn.execute(
        "SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000", (seen,)
    ).fetchall()


def _head(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])
