"""An in-memory mirror of the catalog for the decision hot path, with columnar arrays.

Decide looks at hundreds of candidates per request; a store round trip or a Python loop
per candidate would cost milliseconds. The process keeps every item in a dict (loaded at
start, updated by every catalog write) and, for the hot path, numpy columns indexed by a
dense item number: category, brand, type and price-band codes, availability, stock and the
availability window. A write changes its item's row in place (a new item takes a spare
row, a deleted one's row is emptied); the columns are rebuilt, lazily on the next read,
only when the spare rows run out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from segue.core.model import Item
from segue.core.ports import CatalogStore

__all__ = ["CatalogView", "Columns"]


#: an id's fingerprint in the row table: CPython's str hash, a 64-bit SipHash keyed at
#: random per process (so nobody can aim a collision at it); tests swap in a weak one
fingerprint: Callable[[str], int] = hash


#: what a row holds when no item is in it: spare rows, the unknown item's, a removed item's
_EMPTY_ROW: Final[dict[str, float | bool]] = {
    "category": -1,
    "brand": -1,
    "kind": 0,
    "band": -1,
    "available": False,
    "start": -np.inf,
    "end": np.inf,
}


class Columns:
    """The catalog as arrays; ``row[item_id]`` is an item's position (``unknown``: none)."""

    def __init__(self, items: dict[str, Item]) -> None:
        ids = list(items)
        # the keys are fresh copies made in one go, so they sit together in memory: the
        # item objects' own id strings are scattered over the heap, and mapping 500
        # candidates to rows then costs a cache miss per key (measured: 2.2× slower)
        compact: list[str] = msgspec.json.decode(msgspec.json.encode(ids))
        self.ids = compact
        #: the items in row order: an item by row is one list read, by id a dict probe
        self.items = [items[item_id] for item_id in ids]
        self.row = {item_id: i for i, item_id in enumerate(compact)}
        self._table = _RowTable(compact)
        self.categories: dict[str, int] = {}
        self.brands: dict[str, int] = {}
        n = len(ids)
        # rows past the items hold defaults: the first of them is the unknown item's, the
        # others room for items added later (see put)
        rows = n + 1 + max(16, n // 4)
        empty = _EMPTY_ROW
        self.category = np.full(rows, empty["category"], dtype=np.int32)
        self.brand = np.full(rows, empty["brand"], dtype=np.int32)
        self.kind = np.full(rows, empty["kind"], dtype=np.int8)
        self.band = np.full(rows, empty["band"], dtype=np.int8)
        self.available = np.full(rows, empty["available"], dtype=bool)
        self.start = np.full(rows, empty["start"])
        self.end = np.full(rows, empty["end"])
        for i, item in enumerate(self.items):
            self._set(i, item)
        self.unknown = n
        self.windowed = bool(np.isfinite(self.start).any() or np.isfinite(self.end).any())
        # the four attributes the similarity compares, in one word per row: one gather of
        # 500 random rows instead of four (each a cache miss per row); codes + 1, 0 = none
        self.packed = self._pack(slice(None))

    def _pack(self, at: slice) -> NDArray[np.int64]:
        """The packed words of the rows ``at`` (see ``Columns.packed`` below)."""
        word: NDArray[np.int64] = (
            ((self.category[at].astype(np.int64) + 1) << _CATEGORY_SHIFT)
            | ((self.brand[at].astype(np.int64) + 1) << _BRAND_SHIFT)
            | ((self.band[at].astype(np.int64) + 1) << _BAND_SHIFT)
            | self.kind[at].astype(np.int64)
        )
        return word

    def _set(self, i: int, item: Item) -> None:
        """Row ``i``'s attributes from ``item`` (the packed word and window flag aside)."""
        self.category[i] = (
            -1
            if item.category is None
            else self.categories.setdefault(item.category, len(self.categories))
        )
        self.brand[i] = (
            -1 if item.brand is None else self.brands.setdefault(item.brand, len(self.brands))
        )
        self.kind[i] = _KINDS.get(item.type, 3)
        price = item.price
        if price is not None and price > 0:
            self.band[i] = min(int(math.log10(price)), 6) if price >= 1 else 0
        else:
            self.band[i] = -1
        self.available[i] = item.available and item.stock != 0
        self.start[i] = -np.inf if item.start_at is None else item.start_at
        self.end[i] = np.inf if item.end_at is None else item.end_at

    def put(self, item: Item) -> bool:
        """Apply a catalog write in place: a new version of an item replaces its row, a new
        item takes the next spare row. False when the columns must be rebuilt instead (no
        spare row left, or the row table is full). Removals are in place too (see drop).

        Why: a stock or price change is the common catalog write, and rebuilding the
        columns of 100,000 items takes ~0.2 s, paid by the next decision.
        """
        i = self.row.get(item.item_id)
        if i is None:
            i = self.unknown
            if i + 2 > len(self.category) or not self._table.add(item.item_id, i):
                return False
            self.ids.append(item.item_id)
            self.items.append(item)
            self.row[item.item_id] = i
            self.unknown = i + 1  # the next row holds defaults: the unknown item's
        else:
            self.items[i] = item
        self._set(i, item)
        self.packed[i : i + 1] = self._pack(slice(i, i + 1))
        if item.start_at is not None or item.end_at is not None:
            self.windowed = True
        return True

    def drop(self, item_id: str) -> None:
        """Remove an item in place: its row stays, holding nothing (unavailable, no
        attributes), and no id maps to it any more."""
        i = self.row.pop(item_id, None)
        if i is None:
            return
        self._table.drop(item_id)
        for column, value in _EMPTY_ROW.items():
            getattr(self, column)[i] = value
        self.packed[i : i + 1] = self._pack(slice(i, i + 1))

    def rows(self, item_ids: Sequence[str]) -> NDArray[np.intp]:
        """Each id's row, ``unknown`` for ids not in the catalog.

        The rows come from fingerprints (see :class:`_RowTable`): a row can belong to
        another id only if two different ids share a 64-bit fingerprint, so what is shown
        is checked with :meth:`holds` first (and :meth:`exact_rows` used if it fails).
        """
        if self._table.usable:
            return self._table.rows(item_ids, self.unknown)
        return self.exact_rows(item_ids)

    def exact_rows(self, item_ids: Sequence[str]) -> NDArray[np.intp]:
        """:meth:`rows` by the ids themselves (the dict): slower, never another id's row."""
        n = len(item_ids)
        found = map(self.row.get, item_ids, itertools.repeat(self.unknown, n))
        return np.fromiter(found, dtype=np.intp, count=n)

    def holds(self, rows: NDArray[np.intp], item_ids: Sequence[str]) -> bool:
        """Whether each of ``rows`` is the row of the id at its place in ``item_ids``: the
        exact check behind :meth:`rows`."""
        ids, unknown = self.ids, self.unknown
        return [ids[r] if 0 <= r < unknown else None for r in rows.tolist()] == list(item_ids)

    def available_at(self, rows: NDArray[np.intp], now: float) -> NDArray[np.bool_]:
        if not self.windowed:  # no item has a start or an end: one gather, not three
            only: NDArray[np.bool_] = self.available[rows]
            return only
        ok: NDArray[np.bool_] = (
            self.available[rows] & (self.start[rows] <= now) & (now < self.end[rows])
        )
        return ok

    def similarity(self, row: int, rows: NDArray[np.intp]) -> NDArray[np.float64]:
        """Attribute overlap with one item, 0..1: same category, brand, type, price band."""
        if row == self.unknown:
            return np.zeros(len(rows))
        me = int(self.packed[row])
        differ = self.packed[rows] ^ me
        score: NDArray[np.float64] = ((differ & _KIND_MASK) == 0) * 0.1  # every item has one
        for mask, weight in _SIMILAR:
            if me & mask:  # an attribute the item lacks matches nothing
                score += ((differ & mask) == 0) * weight
        return score

    def codes(self, names: dict[str, float], table: dict[str, int]) -> NDArray[np.float64]:
        """An affinity dict as an array indexed by code (for a vectorised lookup)."""
        out = np.zeros(len(table) + 1)  # index -1 (no value) reads the trailing 0
        for name, value in names.items():
            code = table.get(name)
            if code is not None:
                out[code] = value
        return out


_KINDS = {"product": 0, "offer": 1, "content": 2}

# Columns.packed: kind in bits 0–1, price band + 1 in 2–5, brand + 1 in 6–33, category + 1
# in 34–61 (a catalog has fewer than 2^28 categories or brands: it has fewer items)
_BAND_SHIFT, _BRAND_SHIFT, _CATEGORY_SHIFT = 2, 6, 34
_KIND_MASK = (1 << _BAND_SHIFT) - 1
_SIMILAR = (
    (((1 << 28) - 1) << _CATEGORY_SHIFT, 0.4),
    (((1 << 28) - 1) << _BRAND_SHIFT, 0.3),
    (((1 << 4) - 1) << _BAND_SHIFT, 0.2),
)


#: ids a bucket of the row table holds: their fingerprints, then their rows, in 64 bytes
_SLOTS: Final = 4
#: where slot 0's row of the i-th gathered bucket sits once the (n, 8) block is flattened
_ROW_AT: Final = np.arange(0, 2 * _SLOTS * 1000, 2 * _SLOTS) + _SLOTS


class _RowTable:
    """Ids → rows by fingerprint, in numpy: a hash table of buckets of four ids, each
    bucket one 64-byte cache line (four fingerprints, then their four rows), probed for all
    candidates at once. The rare id whose bucket is full waits in a dict (``spill``).

    Why not the dict: with a 100,000-item catalog each lookup of a candidate id misses the
    cache three times (the dict's index, its entry, the key to compare), one id after the
    other; 500 of them took ~0.3 ms of a ~0.9 ms decision. Here the probe of all ids is
    one gather of their buckets that the processor overlaps, then a compare: one cache
    line an id, and a dozen numpy calls whatever the ids (linear probing took five rounds
    of eight calls, as many as the longest chain). The price is that a fingerprint stands
    for the id: when two of the catalog's ids share one, the table is not used; an id
    outside the catalog with the fingerprint of one inside (about 1 in 10^14 per candidate
    at 100,000 items) gets that item's row, which is why the engine checks the items it
    shows (:meth:`Columns.holds`) and, if one is not what it seems, starts over with
    :meth:`Columns.exact_rows`.
    """

    def __init__(self, ids: list[str]) -> None:
        n = len(ids)
        # at least a bucket for each id, counting the quarter more Columns makes room
        # for: ≤ 1 id a bucket on average, so few ids spill (at 100,000 items, ~170 of them)
        buckets = 1 << max(2, (n + n // 4 + 16).bit_length())
        self.mask = buckets - 1
        self.spill: dict[int, int] = {}
        self.count = n
        prints = np.fromiter(map(fingerprint, ids), dtype=np.int64, count=n)
        self.usable = len(np.unique(prints)) == n
        self.buckets = _aligned_int64(buckets, 2 * _SLOTS)
        # an empty slot: fingerprint 0 and row -1 (an id whose fingerprint is 0 spills)
        self.buckets[:, _SLOTS:] = -1
        if not self.usable:
            return
        home = prints & self.mask
        order = np.argsort(home, kind="stable")
        homes = home[order]
        starts = np.flatnonzero(np.r_[True, homes[1:] != homes[:-1]])
        slot = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))  # rank at home
        fits = (slot < _SLOTS) & (prints[order] != 0)
        placed = order[fits]
        self.buckets[homes[fits], slot[fits]] = prints[placed]
        self.buckets[homes[fits], _SLOTS + slot[fits]] = placed
        for row in order[~fits].tolist():
            self.spill[int(prints[row])] = row

    def _slot(self, wanted: int) -> tuple[int, int]:
        """The bucket of a fingerprint and its slot there (-1: not in the bucket)."""
        bucket = wanted & self.mask
        held = self.buckets[bucket]
        for slot in range(_SLOTS):
            if held[slot] == wanted and held[_SLOTS + slot] >= 0:
                return bucket, slot
        return bucket, -1

    def add(self, item_id: str, row: int) -> bool:
        """Place one more id; False if the table is unusable or would hold more ids than
        buckets, or if the id's fingerprint is taken (the rebuild then sees the collision)."""
        if not self.usable or self.count + 1 > len(self.buckets):
            return False
        wanted = fingerprint(item_id)
        bucket, slot = self._slot(wanted)
        if slot >= 0 or wanted in self.spill:
            return False
        self.count += 1
        held = self.buckets[bucket]
        free = np.flatnonzero(held[_SLOTS:] < 0)
        if wanted == 0 or not len(free):
            self.spill[wanted] = row
            return True
        held[free[0]] = wanted
        held[_SLOTS + free[0]] = row
        return True

    def drop(self, item_id: str) -> None:
        """Forget an id: its slot is emptied (no probe goes past it) or it leaves the spill."""
        if not self.usable:
            return
        wanted = fingerprint(item_id)
        bucket, slot = self._slot(wanted)
        if slot >= 0:
            self.buckets[bucket, slot] = 0
            self.buckets[bucket, _SLOTS + slot] = -1
            self.count -= 1
        elif self.spill.pop(wanted, None) is not None:
            self.count -= 1

    def rows(self, item_ids: Sequence[str], unknown: int) -> NDArray[np.intp]:
        n = len(item_ids)
        wanted = np.fromiter(map(fingerprint, item_ids), dtype=np.int64, count=n)
        held = self.buckets.take(wanted & self.mask, axis=0)  # (n, 8): a cache line an id
        same = held[:, :_SLOTS] == wanted[:, None]
        found = same.view(np.uint32).ravel() != 0  # four booleans are one 32-bit word
        at = same.argmax(axis=1)
        at += (
            _ROW_AT[:n] if n <= len(_ROW_AT) else np.arange(0, 2 * _SLOTS * n, 2 * _SLOTS) + _SLOTS
        )
        row = held.take(at)
        # an empty slot holds fingerprint 0 and row -1: a wanted id with fingerprint 0
        # matches it, and must not be found there
        found &= row >= 0
        out: NDArray[np.intp] = np.where(found, row, unknown)
        spill = self.spill
        if spill and not found.all():
            for i in np.flatnonzero(~found).tolist():
                r = spill.get(int(wanted[i]))
                if r is not None:
                    out[i] = r
        return out


def _aligned_int64(rows: int, width: int) -> NDArray[np.int64]:
    """Zeros of shape (rows, width) whose first byte sits on a 64-byte boundary, so that a
    bucket of 8 int64 is one cache line, not two halves."""
    raw = np.zeros(rows * width + 8, dtype=np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    out: NDArray[np.int64] = raw[skip : skip + rows * width].reshape(rows, width)
    return out


class CatalogView:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self._columns: Columns | None = None

    @property
    def columns(self) -> Columns:
        columns = self._columns
        if columns is None:
            columns = self._columns = Columns(self.items)
        return columns

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
        self.items = items
        self._columns = None

    def prepare(self) -> None:
        """Build the columns now if they are still to be built (after :meth:`load`, or a
        write that left them to be rebuilt: see :meth:`upsert`).

        Why: the first decision that reads them builds them otherwise, holding up every
        request for ~0.25 s at 100,000 items. Processes that decide call it at start,
        before they freeze their startup heap (so full collections never walk the
        columns' 100,000 id strings and row dict), and every second after.
        """
        if self._columns is None and self.items:
            self._columns = Columns(self.items)

    def upsert(self, items: Iterable[Item]) -> None:
        columns = self._columns
        for item in items:
            self.items[item.item_id] = item
            if columns is not None and not columns.put(item):
                columns = self._columns = None  # rebuilt when next read

    def remove(self, item_id: str) -> None:
        self.items.pop(item_id, None)
        if self._columns is not None:
            self._columns.drop(item_id)

    def stats(self) -> dict[str, Any]:
        return {"items": len(self.items)}
