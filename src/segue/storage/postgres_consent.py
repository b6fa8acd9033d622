"""The consent ledger on PostgreSQL, in the table ``consent_ledger``.

Append-only in normal operation: one row per signal, the record as JSON plus the subject it
is read by; ``seq`` (an identity column) is the ledger order. A consent change is
acknowledged only once its transaction has committed with ``synchronous_commit=on``, so
"revocation effective on the next request" also holds after a server crash, and every
process sharing the database reads the same ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from segue.core.model import ConsentRecord
from segue.storage._postgres import PgDatabase

__all__ = ["PostgresConsentStore"]

MIGRATIONS = [
    """
    CREATE TABLE consent_ledger (
        seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject TEXT COLLATE "C" NOT NULL,
        at      DOUBLE PRECISION NOT NULL,
        doc     BYTEA NOT NULL
    );
    CREATE INDEX consent_subject ON consent_ledger (subject, seq);
    """,
]
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ConsentRecord)


class PostgresConsentStore:
    """Consent signals per subject in the database at ``url``."""

    def __init__(self, url: str, *, max_connections: int = 3) -> None:
        self._db = PgDatabase(url, "consent", MIGRATIONS, max_size=max_connections)

    async def open(self) -> None:
        await self._db.open()

    async def record(self, records: Sequence[ConsentRecord]) -> list[ConsentRecord]:
        if not records:
            return []
        rows = [(rec.subject, rec.at, _encoder.encode(rec)) for rec in records]
        seqs: list[int] = []
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO consent_ledger (subject, at, doc) VALUES (%s, %s, %s) RETURNING seq",
                rows,
                returning=True,
            )
            while True:  # one result set per inserted row, in order
                row = await cur.fetchone()
                if row is not None:
                    seqs.append(int(row[0]))
                if not cur.nextset():
                    break
        return [msgspec.structs.replace(r, seq=s) for r, s in zip(records, seqs, strict=True)]

    async def history(self, subjects: Iterable[str], limit: int = 10_000) -> list[ConsentRecord]:
        wanted = sorted(set(subjects))
        if not wanted or limit <= 0:
            return []
        # per subject, the newest ``limit`` entries from the (subject, seq) index, then the
        # newest ``limit`` of those: bounded reads whatever the planner thinks of the subjects
        rows = await self._db.fetchall(
            "SELECT x.seq, x.doc FROM unnest(%s::text[]) AS s(subject) CROSS JOIN LATERAL ("
            " SELECT c.seq, c.doc FROM consent_ledger c WHERE c.subject = s.subject"
            " ORDER BY c.seq DESC LIMIT %s) AS x ORDER BY x.seq DESC LIMIT %s",
            (wanted, limit, limit),
        )
        return [
            msgspec.structs.replace(_decoder.decode(bytes(doc)), seq=int(seq))
            for seq, doc in reversed(rows)
        ]

    async def erase(self, subjects: Iterable[str]) -> int:
        wanted = sorted(set(subjects))
        if not wanted:
            return 0
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM consent_ledger WHERE subject = ANY(%s)", (wanted,)
            )
            removed = cur.rowcount
        if removed:
            await self._db.vacuum("consent_ledger")
        return removed

    async def subjects(self) -> list[str]:
        rows = await self._db.fetchall("SELECT DISTINCT subject FROM consent_ledger")
        return [str(r[0]) for r in rows]

    async def scan(self, after: int, limit: int) -> list[ConsentRecord]:
        if limit <= 0:
            return []
        rows = await self._db.fetchall(
            "SELECT seq, doc FROM consent_ledger WHERE seq > %s ORDER BY seq LIMIT %s",
            (after, limit),
        )
        return [
            msgspec.structs.replace(_decoder.decode(bytes(doc)), seq=int(seq)) for seq, doc in rows
        ]

    async def aclose(self) -> None:
        await self._db.aclose()
