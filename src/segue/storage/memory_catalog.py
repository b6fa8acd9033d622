"""The catalog in memory: the reference for the catalog contract suite.

Items are kept encoded, exactly as the SQLite adapter stores them, so what a caller changes on
an item it got back never reaches the store, and an item that cannot be stored fails here too.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from segue.core.model import Item
from segue.storage._item_codec import decode_item, encode_item

__all__ = ["MemoryCatalogStore"]


class MemoryCatalogStore:
    """Items in a dict of encoded documents plus a sorted list of ids for paging."""

    def __init__(self) -> None:
        self._docs: dict[str, bytes] = {}
        self._ids: list[str] = []

    async def open(self) -> None:
        return None

    async def put(self, items: Sequence[Item]) -> None:
        encoded = [(item.item_id, encode_item(item)) for item in items]  # all or nothing
        for item_id, doc in encoded:
            if item_id not in self._docs:
                bisect.insort(self._ids, item_id)
            self._docs[item_id] = doc

    async def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        return {i: decode_item(self._docs[i]) for i in item_ids if i in self._docs}

    async def scan(self, after: str, limit: int) -> list[Item]:
        start = bisect.bisect_right(self._ids, after)
        return [decode_item(self._docs[i]) for i in self._ids[start : start + max(limit, 0)]]

    async def delete(self, item_id: str) -> bool:
        if self._docs.pop(item_id, None) is None:
            return False
        del self._ids[bisect.bisect_left(self._ids, item_id)]
        return True

    async def count(self) -> int:
        return len(self._docs)

    async def aclose(self) -> None:
        return None
