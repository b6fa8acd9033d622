"""Privacy requests, their exports and the suppression list on SQLite: ``<folder>/privacy.db``.

A request is written with ``synchronous=FULL`` before it is acknowledged, so an accepted
erasure survives a crash and is resumed. Exports hold a person's data until a later erasure
removes them; ``secure_delete`` and a WAL truncation leave no copy in the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from segue.core.model import PrivacyRequest
from segue.storage._sqlite_db import SqliteFile, transaction

__all__ = ["SqlitePrivacyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    created_at REAL NOT NULL,
    doc        BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_open ON requests (created_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS requests_created ON requests (created_at, request_id);
CREATE TABLE IF NOT EXISTS exports (request_id TEXT PRIMARY KEY, data BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS export_subjects (
    subject TEXT NOT NULL, request_id TEXT NOT NULL, PRIMARY KEY (subject, request_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppressed (hash TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
"""
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(PrivacyRequest).decode


class SqlitePrivacyStore:
    """Requests, exports and suppressed identifier hashes in ``<folder>/privacy.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(
            folder / "privacy.db", _SCHEMA, synchronous=synchronous, secure_delete=True
        )

    async def open(self) -> None:
        await self._db.open()

    async def put(self, request: PrivacyRequest) -> None:
        row = (request.request_id, request.status, request.created_at, _encode(request))

        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO requests (request_id, status, created_at, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, "
                "doc = excluded.doc",
                row,
            )

        await self._db.write(lambda conn: transaction(conn, body))
        if not request.user:  # the identifiers were scrubbed: leave no copy in the WAL
            await self._db.truncate_wal()

    async def get(self, request_id: str) -> PrivacyRequest | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        )
        return None if row is None else _decode(row[0])

    async def unfinished(self) -> list[PrivacyRequest]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM requests WHERE status IN ('pending', 'running') "
                "ORDER BY created_at"
            ).fetchall()
        )
        return [_decode(doc) for (doc,) in rows]

    async def recent(self, limit: int) -> list[PrivacyRequest]:
        if limit <= 0:
            return []
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM requests ORDER BY created_at DESC, request_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [_decode(doc) for (doc,) in rows]

    async def put_export(self, request_id: str, subjects: Sequence[str], data: bytes) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO exports (request_id, data) VALUES (?, ?) "
                "ON CONFLICT (request_id) DO UPDATE SET data = excluded.data",
                (request_id, data),
            )
            conn.executemany(
                "INSERT INTO export_subjects (subject, request_id) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                [(s, request_id) for s in sorted(set(subjects))],
            )

        await self._db.write(lambda conn: transaction(conn, body))

    async def export(self, request_id: str) -> bytes | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT data FROM exports WHERE request_id = ?", (request_id,)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def erase_exports(self, subjects: Iterable[str]) -> int:
        wanted = sorted(set(subjects))

        def body(conn: sqlite3.Connection) -> int:
            ids: set[str] = set()
            for subject in wanted:
                ids.update(
                    str(r[0])
                    for r in conn.execute(
                        "SELECT request_id FROM export_subjects WHERE subject = ?", (subject,)
                    )
                )
            removed = 0
            for request_id in sorted(ids):
                removed += conn.execute(
                    "DELETE FROM exports WHERE request_id = ?", (request_id,)
                ).rowcount
                conn.execute("DELETE FROM export_subjects WHERE request_id = ?", (request_id,))
            return removed

        removed = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return removed

    async def suppress(self, hashes: Iterable[str], at: float) -> int:
        rows = [(h, at) for h in sorted(set(hashes))]

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "INSERT INTO suppressed (hash, at) VALUES (?, ?) ON CONFLICT DO NOTHING", rows
            )
            return int(cur.rowcount)

        return await self._db.write(lambda conn: transaction(conn, body))

    async def suppressed(self) -> list[str]:
        rows = await self._db.read(lambda c: c.execute("SELECT hash FROM suppressed").fetchall())
        return [str(r[0]) for r in rows]

    async def aclose(self) -> None:
        await self._db.aclose()
