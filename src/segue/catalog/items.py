"""Catalog rules as plain functions over :class:`~segue.core.model.Item` values.

Availability is computed, never stored: an item is shown only while it is marked available,
is not out of stock and the current time lies inside its window, so an offer that ends at
midnight disappears at midnight without anyone writing to the catalog.
"""

from __future__ import annotations

from typing import Final

from segue.core.model import Item
from segue.core.ports import CatalogStore

__all__ = ["ITEM_TYPES", "is_available", "page"]

#: the kinds of catalog entry
ITEM_TYPES: Final = ("product", "offer", "content")


def is_available(item: Item, now: float) -> bool:
    """Whether the item may be shown at ``now``.

    Args:
        item: the catalog entry.
        now: epoch seconds (UTC).

    Returns:
        True when ``available`` is set, ``stock`` is not 0 (None means not tracked) and
        ``start_at <= now < end_at`` (an absent bound is open).
    """
    if not item.available or item.stock == 0:
        return False
    if item.start_at is not None and now < item.start_at:
        return False
    return item.end_at is None or now < item.end_at


async def page(
    store: CatalogStore,
    after: str,
    limit: int,
    *,
    item_type: str | None = None,
    category: str | None = None,
    budget: int = 10_000,
) -> tuple[list[Item], str | None]:
    """One page of items in id order, optionally of one type and/or category.

    Filters are applied while scanning, and one call examines at most about ``budget`` items;
    a page cut short by the budget can hold fewer than ``limit`` items (even none) and still
    have a cursor, so callers page until the cursor is None.

    Args:
        store: the catalog.
        after: the cursor: return items with an id greater than this ("" for the first page).
        limit: the most items to return (at least 1).
        item_type: only items of this type.
        category: only items of this category (exact match).
        budget: how many items one call may examine.

    Returns:
        the items and the cursor of the next page (None at the end of the catalog).
    """
    filtered = item_type is not None or category is not None
    found: list[Item] = []
    cursor = after
    examined = 0
    while True:
        want = limit + 1 if not filtered else max(limit + 1, 200)
        batch = await store.scan(cursor, want)
        for item in batch:
            if (item_type is None or item.type == item_type) and (
                category is None or item.category == category
            ):
                if len(found) == limit:
                    return found, found[-1].item_id
                found.append(item)
            cursor = item.item_id
        examined += len(batch)
        if len(batch) < want:
            return found, None
        if examined >= budget:
            return found, cursor
