"""The catalog on SQLite, in its own file ``<folder>/catalog.db`` (WAL).

Each item is one row: the whole item as a msgpack document plus the columns worth indexing
(``type``, ``category``, ``updated_at``). The catalog is a system of record, not state derived
from the event log, so every write commits with ``synchronous=FULL``: an acknowledged ``PUT``
survives a power cut.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from segue.core.model import Item
from segue.storage._item_codec import decode_item, encode_item
from segue.storage._sqlite_db import SqliteFile, in_chunks, transaction

__all__ = ["SqliteCatalogStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id    TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    category   TEXT,
    updated_at REAL NOT NULL,
    doc        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_type ON items (type, item_id);
CREATE INDEX IF NOT EXISTS items_category ON items (category, item_id);
CREATE INDEX IF NOT EXISTS items_updated ON items (updated_at);
"""

_UPSERT = (
    "INSERT INTO items (item_id, type, category, updated_at, doc) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (item_id) DO UPDATE SET type = excluded.type, category = excluded.category, "
    "updated_at = excluded.updated_at, doc = excluded.doc"
)
_CHUNK = 500  # ids per IN (…) list, well under SQLite's bound-parameter limit


class SqliteCatalogStore:
    """The catalog in ``<folder>/catalog.db``."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(folder / "catalog.db", _SCHEMA, synchronous=synchronous)

    async def open(self) -> None:
        await self._db.open()

    async def put(self, items: Sequence[Item]) -> None:
        if not items:
            return
        # encode everything first: an item that cannot be stored fails before the transaction
        rows = [(i.item_id, i.type, i.category, i.updated_at, encode_item(i)) for i in items]

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany(_UPSERT, rows)

        await self._db.write(lambda conn: transaction(conn, body))

    async def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return {}

        def fetch(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk, marks in in_chunks(wanted, _CHUNK):
                sql = f"SELECT item_id, doc FROM items WHERE item_id IN ({marks})"  # noqa: S608
                for item_id, doc in conn.execute(sql, chunk):
                    found[str(item_id)] = bytes(doc)
            return found

        docs = await self._db.read(fetch)
        return {i: decode_item(docs[i]) for i in wanted if i in docs}

    async def scan(self, after: str, limit: int) -> list[Item]:
        if limit <= 0:  # LIMIT -1 would mean "no limit" to SQLite
            return []
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT doc FROM items WHERE item_id > ? ORDER BY item_id LIMIT ?", (after, limit)
            ).fetchall()
        )
        return [decode_item(bytes(row[0])) for row in rows]

    async def delete(self, item_id: str) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM items WHERE item_id = ?", (item_id,)).rowcount > 0

        return await self._db.write(lambda conn: transaction(conn, body))

    async def count(self) -> int:
        row = await self._db.read(lambda c: c.execute("SELECT count(*) FROM items").fetchone())
        return int(row[0])

    async def aclose(self) -> None:
        await self._db.aclose()
