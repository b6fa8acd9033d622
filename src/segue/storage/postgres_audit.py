"""The audit log on PostgreSQL: tables ``audit``, ``audit_subjects`` and ``audit_head``.

The same layout as on SQLite: one row per entry, its subjects (keyed hashes) only in
``audit_subjects`` (the index for filtering by person and where ``scan`` reads them back,
so every stored byte of an entry is covered by its hash), the sealed head in a one-row table
written in the same transaction as the entries. ``details`` is stored as the JSON text that
was hashed (not ``jsonb``, which would reorder keys and reject NUL escapes). Migration 2
seals the head of the empty chain (seq 0) once, so a log emptied along with its head later
is not taken for a new one.

Many processes append to one chain: each append transaction first takes an advisory lock
on the head (``pg_advisory_xact_lock``, released at commit), then reads the head, chains
after it and re-seals it. A second process's append waits for the first to commit and links
to what it wrote, so the chain never forks. Inside a process, concurrent callers share a
transaction (group commit). Commits use ``synchronous_commit=on``: an entry is on disk
before ``append`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from segue.core.model import AuditEntry, AuditHead
from segue.privacy.audit import GENESIS, chain, seal
from segue.storage._group_commit import GroupCommitter
from segue.storage._postgres import PgDatabase, advisory_key
from segue.storage.sqlite_audit import _details, _row

__all__ = ["PostgresAuditLog"]

MIGRATIONS = [
    """
    CREATE TABLE audit (
        seq       BIGINT PRIMARY KEY,
        at        DOUBLE PRECISION NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT COLLATE "C" NOT NULL,
        details   TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at, seq);
    CREATE INDEX audit_action ON audit (action, seq);
    CREATE TABLE audit_subjects (
        subject TEXT COLLATE "C" NOT NULL,
        seq     BIGINT NOT NULL,
        pos     INTEGER NOT NULL,
        PRIMARY KEY (subject, seq, pos)
    );
    CREATE INDEX audit_subjects_seq ON audit_subjects (seq, pos);
    CREATE TABLE audit_head (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        seq  BIGINT NOT NULL,
        hash TEXT NOT NULL,
        seal TEXT NOT NULL
    );
    """,
]

_COLUMNS = "seq, at, actor, action, details, prev_hash, hash"
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
_INSERT_SUBJECT = "INSERT INTO audit_subjects (subject, seq, pos) VALUES (%s, %s, %s)"
_PUT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash, seal) VALUES (1, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "seal = excluded.seal"
)
_LOCK_HEAD = f"SELECT pg_advisory_xact_lock({advisory_key('audit_head')})"


class PostgresAuditLog:
    """The hash-chained audit log in the database at ``url``.

    Args:
        url: ``postgresql://…`` (the store URL).
        key: the installation secret that seals the head.
    """

    def __init__(self, url: str, key: bytes, *, max_connections: int = 2) -> None:
        self._db = PgDatabase(
            url, "audit", [*MIGRATIONS, self._seal_genesis], max_size=max_connections
        )
        self._key = key
        self._committer: GroupCommitter[AuditEntry, AuditEntry] = GroupCommitter(self._write)

    async def open(self) -> None:
        await self._db.open()

    async def _seal_genesis(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Migration 2: seal the head of the empty chain once, when the tables are created
        (or first opened by a segue that does this), so that deleting every entry and the
        head later is caught; as a migration it never runs again to re-seal what someone
        emptied."""
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM audit_head) OR EXISTS (SELECT 1 FROM audit)"
        )
        row = await cur.fetchone()
        if row is not None and not row[0]:
            await conn.execute(_PUT_HEAD, (0, GENESIS, seal(self._key, 0, GENESIS)))

    async def append(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        return await self._committer.submit(entries)

    async def _write(self, groups: list[Sequence[AuditEntry]]) -> list[list[AuditEntry]]:
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(_LOCK_HEAD)  # held until commit: one chain writer at a time
            await cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
            row = await cur.fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            out: list[list[AuditEntry]] = []
            for group in groups:
                linked = chain(seq, prev, group)
                await cur.executemany(_INSERT, [_row(e) for e in linked])
                subjects = [(s, e.seq, pos) for e in linked for pos, s in enumerate(e.subjects)]
                if subjects:
                    await cur.executemany(_INSERT_SUBJECT, subjects)
                if linked:
                    seq, prev = linked[-1].seq, linked[-1].hash
                out.append(linked)
            await cur.execute(_PUT_HEAD, (seq, prev, seal(self._key, seq, prev)))
        return out

    async def scan(self, after: int, limit: int) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > %s ORDER BY seq LIMIT %s"  # noqa: S608
        async with self._db.connection() as conn:
            cur = await conn.execute(sql, (after, max(limit, 0)))
            return await _with_subjects(conn, await cur.fetchall())

    async def head(self) -> AuditHead | None:
        row = await self._db.fetchone("SELECT seq, hash, seal FROM audit_head WHERE id = 1")
        return None if row is None else AuditHead(seq=int(row[0]), hash=row[1], seal=row[2])

    async def list(
        self,
        *,
        subjects: Sequence[str] = (),
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditEntry]:
        where = ["a.seq > %s"]
        args: list[Any] = [after]
        if subjects:
            where.append(
                "a.seq IN (SELECT seq FROM audit_subjects WHERE subject = ANY(%s) AND seq > %s)"
            )
            args += [list(subjects), after]
        if action is not None:
            where.append("a.action = %s")
            args.append(action)
        if since is not None:
            where.append("a.at >= %s")
            args.append(since)
        if until is not None:
            where.append("a.at < %s")
            args.append(until)
        sql = (
            f"SELECT {', '.join('a.' + c for c in _COLUMNS.split(', '))} FROM audit a "  # noqa: S608
            f"WHERE {' AND '.join(where)} ORDER BY a.seq LIMIT %s"
        )
        args.append(max(limit, 0))
        async with self._db.connection() as conn:
            cur = await conn.execute(sql, args)
            return await _with_subjects(conn, await cur.fetchall())

    async def aclose(self) -> None:
        await self._committer.flush()
        await self._db.aclose()


async def _with_subjects(
    conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]]
) -> list[AuditEntry]:
    """Build entries from their rows and their subjects (one indexed query for the page).

    A row whose details cannot be decoded any more (edited into something that is not JSON)
    comes back with the raw text under ``details["$raw"]``, so verification reports it as
    an edited entry instead of failing.
    """
    if not rows:
        return []
    cur = await conn.execute(
        "SELECT subject, seq FROM audit_subjects WHERE seq = ANY(%s) ORDER BY seq, pos",
        ([int(r[0]) for r in rows],),
    )
    subjects: dict[int, list[str]] = {}
    for subject, seq in await cur.fetchall():
        subjects.setdefault(int(seq), []).append(str(subject))
    out = []
    for seq, at, actor, action, details, prev_hash, hash_ in rows:
        out.append(
            AuditEntry(
                seq=int(seq),
                at=float(at),
                actor=str(actor),
                action=str(action),
                subjects=subjects.get(int(seq), []),
                details=_details(details),
                prev_hash=str(prev_hash),
                hash=str(hash_),
            )
        )
    return out
