"""The catalog on PostgreSQL, in the table ``items`` of the store URL's schema.

Each item is one row: the whole item in the shared stored form (``_item_codec``) plus the
columns worth indexing, as on SQLite. Ids use the ``C`` collation so ``scan`` pages in code
point order whatever the database's locale, exactly like the other adapters. The catalog is
a system of record: writes commit with ``synchronous_commit=on`` (on disk when acknowledged).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from segue.core.model import Item
from segue.errors import InvalidInput
from segue.storage._item_codec import decode_item, encode_item
from segue.storage._postgres import PgDatabase

__all__ = ["PostgresCatalogStore"]

MIGRATIONS = [
    """
    CREATE TABLE items (
        item_id    TEXT COLLATE "C" PRIMARY KEY,
        type       TEXT NOT NULL,
        category   TEXT,
        updated_at DOUBLE PRECISION NOT NULL,
        doc        BYTEA NOT NULL
    );
    CREATE INDEX items_type ON items (type, item_id);
    CREATE INDEX items_category ON items (category, item_id);
    CREATE INDEX items_updated ON items (updated_at);
    """,
]

_UPSERT = (
    "INSERT INTO items (item_id, type, category, updated_at, doc) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (item_id) DO UPDATE SET type = excluded.type, category = excluded.category, "
    "updated_at = excluded.updated_at, doc = excluded.doc"
)


class PostgresCatalogStore:
    """The catalog in the database at ``url``.

    Args:
        url: ``postgresql://…`` (the store URL).
    """

    def __init__(self, url: str, *, max_connections: int = 2) -> None:
        self._db = PgDatabase(url, "catalog", MIGRATIONS, max_size=max_connections)

    async def open(self) -> None:
        await self._db.open()

    async def put(self, items: Sequence[Item]) -> None:
        if not items:
            return
        # encode and check everything first: an item that cannot be stored fails before the
        # transaction, so a batch is stored whole or not at all
        rows = []
        for i in items:
            if any("\x00" in v for v in (i.item_id, i.type, i.category or "")):
                raise InvalidInput(
                    f"item {i.item_id!r} cannot be stored: NUL in id, type or category"
                )
            rows.append((i.item_id, i.type, i.category, i.updated_at, encode_item(i)))
        async with self._db.transaction() as conn, conn.cursor() as cur:
            await cur.executemany(_UPSERT, rows)

    async def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return {}
        rows = await self._db.fetchall(
            "SELECT item_id, doc FROM items WHERE item_id = ANY(%s)", (wanted,)
        )
        docs = {str(item_id): bytes(doc) for item_id, doc in rows}
        return {i: decode_item(docs[i]) for i in wanted if i in docs}

    async def scan(self, after: str, limit: int) -> list[Item]:
        if limit <= 0:
            return []
        rows = await self._db.fetchall(
            "SELECT doc FROM items WHERE item_id > %s ORDER BY item_id LIMIT %s", (after, limit)
        )
        return [decode_item(bytes(doc)) for (doc,) in rows]

    async def delete(self, item_id: str) -> bool:
        async with self._db.transaction() as conn:
            cur = await conn.execute("DELETE FROM items WHERE item_id = %s", (item_id,))
            return cur.rowcount > 0

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT count(*) FROM items")
        return int(row[0]) if row else 0

    async def aclose(self) -> None:
        await self._db.aclose()
