"""Data keys for crypto-shredding on SQLite, in their own file ``<folder>/keys.db``.

Apart from the event log on purpose: destroying a key must work the same whether the log
is this SQLite file or a NATS/Kafka stream that cannot delete. New keys are committed with
``synchronous=FULL`` before any event sealed with them is appended (a lost key would make an
acknowledged event unreadable); concurrent creations share one transaction (group commit).
``secure_delete`` and a WAL truncation make a destroyed key unrecoverable from the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from segue.storage._group_commit import GroupCommitter
from segue.storage._sqlite_db import SqliteFile, in_chunks, transaction

__all__ = ["SqliteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (key_id TEXT PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
"""
_CHUNK = 400


class SqliteKeyStore:
    """Per-subject data keys in ``<folder>/keys.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(
            folder / "keys.db", _SCHEMA, synchronous=synchronous, secure_delete=True
        )
        self._committer: GroupCommitter[str, bytes] = GroupCommitter(self._create)

    async def open(self) -> None:
        await self._db.open()

    async def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}
        return await self._db.read(lambda conn: _fetch(conn, wanted))

    async def create(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(key_ids))
        if not wanted:
            return {}
        keys = await self._committer.submit(wanted)
        return dict(zip(wanted, keys, strict=True))

    async def _create(self, groups: list[Sequence[str]]) -> list[list[bytes]]:
        def body(conn: sqlite3.Connection) -> list[list[bytes]]:
            wanted = list(dict.fromkeys(k for key_ids in groups for k in key_ids))
            fresh = [(k, os.urandom(32)) for k in wanted]
            cur = conn.executemany(
                "INSERT INTO data_keys (key_id, key) VALUES (?, ?) ON CONFLICT (key_id) DO NOTHING",
                fresh,
            )
            # every key the one just made (the usual case), or read back: a key another
            # writer created first is the one that counts
            found = dict(fresh) if cur.rowcount == len(fresh) else _fetch(conn, wanted)
            return [[found[k] for k in key_ids] for key_ids in groups]

        return await self._db.write(lambda conn: transaction(conn, body))

    async def destroy(self, key_ids: Iterable[str]) -> int:
        wanted = sorted(set(key_ids))
        if not wanted:
            return 0

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.executemany("DELETE FROM data_keys WHERE key_id = ?", [(k,) for k in wanted])
            return int(cur.rowcount)

        removed = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return removed

    async def aclose(self) -> None:
        await self._committer.flush()
        await self._db.aclose()


def _fetch(conn: sqlite3.Connection, key_ids: list[str]) -> dict[str, bytes]:
    """The stored keys among ``key_ids``."""
    found: dict[str, bytes] = {}
    for chunk, marks in in_chunks(key_ids, _CHUNK):
        sql = f"SELECT key_id, key FROM data_keys WHERE key_id IN ({marks})"  # noqa: S608
        found.update((str(k), bytes(v)) for k, v in conn.execute(sql, chunk))
    return found
