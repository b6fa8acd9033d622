"""Data keys for crypto-shredding on PostgreSQL, in the table ``data_keys``.

With a shared event log (NATS, Kafka) every process seals and opens events, so the keys
live in the shared database, never in one process's data folder. A new key is committed
with ``synchronous_commit=on`` before any event sealed with it is appended (a lost key would
make an acknowledged event unreadable). Two processes creating the same key at once both
get the one that committed first: the loser's insert does nothing and reads the winner's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from segue.storage._group_commit import GroupCommitter
from segue.storage._postgres import PgDatabase

__all__ = ["PostgresKeyStore"]

MIGRATIONS = [
    """
    CREATE TABLE data_keys (key_id TEXT COLLATE "C" PRIMARY KEY, key BYTEA NOT NULL);
    """,
]


class PostgresKeyStore:
    """Per-subject data keys in the database at ``url``."""

    def __init__(self, url: str, *, max_connections: int = 2) -> None:
        self._db = PgDatabase(url, "keys", MIGRATIONS, max_size=max_connections)
        self._committer: GroupCommitter[str, bytes] = GroupCommitter(self._create)

    async def open(self) -> None:
        await self._db.open()

    async def get(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}
        rows = await self._db.fetchall(
            "SELECT key_id, key FROM data_keys WHERE key_id = ANY(%s)", (wanted,)
        )
        return {str(k): bytes(v) for k, v in rows}

    async def create(self, key_ids: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(key_ids))
        if not wanted:
            return {}
        keys = await self._committer.submit(wanted)
        return dict(zip(wanted, keys, strict=True))

    async def _create(self, groups: list[Sequence[str]]) -> list[list[bytes]]:
        every = sorted({k for group in groups for k in group})  # sorted: no lock-order cycle
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO data_keys (key_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(k, os.urandom(32)) for k in every],
            )
            await cur.execute("SELECT key_id, key FROM data_keys WHERE key_id = ANY(%s)", (every,))
            found = {str(k): bytes(v) for k, v in await cur.fetchall()}
        return [[found[k] for k in group] for group in groups]

    async def destroy(self, key_ids: Iterable[str]) -> int:
        wanted = sorted(set(key_ids))
        if not wanted:
            return 0
        async with self._db.transaction() as conn:
            cur = await conn.execute("DELETE FROM data_keys WHERE key_id = ANY(%s)", (wanted,))
            removed = cur.rowcount
        if removed:
            await self._db.vacuum("data_keys")
        return removed

    async def aclose(self) -> None:
        await self._committer.flush()
        await self._db.aclose()
