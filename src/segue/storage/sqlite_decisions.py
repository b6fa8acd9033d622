"""The decision log and rank events on SQLite, in their own file ``<folder>/decisions.db``.

One row per decision and per rank event: the whole value as a JSON document plus the columns
worth indexing. Rank events that are activated and not yet learned carry ``due = 1`` and sit
in a partial index by creation time, so finding the events whose reward wait is over reads
only those. Commits use ``synchronous=NORMAL``: a process crash loses nothing, a power cut
may lose the last moments (decisions are a log for attribution, not a system of record).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from segue.core.model import Decision, RankEvent
from segue.storage._decision_codec import decode_decision, decode_rank_event, encode
from segue.storage._sqlite_db import SqliteFile, transaction

__all__ = ["SqliteDecisionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq         INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    profile_id  TEXT,
    created_at  REAL NOT NULL,
    doc         BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_profile ON decisions (profile_id, created_at, seq);
CREATE TABLE IF NOT EXISTS rank_events (
    event_id   TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    due        INTEGER NOT NULL,
    doc        BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rank_events_due ON rank_events (created_at, event_id) WHERE due = 1;
"""

_INSERT_DECISION = (
    "INSERT INTO decisions (decision_id, profile_id, created_at, doc) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (decision_id) DO NOTHING"
)
_PUT_EVENT = (
    "INSERT INTO rank_events (event_id, created_at, due, doc) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO UPDATE SET created_at = excluded.created_at, "
    "due = excluded.due, doc = excluded.doc"
)


class SqliteDecisionStore:
    """Decisions and rank events in ``<folder>/decisions.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "NORMAL") -> None:
        self._db = SqliteFile(
            folder / "decisions.db", _SCHEMA, synchronous=synchronous, secure_delete=True
        )

    async def open(self) -> None:
        await self._db.open()

    async def put_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        rows = [(d.decision_id, d.profile_id, d.created_at, encode(d)) for d in decisions]

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_DECISION, rows)

        await self._db.write(lambda conn: transaction(conn, body))

    async def get_decision(self, decision_id: str) -> Decision | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        )
        return None if row is None else decode_decision(row[0])

    async def decisions_for(self, profile_id: str, limit: int) -> list[Decision]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM decisions WHERE profile_id = ? "
                "ORDER BY created_at DESC, seq DESC LIMIT ?",
                (profile_id, max(limit, 0)),
            ).fetchall()
        )
        return [decode_decision(doc) for (doc,) in rows]

    async def put_rank_event(self, event: RankEvent) -> None:
        row = (event.event_id, event.created_at, int(event.activated and not event.learned))
        doc = encode(event)
        await self._db.write(lambda c: c.execute(_PUT_EVENT, (*row, doc)))

    async def get_rank_event(self, event_id: str) -> RankEvent | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM rank_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        )
        return None if row is None else decode_rank_event(row[0])

    async def due_rank_events(self, created_before: float, limit: int) -> list[RankEvent]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM rank_events WHERE due = 1 AND created_at < ? "
                "ORDER BY created_at, event_id LIMIT ?",
                (created_before, max(limit, 0)),
            ).fetchall()
        )
        return [decode_rank_event(doc) for (doc,) in rows]

    async def erase_decisions(self, profile_ids: Iterable[str]) -> int:
        wanted = sorted(set(profile_ids))
        if not wanted:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "DELETE FROM decisions WHERE profile_id = ?", [(p,) for p in wanted]
            )
            return int(cur.rowcount)

        removed = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return removed

    async def aclose(self) -> None:
        await self._db.aclose()
