"""The decision log and rank events on PostgreSQL (tables ``decisions`` and ``rank_events``).

The same rows as on SQLite: the whole value in the shared JSON form (``_decision_codec``)
plus the columns worth indexing. Rank events that are activated and not yet learned carry
``due`` and sit in a partial index by creation time, so the reward loop reads only those.
Commits use ``synchronous_commit=off``: a server crash may lose the last moments but never
corrupts, the trade SQLite's ``synchronous=NORMAL`` makes (decisions are a log for
attribution, not a system of record).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from segue.core.model import Decision, RankEvent
from segue.storage._decision_codec import decode_decision, decode_rank_event, encode
from segue.storage._postgres import PgDatabase

__all__ = ["PostgresDecisionStore"]

MIGRATIONS = [
    """
    CREATE TABLE decisions (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        decision_id TEXT COLLATE "C" NOT NULL UNIQUE,
        profile_id  TEXT COLLATE "C",
        created_at  DOUBLE PRECISION NOT NULL,
        doc         BYTEA NOT NULL
    );
    CREATE INDEX decisions_profile ON decisions (profile_id, created_at, seq);
    CREATE TABLE rank_events (
        event_id   TEXT COLLATE "C" PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        due        BOOLEAN NOT NULL,
        doc        BYTEA NOT NULL
    );
    CREATE INDEX rank_events_due ON rank_events (created_at, event_id) WHERE due;
    """,
]

_INSERT_DECISION = (
    "INSERT INTO decisions (decision_id, profile_id, created_at, doc) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (decision_id) DO NOTHING"
)
_PUT_EVENT = (
    "INSERT INTO rank_events (event_id, created_at, due, doc) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (event_id) DO UPDATE SET created_at = excluded.created_at, "
    "due = excluded.due, doc = excluded.doc"
)


class PostgresDecisionStore:
    """Decisions and rank events in the database at ``url``."""

    def __init__(self, url: str, *, max_connections: int = 4) -> None:
        self._db = PgDatabase(
            url, "decisions", MIGRATIONS, synchronous_commit="off", max_size=max_connections
        )

    async def open(self) -> None:
        await self._db.open()

    async def put_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        rows = [(d.decision_id, d.profile_id, d.created_at, encode(d)) for d in decisions]
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(_INSERT_DECISION, rows)

    async def get_decision(self, decision_id: str) -> Decision | None:
        row = await self._db.fetchone(
            "SELECT doc FROM decisions WHERE decision_id = %s", (decision_id,)
        )
        return None if row is None else decode_decision(bytes(row[0]))

    async def decisions_for(self, profile_id: str, limit: int) -> list[Decision]:
        rows = await self._db.fetchall(
            "SELECT doc FROM decisions WHERE profile_id = %s "
            "ORDER BY created_at DESC, seq DESC LIMIT %s",
            (profile_id, max(limit, 0)),
        )
        return [decode_decision(bytes(doc)) for (doc,) in rows]

    async def put_rank_event(self, event: RankEvent) -> None:
        due = event.activated and not event.learned
        async with self._db.connection() as conn:
            await conn.execute(_PUT_EVENT, (event.event_id, event.created_at, due, encode(event)))

    async def get_rank_event(self, event_id: str) -> RankEvent | None:
        row = await self._db.fetchone(
            "SELECT doc FROM rank_events WHERE event_id = %s", (event_id,)
        )
        return None if row is None else decode_rank_event(bytes(row[0]))

    async def due_rank_events(self, created_before: float, limit: int) -> list[RankEvent]:
        rows = await self._db.fetchall(
            "SELECT doc FROM rank_events WHERE due AND created_at < %s "
            "ORDER BY created_at, event_id LIMIT %s",
            (created_before, max(limit, 0)),
        )
        return [decode_rank_event(bytes(doc)) for (doc,) in rows]

    async def erase_decisions(self, profile_ids: Iterable[str]) -> int:
        wanted = sorted(set(profile_ids))
        if not wanted:
            return 0
        async with self._db.transaction() as conn:
            # an erasure is acknowledged in a receipt: it must not be lost to a crash
            await conn.execute("SET LOCAL synchronous_commit = on")
            cur = await conn.execute("DELETE FROM decisions WHERE profile_id = ANY(%s)", (wanted,))
            removed = cur.rowcount
        await self._db.vacuum("decisions")
        return removed

    async def aclose(self) -> None:
        await self._db.aclose()
