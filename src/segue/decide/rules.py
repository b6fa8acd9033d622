"""Business rules of a placement, and the slot policy that picks the final items.

Eligibility (availability, stock, window, placement filters) and exclusions (purchased, in
cart, capped by impressions) are applied to all candidates at once, vectorised, by the
engine; this module holds the rules' configuration and the last step — pinned items first,
promoted items up to their share of slots, then the ranked rest with at most
``max_per_category`` per category.
"""

from __future__ import annotations

import msgspec

__all__ = ["Candidate", "PlacementRules", "fill_slots"]


class PlacementRules(msgspec.Struct, frozen=True, kw_only=True):
    """The rules of one placement (from configuration)."""

    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    exclude_purchased: bool = True
    exclude_cart: bool = False
    frequency_cap: int | None = 10
    pinned: tuple[str, ...] = ()
    promoted: tuple[str, ...] = ()
    promoted_share: float = 0.2
    max_per_category: int | None = 3


class Candidate(msgspec.Struct, kw_only=True):
    """A candidate item with the evidence that brought it in (source → strength)."""

    item_id: str
    #: position among the candidates the rules kept
    row: int = -1
    #: row in the catalog columns (-1: not known)
    catalog_row: int = -1
    #: the item's category as a code of the catalog columns (-1: none): the diversity
    #: limit reads it here, not from the item (a cache miss or three per candidate)
    category: int = -1
    sources: dict[str, float] = {}
    score: float = 0.0
    propensity: float = 1.0
    reason: str = ""
    pinned: bool = False
    promoted: bool = False


def fill_slots(ranked: list[Candidate], rules: PlacementRules, k: int) -> list[Candidate]:
    """Choose the final k: pinned first (in configured order), promoted items up to their
    share of slots, the ranked rest — never more than ``max_per_category`` of a category."""
    featured = rules.pinned or rules.promoted
    by_id = {c.item_id: c for c in ranked} if featured else {}
    out: list[Candidate] = []
    taken: set[str] = set()  # ids in ``out``: a list's ``in`` compares structs field by field
    per_category: dict[int, int] = {}
    cap = rules.max_per_category

    def take(c: Candidate) -> bool:
        category = c.category
        if cap is not None and category >= 0 and per_category.get(category, 0) >= cap:
            return False
        per_category[category] = per_category.get(category, 0) + 1
        out.append(c)
        taken.add(c.item_id)
        return True

    for item_id in rules.pinned:
        c = by_id.get(item_id)
        if c is not None and len(out) < k and item_id not in taken:
            c.pinned = True
            c.reason = "pinned"
            out.append(c)
            taken.add(item_id)
    promoted_slots = int(k * rules.promoted_share + 1e-9)
    for item_id in rules.promoted:
        if promoted_slots <= 0 or len(out) >= k:
            break
        c = by_id.get(item_id)
        if c is not None and item_id not in taken and take(c):
            c.promoted = True
            c.reason = c.reason or "promoted"
            promoted_slots -= 1
    for c in ranked:
        if len(out) >= k:
            break
        if c.item_id not in taken:
            take(c)
    for c in ranked:  # diversity is a preference: rather a full slate than an empty slot
        if len(out) >= k:
            break
        if c.item_id not in taken and not c.pinned and not c.promoted:
            out.append(c)
            taken.add(c.item_id)
    return out
