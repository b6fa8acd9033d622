"""Business rules: pure predicates and slot policies applied after candidate generation.

Order matters and is fixed: eligibility (availability, stock, window, placement filters) →
exclusions (purchased, in cart, capped by impressions) → pinned and promoted slots → diversity
per category. Each rule says why it removed an item, for the explanation and for tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from segue.core.model import Item

__all__ = ["Candidate", "PlacementRules", "apply_rules", "fill_slots", "is_available"]


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
    sources: dict[str, float] = {}
    score: float = 0.0
    propensity: float = 1.0
    reason: str = ""
    pinned: bool = False
    promoted: bool = False


def is_available(item: Item, now: float) -> bool:
    """Available, in stock (or stock not tracked) and inside its availability window."""
    if not item.available or item.stock == 0:
        return False
    if item.start_at is not None and now < item.start_at:
        return False
    return not (item.end_at is not None and now >= item.end_at)


def apply_rules(
    candidates: Iterable[Candidate],
    items: Mapping[str, Item],
    rules: PlacementRules,
    now: float,
    *,
    purchased: frozenset[str] = frozenset(),
    cart: frozenset[str] = frozenset(),
    impressions: Mapping[str, int] | None = None,
    removed: dict[str, str] | None = None,
) -> list[Candidate]:
    """Keep the candidates the rules allow, in their order.

    Args:
        removed: if given, filled with item id → the rule that removed it.
    """
    kept: list[Candidate] = []
    seen: set[str] = set()
    why = removed if removed is not None else {}
    impressions = impressions or {}
    for c in candidates:
        if c.item_id in seen:
            continue
        seen.add(c.item_id)
        item = items.get(c.item_id)
        if item is None:
            why[c.item_id] = "not_in_catalog"
        elif not is_available(item, now):
            why[c.item_id] = "unavailable"
        elif rules.types and item.type not in rules.types:
            why[c.item_id] = "placement_type"
        elif rules.categories and item.category not in rules.categories:
            why[c.item_id] = "placement_category"
        elif rules.exclude_purchased and c.item_id in purchased:
            why[c.item_id] = "purchased"
        elif rules.exclude_cart and c.item_id in cart:
            why[c.item_id] = "in_cart"
        elif (
            rules.frequency_cap is not None and impressions.get(c.item_id, 0) >= rules.frequency_cap
        ):
            why[c.item_id] = "frequency_cap"
        else:
            kept.append(c)
    return kept


def fill_slots(
    ranked: list[Candidate], items: Mapping[str, Item], rules: PlacementRules, k: int
) -> list[Candidate]:
    """Choose the final k: pinned first (in configured order), promoted items up to their
    share of slots, the ranked rest — never more than ``max_per_category`` of a category."""
    by_id = {c.item_id: c for c in ranked}
    out: list[Candidate] = []
    per_category: dict[str | None, int] = {}

    def take(c: Candidate) -> bool:
        category = items[c.item_id].category if c.item_id in items else None
        cap = rules.max_per_category
        if cap is not None and category is not None and per_category.get(category, 0) >= cap:
            return False
        per_category[category] = per_category.get(category, 0) + 1
        out.append(c)
        return True

    for item_id in rules.pinned:
        c = by_id.get(item_id)
        if c is not None and len(out) < k and c not in out:
            c.pinned = True
            c.reason = "pinned"
            out.append(c)
    promoted_slots = int(k * rules.promoted_share + 1e-9)
    for item_id in rules.promoted:
        if promoted_slots <= 0 or len(out) >= k:
            break
        c = by_id.get(item_id)
        if c is not None and c not in out and take(c):
            c.promoted = True
            c.reason = c.reason or "promoted"
            promoted_slots -= 1
    for c in ranked:
        if len(out) >= k:
            break
        if c not in out:
            take(c)
    for c in ranked:  # diversity is a preference: rather a full slate than an empty slot
        if len(out) >= k:
            break
        if c not in out and not c.pinned and not c.promoted:
            out.append(c)
    return out
