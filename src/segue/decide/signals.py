"""What decide reads: the person's signals and the item signals, as small Protocols.

The processor keeps features and item models fresh; decide only reads them through these
shapes, so it imports neither the processor nor the feature code (dependencies point inward).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["ItemSignals", "PersonSignals"]


class PersonSignals(msgspec.Struct, frozen=True, kw_only=True):
    """A person's behaviour as decide needs it (only read after the consent gate said yes).

    Attributes:
        purchased: items bought (never recommended again by default).
        cart: items in the cart now.
        recent: recently viewed items, most recent first.
        impressions: item → times shown recently (frequency caps).
        categories / brands: affinity 0..1 (1 = the strongest of this person).
        interests: categories the person said they like (preference centre).
        excluded_items / excluded_categories / excluded_brands: what the person said they
            never want to see (preference centre): never recommended.
    """

    purchased: frozenset[str] = frozenset()
    cart: frozenset[str] = frozenset()
    recent: tuple[str, ...] = ()
    impressions: dict[str, int] = {}
    categories: dict[str, float] = {}
    brands: dict[str, float] = {}
    interests: tuple[str, ...] = ()
    excluded_items: frozenset[str] = frozenset()
    excluded_categories: frozenset[str] = frozenset()
    excluded_brands: frozenset[str] = frozenset()


class ItemSignals(Protocol):
    """Item-level models, updated online from events (no personal data)."""

    def top(
        self,
        n: int,
        category: str | None = None,
        region: str | None = None,
        now: float | None = None,
    ) -> list[tuple[str, float]]:
        """The most popular items (decayed), optionally in one category or region."""
        ...

    def neighbours(self, item_id: str, kind: str, n: int) -> list[tuple[str, float]]:
        """Item-to-item neighbours: ``kind`` is ``co_visitation`` or ``bought_together``."""
        ...

    def fresh(self, n: int, now: float) -> list[tuple[str, float]]:
        """Recently added items, so new items get exposure (cold start)."""
        ...
