"""Content similarity of catalog items: TF-IDF over their attributes, cosine, inverted index.

An item becomes a handful of weighted tokens: its category and every ancestor of it
(``Shoes/Running`` → ``shoes``, ``shoes/running``), its brand, its tags, short string or number
attributes (``color=red``), and its price band (bands grow by half: 10–15, 15–22.5, …) with the
two neighbouring bands at a lower weight, so that 95 and 105 are close. A token's weight is
its field weight times its inverse document frequency, so a brand shared by three items says
more than a category shared by half the catalog.

Built from the catalog, not from events: rebuild it at start-up and keep it current with
``add``/``remove`` on catalog changes. Pure and deterministic; no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import Final

from segue.core.model import Item

__all__ = ["ContentIndex", "item_tokens"]

_CATEGORY: Final = 2.0
_PARENT: Final = 1.5
_BRAND: Final = 1.0
_TAG: Final = 1.0
_ATTRIBUTE: Final = 0.5
_PRICE: Final = 0.75
_NEAR_PRICE: Final = 0.35
_BAND: Final = math.log(1.5)
_MAX_TOKENS: Final = 64
_MAX_TOKEN: Final = 120
#: tokens held by more items than this only score items found through rarer tokens
_COMMON: Final = 2_000


def item_tokens(item: Item) -> dict[str, float]:
    """The weighted tokens of an item (token → field weight), at most 64."""
    tokens: dict[str, float] = {}

    def put(token: str, weight: float) -> None:
        token = token[:_MAX_TOKEN]
        if len(tokens) < _MAX_TOKENS and tokens.get(token, 0.0) < weight:
            tokens[token] = weight

    if item.category:
        parts = [p.strip().lower() for p in item.category.replace(">", "/").split("/")]
        parts = [p for p in parts if p]
        for depth in range(len(parts)):
            put(
                "c:" + "/".join(parts[: depth + 1]),
                _CATEGORY if depth == len(parts) - 1 else _PARENT,
            )
    if item.brand and item.brand.strip():
        put("b:" + item.brand.strip().lower(), _BRAND)
    for tag in item.tags[:_MAX_TOKENS]:
        if isinstance(tag, str) and tag.strip():
            put("t:" + tag.strip().lower(), _TAG)
    for name, value in list(item.attributes.items())[:_MAX_TOKENS]:
        if isinstance(value, bool | int | str) and str(value).strip() and len(str(value)) <= 40:
            put(f"a:{name.lower()}={str(value).strip().lower()}", _ATTRIBUTE)
    price = item.price
    if price is not None and math.isfinite(price) and price > 0:
        band = math.floor(math.log(price) / _BAND)
        put(f"p:{band}", _PRICE)
        put(f"p:{band - 1}", _NEAR_PRICE)
        put(f"p:{band + 1}", _NEAR_PRICE)
    return tokens


class ContentIndex:
    """Items by their attribute tokens, for "more like this" (cold start for new items, and
    the content fallback when an item has no co-visitation yet)."""

    def __init__(self) -> None:
        self._tokens: dict[str, dict[str, float]] = {}
        self._postings: dict[str, set[str]] = {}

    @classmethod
    def build(cls, items: Iterable[Item]) -> ContentIndex:
        """An index of these items (a later item with the same id replaces an earlier one)."""
        index = cls()
        for item in items:
            index.add(item)
        return index

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._tokens

    def add(self, item: Item) -> None:
        """Index an item, replacing what was indexed under its id."""
        self.remove(item.item_id)
        tokens = item_tokens(item)
        self._tokens[item.item_id] = tokens
        for token in tokens:
            self._postings.setdefault(token, set()).add(item.item_id)

    def remove(self, item_id: str) -> None:
        """Forget an item; unknown ids are ignored."""
        tokens = self._tokens.pop(item_id, None)
        if tokens is None:
            return
        for token in tokens:
            holders = self._postings[token]
            holders.discard(item_id)
            if not holders:
                del self._postings[token]

    def _idf(self, token: str) -> float:
        df = len(self._postings.get(token, ()))
        return math.log((1 + len(self._tokens)) / (1 + df)) + 1.0

    def _vector(self, tokens: dict[str, float]) -> tuple[dict[str, float], float]:
        vector = {t: w * self._idf(t) for t, w in tokens.items()}
        return vector, math.sqrt(sum(v * v for v in vector.values()))

    def similar(
        self, item: Item | str, n: int = 10, candidates: Iterable[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``n`` indexed items most like ``item`` (an Item, or the id of an indexed one),
        with their cosine similarity in (0, 1], best first, ties by id; never the item itself.

        With ``candidates``, only those ids are scored (cost: candidates × tokens); without,
        the inverted index finds every item sharing a token with it.
        """
        if isinstance(item, str):
            own = item
            tokens = self._tokens.get(item)
            if tokens is None:
                return []
        else:
            own, tokens = item.item_id, item_tokens(item)
        query, norm = self._vector(tokens)
        if not query or n <= 0 or norm == 0.0:
            return []
        scores: dict[str, float] = {}
        if candidates is not None:
            for cid in candidates:
                theirs = self._tokens.get(cid)
                if theirs is not None and cid != own:
                    dot = sum(q * theirs[t] * self._idf(t) for t, q in query.items() if t in theirs)
                    if dot > 0:
                        scores[cid] = dot
        else:
            by_rarity = sorted(query, key=lambda t: len(self._postings.get(t, ())))
            for rank, token in enumerate(by_rarity):
                holders = self._postings.get(token, set())
                idf = self._idf(token)
                q = query[token]
                if rank == 0 or len(holders) <= _COMMON:
                    for cid in holders:
                        if cid != own:
                            scores[cid] = scores.get(cid, 0.0) + q * self._tokens[cid][token] * idf
                else:
                    for cid in scores:
                        weight = self._tokens[cid].get(token)
                        if weight is not None:
                            scores[cid] += q * weight * idf
        best = heapq.nsmallest(n, ((-dot / self._norm(cid), cid) for cid, dot in scores.items()))
        return [(cid, min(1.0, (-neg) / norm)) for neg, cid in best]

    def _norm(self, item_id: str) -> float:
        return self._vector(self._tokens[item_id])[1]
