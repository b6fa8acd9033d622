"""An in-memory mirror of the catalog for the decision hot path.

Decide looks up hundreds of items per request; a store round trip per request would cost
milliseconds, so the process keeps every item in a dict, loaded at start and updated by the
catalog API on every write (and re-synced by ``refresh``). Items are small; 100,000 of them
take tens of megabytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from segue.core.model import Item
from segue.core.ports import CatalogStore

__all__ = ["CatalogView"]


class CatalogView:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.by_category: dict[str, set[str]] = {}
        self.tokens: dict[str, frozenset[str]] = {}

    async def load(self, store: CatalogStore) -> None:
        """Read the whole catalog (at start, or to re-sync)."""
        items: dict[str, Item] = {}
        after = ""
        while True:
            page = await store.scan(after, 5000)
            if not page:
                break
            items.update((i.item_id, i) for i in page)
            after = page[-1].item_id
        self.items = {}
        self.by_category = {}
        self.tokens = {}
        self.upsert(items.values())

    def upsert(self, items: Iterable[Item]) -> None:
        for item in items:
            old = self.items.get(item.item_id)
            if old is not None and old.category is not None:
                self.by_category.get(old.category, set()).discard(item.item_id)
            self.items[item.item_id] = item
            if item.category is not None:
                self.by_category.setdefault(item.category, set()).add(item.item_id)
            self.tokens[item.item_id] = _tokens(item)

    def remove(self, item_id: str) -> None:
        item = self.items.pop(item_id, None)
        self.tokens.pop(item_id, None)
        if item is not None and item.category is not None:
            self.by_category.get(item.category, set()).discard(item_id)

    def similarity(self, a: str, b: str) -> float:
        """Jaccard overlap of attribute tokens (category, brand, tags, price band), 0..1."""
        ta, tb = self.tokens.get(a), self.tokens.get(b)
        if not ta or not tb:
            return 0.0
        return len(ta & tb) / len(ta | tb)


def _tokens(item: Item) -> frozenset[str]:
    found = {f"type:{item.type}"}
    if item.category:
        found.add(f"cat:{item.category.lower()}")
        found.update(f"cat:{part.strip().lower()}" for part in item.category.split("/"))
    if item.brand:
        found.add(f"brand:{item.brand.lower()}")
    found.update(f"tag:{t.lower()}" for t in item.tags)
    if item.price is not None and item.price > 0:
        band = 0
        while item.price >= 10 ** (band + 1) and band < 6:
            band += 1
        found.add(f"price:{band}")
    return frozenset(found)
