"""Privacy requests, their exports and the suppression list on PostgreSQL.

A request is committed with ``synchronous_commit=on`` before it is acknowledged, so an
accepted erasure survives a crash and is resumed by whichever process starts next. Open
requests sit in a partial index, so resuming reads only them. Exports hold a person's data
until a later erasure removes them (then vacuumed, as is a request whose identifiers were
scrubbed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from segue.core.model import PrivacyRequest
from segue.storage._postgres import PgDatabase

__all__ = ["PostgresPrivacyStore"]

MIGRATIONS = [
    """
    CREATE TABLE privacy_requests (
        request_id TEXT COLLATE "C" PRIMARY KEY,
        status     TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        doc        BYTEA NOT NULL
    );
    CREATE INDEX privacy_requests_open ON privacy_requests (created_at)
        WHERE status IN ('pending', 'running');
    CREATE TABLE privacy_exports (request_id TEXT COLLATE "C" PRIMARY KEY, data BYTEA NOT NULL);
    CREATE TABLE privacy_export_subjects (
        subject    TEXT COLLATE "C" NOT NULL,
        request_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (subject, request_id)
    );
    CREATE INDEX privacy_export_subjects_request ON privacy_export_subjects (request_id);
    CREATE TABLE suppressed (hash TEXT COLLATE "C" PRIMARY KEY, at DOUBLE PRECISION NOT NULL);
    """,
    """
    CREATE INDEX privacy_requests_created ON privacy_requests (created_at, request_id);
    """,
]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(PrivacyRequest).decode


class PostgresPrivacyStore:
    """Requests, exports and suppressed identifier hashes in the database at ``url``."""

    def __init__(self, url: str, *, max_connections: int = 2) -> None:
        self._db = PgDatabase(url, "privacy", MIGRATIONS, max_size=max_connections)

    async def open(self) -> None:
        await self._db.open()

    async def put(self, request: PrivacyRequest) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO privacy_requests (request_id, status, created_at, doc) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (request_id) DO UPDATE SET "
                "status = excluded.status, doc = excluded.doc",
                (request.request_id, request.status, request.created_at, _encode(request)),
            )
        if not request.user:  # the identifiers were scrubbed: reclaim the old row version
            await self._db.vacuum("privacy_requests")

    async def get(self, request_id: str) -> PrivacyRequest | None:
        row = await self._db.fetchone(
            "SELECT doc FROM privacy_requests WHERE request_id = %s", (request_id,)
        )
        return None if row is None else _decode(bytes(row[0]))

    async def unfinished(self) -> list[PrivacyRequest]:
        rows = await self._db.fetchall(
            "SELECT doc FROM privacy_requests WHERE status IN ('pending', 'running') "
            "ORDER BY created_at"
        )
        return [_decode(bytes(doc)) for (doc,) in rows]

    async def recent(self, limit: int) -> list[PrivacyRequest]:
        if limit <= 0:
            return []
        rows = await self._db.fetchall(
            "SELECT doc FROM privacy_requests ORDER BY created_at DESC, request_id DESC LIMIT %s",
            (limit,),
        )
        return [_decode(bytes(doc)) for (doc,) in rows]

    async def put_export(self, request_id: str, subjects: Sequence[str], data: bytes) -> None:
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO privacy_exports (request_id, data) VALUES (%s, %s) "
                "ON CONFLICT (request_id) DO UPDATE SET data = excluded.data",
                (request_id, data),
            )
            await cur.executemany(
                "INSERT INTO privacy_export_subjects (subject, request_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                [(s, request_id) for s in sorted(set(subjects))],
            )

    async def export(self, request_id: str) -> bytes | None:
        row = await self._db.fetchone(
            "SELECT data FROM privacy_exports WHERE request_id = %s", (request_id,)
        )
        return None if row is None else bytes(row[0])

    async def erase_exports(self, subjects: Iterable[str]) -> int:
        wanted = sorted(set(subjects))
        if not wanted:
            return 0
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "SELECT request_id FROM privacy_export_subjects WHERE subject = ANY(%s)",
                (wanted,),
            )
            ids = sorted({str(r[0]) for r in await cur.fetchall()})
            if not ids:
                return 0
            cur = await conn.execute(
                "DELETE FROM privacy_exports WHERE request_id = ANY(%s)", (ids,)
            )
            removed = cur.rowcount
            await conn.execute(
                "DELETE FROM privacy_export_subjects WHERE request_id = ANY(%s)", (ids,)
            )
        await self._db.vacuum("privacy_exports", "privacy_export_subjects")
        return removed

    async def suppress(self, hashes: Iterable[str], at: float) -> int:
        wanted = sorted(set(hashes))
        if not wanted:
            return 0
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO suppressed (hash, at) SELECT h, %s FROM unnest(%s::text[]) AS h "
                "ON CONFLICT DO NOTHING",
                (at, wanted),
            )
            return cur.rowcount

    async def suppressed(self) -> list[str]:
        rows = await self._db.fetchall("SELECT hash FROM suppressed")
        return [str(r[0]) for r in rows]

    async def aclose(self) -> None:
        await self._db.aclose()
