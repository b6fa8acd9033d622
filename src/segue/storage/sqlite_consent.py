"""The consent ledger on SQLite, in its own file ``<folder>/consent.db``.

Append-only in normal operation: one row per signal, the record as JSON plus the subject
column it is read by. Commits use ``synchronous=FULL``: a consent change is acknowledged
only once it would survive a power cut, because "revocation effective on the next request"
must also hold after a restart. ``secure_delete`` makes an erasure overwrite the rows it
removes instead of leaving them in free pages of the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from segue.core.model import ConsentRecord
from segue.storage._sqlite_db import SqliteFile, in_chunks, transaction

__all__ = ["SqliteConsentStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consent_ledger (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    at      REAL NOT NULL,
    doc     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_subject ON consent_ledger (subject, seq);
"""
_CHUNK = 400
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ConsentRecord)


class SqliteConsentStore:
    """Consent signals per subject in ``<folder>/consent.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(
            folder / "consent.db", _SCHEMA, synchronous=synchronous, secure_delete=True
        )

    async def open(self) -> None:
        await self._db.open()

    async def record(self, records: Sequence[ConsentRecord]) -> list[ConsentRecord]:
        if not records:
            return []

        def body(conn: sqlite3.Connection) -> list[ConsentRecord]:
            out = []
            for rec in records:
                cur = conn.execute(
                    "INSERT INTO consent_ledger (subject, at, doc) VALUES (?, ?, ?)",
                    (rec.subject, rec.at, _encoder.encode(rec)),
                )
                out.append(msgspec.structs.replace(rec, seq=int(cur.lastrowid or 0)))
            return out

        return await self._db.write(lambda conn: transaction(conn, body))

    async def history(self, subjects: Iterable[str], limit: int = 10_000) -> list[ConsentRecord]:
        wanted = sorted(set(subjects))
        if not wanted:
            return []

        def fetch(conn: sqlite3.Connection) -> list[ConsentRecord]:
            rows: list[tuple[int, bytes]] = []
            for chunk, marks in in_chunks(wanted, _CHUNK):
                sql = (
                    "SELECT seq, doc FROM consent_ledger "  # noqa: S608 - only "?" marks
                    f"WHERE subject IN ({marks}) ORDER BY seq DESC LIMIT ?"
                )
                rows.extend(conn.execute(sql, [*chunk, limit]))
            rows.sort()
            return [
                msgspec.structs.replace(_decoder.decode(doc), seq=seq) for seq, doc in rows[-limit:]
            ]

        return await self._db.read(fetch)

    async def erase(self, subjects: Iterable[str]) -> int:
        wanted = sorted(set(subjects))

        def body(conn: sqlite3.Connection) -> int:
            removed = 0
            for chunk, marks in in_chunks(wanted, _CHUNK):
                sql = f"DELETE FROM consent_ledger WHERE subject IN ({marks})"  # noqa: S608
                removed += conn.execute(sql, chunk).rowcount
            return removed

        removed = await self._db.write(lambda conn: transaction(conn, body))
        # the WAL still holds the deleted rows until it is checkpointed and truncated
        await self._db.truncate_wal()
        return removed

    async def subjects(self) -> list[str]:
        def fetch(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute("SELECT DISTINCT subject FROM consent_ledger")]

        return await self._db.read(fetch)

    async def scan(self, after: int, limit: int) -> list[ConsentRecord]:
        if limit <= 0:
            return []
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT seq, doc FROM consent_ledger WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [msgspec.structs.replace(_decoder.decode(doc), seq=seq) for seq, doc in rows]

    async def aclose(self) -> None:
        await self._db.aclose()
