"""The audit log on SQLite, in its own file ``<folder>/audit.db``.

One row per entry; its subjects (keyed hashes) live only in ``audit_subjects``, which is
both the index for filtering by person and the place ``scan`` reads them back from, so
every stored byte of an entry is covered by its hash. The sealed head sits in a one-row
table written in the same transaction as the entries. A new file gets the head of the empty
chain (seq 0) at once, and ``PRAGMA user_version`` 1 records that it did, so a log emptied
along with its head later is not taken for a new one.

Appends are chained by the one writer thread inside ``BEGIN IMMEDIATE``, from the head it
reads there: concurrent appends (even from another process) queue on the write lock and
can never link to the same predecessor. Concurrent callers share a transaction through
group commit, and commits use ``synchronous=FULL``: an entry is on disk before ``append``
returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from segue.core.model import AuditEntry, AuditHead
from segue.privacy.audit import GENESIS, chain, seal
from segue.storage._group_commit import GroupCommitter
from segue.storage._sqlite_db import SqliteFile, transaction

__all__ = ["SqliteAuditLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    at        REAL NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at, seq);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action, seq);
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (subject, seq, pos)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_subjects_seq ON audit_subjects (seq, pos);
CREATE TABLE IF NOT EXISTS audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL,
    seal TEXT NOT NULL
);
"""

_COLUMNS = "seq, at, actor, action, details, prev_hash, hash"
_INSERT = f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_INSERT_SUBJECT = "INSERT INTO audit_subjects (subject, seq, pos) VALUES (?, ?, ?)"
_PUT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash, seal) VALUES (1, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "seal = excluded.seal"
)
_details_decoder = msgspec.json.Decoder(dict[str, Any])
#: ``PRAGMA user_version`` from which the file has had its genesis head sealed
_SEALED_GENESIS = 1


class SqliteAuditLog:
    """The hash-chained audit log in ``<folder>/audit.db``.

    Args:
        folder: the data folder.
        key: the installation secret that seals the head.
    """

    def __init__(self, folder: Path, key: bytes, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(folder / "audit.db", _SCHEMA, synchronous=synchronous)
        self._key = key
        self._committer: GroupCommitter[AuditEntry, AuditEntry] = GroupCommitter(self._write)

    async def open(self) -> None:
        await self._db.open()
        version = await self._db.read(lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))
        if version < _SEALED_GENESIS:
            await self._db.write(lambda conn: transaction(conn, self._seal_genesis))

    def _seal_genesis(self, conn: sqlite3.Connection) -> None:
        """Seal the head of the empty chain once, when the file is created (or first opened
        by a segue that does this), so that deleting every entry and the head later is
        caught; ``user_version`` records that it was done, so a reopening never re-seals
        what someone emptied."""
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= _SEALED_GENESIS:
            return  # another process did it first
        used = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM audit_head) OR EXISTS (SELECT 1 FROM audit)"
        ).fetchone()[0]
        if not used:
            conn.execute(_PUT_HEAD, (0, GENESIS, seal(self._key, 0, GENESIS)))
        conn.execute(f"PRAGMA user_version = {_SEALED_GENESIS}")

    async def append(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        return await self._committer.submit(entries)

    async def _write(self, groups: list[Sequence[AuditEntry]]) -> list[list[AuditEntry]]:
        def body(conn: sqlite3.Connection) -> list[list[AuditEntry]]:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
            out: list[list[AuditEntry]] = []
            for group in groups:
                linked = chain(seq, prev, group)
                conn.executemany(_INSERT, [_row(e) for e in linked])
                conn.executemany(
                    _INSERT_SUBJECT,
                    [(s, e.seq, pos) for e in linked for pos, s in enumerate(e.subjects)],
                )
                if linked:
                    seq, prev = linked[-1].seq, linked[-1].hash
                out.append(linked)
            conn.execute(_PUT_HEAD, (seq, prev, seal(self._key, seq, prev)))
            return out

        return await self._db.write(lambda conn: transaction(conn, body))

    async def scan(self, after: int, limit: int) -> list[AuditEntry]:
        sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
        return await self._db.read(
            lambda c: _with_subjects(c, c.execute(sql, (after, max(limit, 0))).fetchall())
        )

    async def head(self) -> AuditHead | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT seq, hash, seal FROM audit_head WHERE id = 1").fetchone()
        )
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
        where = ["a.seq > ?"]
        args: list[Any] = [after]
        if subjects:
            marks = ", ".join("?" for _ in subjects)  # placeholders only; values are bound
            inner = f"SELECT seq FROM audit_subjects WHERE subject IN ({marks}) AND seq > ?"  # noqa: S608
            where.append(f"a.seq IN ({inner})")
            args += [*subjects, after]
        if action is not None:
            where.append("a.action = ?")
            args.append(action)
        if since is not None:
            where.append("a.at >= ?")
            args.append(since)
        if until is not None:
            where.append("a.at < ?")
            args.append(until)
        sql = (
            f"SELECT {', '.join('a.' + c for c in _COLUMNS.split(', '))} FROM audit a "  # noqa: S608
            f"WHERE {' AND '.join(where)} ORDER BY a.seq LIMIT ?"
        )
        args.append(max(limit, 0))
        return await self._db.read(lambda c: _with_subjects(c, c.execute(sql, args).fetchall()))

    async def aclose(self) -> None:
        await self._committer.flush()
        await self._db.aclose()


def _with_subjects(conn: sqlite3.Connection, rows: list[Any]) -> list[AuditEntry]:
    """Build entries from their rows and their subjects (one range query for the page).

    A row that cannot be decoded any more (its details edited into something that is not
    JSON) comes back with the raw text under ``details["$raw"]``, so verification reports
    it as an edited entry instead of failing.
    """
    if not rows:
        return []
    subjects: dict[int, list[str]] = {}
    for subject, seq in conn.execute(
        "SELECT subject, seq FROM audit_subjects WHERE seq BETWEEN ? AND ? ORDER BY seq, pos",
        (min(r[0] for r in rows), max(r[0] for r in rows)),
    ):
        subjects.setdefault(seq, []).append(subject)
    out = []
    for seq, at, actor, action, details, prev_hash, hash_ in rows:
        out.append(
            AuditEntry(
                seq=int(seq),
                at=_number(at),
                actor=str(actor),
                action=str(action),
                subjects=subjects.get(seq, []),
                details=_details(details),
                prev_hash=str(prev_hash),
                hash=str(hash_),
            )
        )
    return out


def _row(entry: AuditEntry) -> tuple[Any, ...]:
    """The ``audit`` row of a linked entry (``_COLUMNS``); details as the JSON text hashed."""
    e = entry
    details = msgspec.json.encode(e.details).decode()
    return (e.seq, e.at, e.actor, e.action, details, e.prev_hash, e.hash)


def _details(text: Any) -> dict[str, Any]:
    """Stored details; text that is not JSON any more (edited) as ``{"$raw": text}``."""
    try:
        return _details_decoder.decode(text)
    except (msgspec.DecodeError, TypeError):
        return {"$raw": str(text)}


def _number(value: object) -> float:
    """A stored time as a float; an edited, non-numeric one as NaN (which no hash covers)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
