"""Item models learned online from events: popularity, co-visitation, bought together, fresh.

One :class:`ItemModels` per installation (or per processor partition: its state merges no
profile data, only item ids and counts). ``apply(event, at, session_key, region)`` is the one
entry point the processor calls per event; reads (``top``, ``neighbours``, ``fresh``,
``popularity``) take ``now`` and never change the state. Pure and deterministic: no I/O, no
clock, no randomness; the same events in the same order give the same bytes.

Decay. Every score decays exponentially — popularity with ``popularity_half_life``,
neighbour scores with ``neighbour_half_life``. Scores are stored relative to one anchor time:
an event at ``t`` adds ``weight * 2 ** ((t - anchor) / half_life)``, so an update is O(1) and
scores of one kind stay comparable without touching the others. ``compact`` (run by ``apply``
once per ``compact_every`` of event time) drops what decayed below ``min_score`` and forgets
idle sessions; once scores have grown 2 ** 30-fold it also re-bases them to the newest event
time, long before a float could overflow.

Bounds. Items ≤ 1.1 × ``max_items`` (the least popular go first, with their neighbour lists);
each popularity table (overall, per category, per region) holds at most 1.25 × its size and
each neighbour list at most 2 × ``neighbours`` before it is trimmed back to the strongest
(reads return the strongest ``neighbours``); at most ``max_categories``
categories, ``max_regions`` regions, ``max_sessions`` open sessions of ``session_items``
items, ``max_fresh`` fresh items and ``max_orders`` order ids.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator, Mapping
from operator import itemgetter
from typing import Any, Final, Literal, get_type_hints

import msgspec

from segue.core.bounded import trim_oldest
from segue.core.events import Event, Track
from segue.core.model import Item
from segue.features._ecommerce import (
    ADD,
    CLICK,
    ORDER,
    VIEW,
    ItemLookup,
    ProductLine,
    kind_of,
    product_lines,
    region_of,
    text,
)

__all__ = ["ItemModels", "ItemModelsConfig", "ItemModelsState", "ItemStats", "NeighbourKind"]

_DAY: Final = 86400.0
#: compact (and re-base) before stored scores grow past 2 ** this (floats hold 2 ** 1023)
_MAX_DOUBLINGS: Final = 60.0
#: a compaction re-bases the scores once they have grown past 2 ** this
_REBASE_DOUBLINGS: Final = 30.0

NeighbourKind = Literal["co_visitation", "bought_together"]


class ItemModelsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the item models learn. Durations are in seconds.

    Attributes:
        popularity_half_life: popularity halves after this long without new interest.
        neighbour_half_life: co-visitation and bought-together scores halve after this long.
        view_weight / click_weight / add_weight / purchase_weight: popularity one product
            view, click, add to cart or purchased product adds.
        neighbours: neighbours kept per item and kind (top-K).
        table_size: items kept in each popularity table (overall, per category, per
            region); ``top(n)`` answers from it, so ``n`` beyond it returns fewer.
        max_items / max_categories / max_regions: caps of the item table and of the number
            of category and region tables.
        covisit_window: two items interacted with in one session at most this far apart
            are co-visited.
        session_items: items remembered per open session (the latest).
        max_sessions: open sessions remembered (the least recently active go first).
        max_order_products: products of one order paired with each other (the first ones).
        cross_order_window / cross_order_items / cross_order_weight: an order's products are
            also paired with the customer's latest ``cross_order_items`` products bought in
            the ``cross_order_window`` before, with this weight (an order's own pairs weigh 1).
        fresh_age / max_fresh: an item first seen at most ``fresh_age`` ago is fresh; the
            newest ``max_fresh`` are remembered.
        min_score: compaction drops scores that decayed below this.
        compact_every: event time between two compactions.
        max_orders: order ids remembered to recognise a repeated ``Order Completed``.
    """

    popularity_half_life: float = 3 * _DAY
    neighbour_half_life: float = 30 * _DAY
    view_weight: float = 1.0
    click_weight: float = 2.0
    add_weight: float = 3.0
    purchase_weight: float = 5.0
    neighbours: int = 50
    table_size: int = 500
    max_items: int = 100_000
    max_categories: int = 2_000
    max_regions: int = 300
    covisit_window: float = 1800.0
    session_items: int = 10
    max_sessions: int = 50_000
    max_order_products: int = 30
    cross_order_window: float = 30 * _DAY
    cross_order_items: int = 10
    cross_order_weight: float = 0.5
    fresh_age: float = 7 * _DAY
    max_fresh: int = 1_000
    min_score: float = 0.01
    compact_every: float = _DAY
    max_orders: int = 10_000

    def __post_init__(self) -> None:
        for name in ("popularity_half_life", "neighbour_half_life", "compact_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in (
            "neighbours",
            "table_size",
            "max_items",
            "max_categories",
            "max_regions",
            "session_items",
            "max_sessions",
            "max_order_products",
            "max_fresh",
            "max_orders",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.min_score < 0:
            raise ValueError("min_score must be >= 0")


class ItemStats(msgspec.Struct, array_like=True):
    """What the models know of one item: first and last event time, popularity (relative to
    the anchor), and its category and brand — the catalog's when it was observed, else the
    first an event gave (so one item stays in one category table)."""

    first_seen: float
    last_seen: float
    score: float = 0.0
    category: str | None = None
    brand: str | None = None


class ItemModelsState(msgspec.Struct, kw_only=True):
    """Everything :class:`ItemModels` learned; what ``to_bytes`` persists.

    ``anchor`` is the time scores are stated relative to (see the module docstring), with
    the half-lives they were computed with; ``latest`` is the newest event time folded.
    """

    popularity_half_life: float
    neighbour_half_life: float
    anchor: float | None = None
    latest: float | None = None
    compacted_at: float = 0.0
    items: dict[str, ItemStats] = {}
    overall: dict[str, float] = {}
    by_category: dict[str, dict[str, float]] = {}
    by_region: dict[str, dict[str, float]] = {}
    covisit: dict[str, dict[str, float]] = {}
    bought: dict[str, dict[str, float]] = {}
    #: session key → (item, time) of its latest interactions, oldest first
    sessions: dict[str, list[tuple[str, float]]] = {}
    #: item → first seen, for the newest items
    fresh: dict[str, float] = {}
    #: order id → time, of the latest orders
    orders: dict[str, float] = {}


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ItemModelsState)

#: what only the learner needs (open sessions, recent order ids): an API process that takes
#: the worker's models serves without them, and they are half of the saved bytes
_LEARNING_ONLY: Final = frozenset({"sessions", "orders"})
#: map values decoded per step of :meth:`ItemModels.served_from_bytes` (about 1 ms of work)
_SLICE: Final = 2000
#: entries (nested ones included) encoded per step of :meth:`ItemModels.to_bytes_in_steps`
_SAVE_STEP: Final = 4000


def _map_header(count: int) -> bytes:
    """The MessagePack header of a map of ``count`` entries, as msgspec writes it."""
    if count < 16:
        return bytes((0x80 | count,))
    if count < 0x10000:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


def _slices(keys: list[Any], values: list[Any]) -> Generator[tuple[int, list[Any]], None, None]:
    """A map's entries (its keys and values, taken at one instant) as slices of about
    ``_SAVE_STEP`` entries, those of nested maps and lists counted (a session, a row of
    neighbours): each slice's entry count and its keys and values interleaved, which
    encode as an array whose body is the body of a map of those entries."""
    n = len(keys)
    nested = isinstance(values[0], dict | list)
    start = 0
    while start < n:
        if nested:  # walked a slice at a time: the sizes of 55,000 rows at once took ~7 ms
            end, weight = start, 0
            while end < n and weight < _SAVE_STEP:
                weight += 1 + len(values[end])
                end += 1
        else:
            end = min(start + _SAVE_STEP, n)
        flat: list[Any] = [None] * (2 * (end - start))
        flat[0::2] = keys[start:end]
        flat[1::2] = values[start:end]
        yield end - start, flat
        start = end


_lazy_decoder = msgspec.msgpack.Decoder(
    msgspec.defstruct(
        "_LazyItemModelsState",
        # Raw: each field is only located, not decoded, until it is wanted
        [
            (name, msgspec.Raw, msgspec.field(default=None))
            for name in ItemModelsState.__struct_fields__
        ],
        kw_only=True,
    )
)


def _raw_decoders() -> dict[str, tuple[msgspec.msgpack.Decoder[Any], msgspec.msgpack.Decoder[Any]]]:
    """Per served field: a decoder of its outline (map values left raw) and of one value."""
    out: dict[str, tuple[msgspec.msgpack.Decoder[Any], msgspec.msgpack.Decoder[Any]]] = {}
    for name, hint in get_type_hints(ItemModelsState).items():
        if name in _LEARNING_ONLY:
            continue
        args: tuple[Any, ...] = getattr(hint, "__args__", ())
        if getattr(hint, "__origin__", None) is dict:
            key, value = args
            outline = msgspec.msgpack.Decoder(dict[key, msgspec.Raw])  # type: ignore[valid-type]
            out[name] = (outline, msgspec.msgpack.Decoder(value))
        else:
            out[name] = (msgspec.msgpack.Decoder(hint), msgspec.msgpack.Decoder(hint))
    return out


_served_decoders: Final = _raw_decoders()


class ItemModels:
    """Popularity, co-visitation, bought-together and fresh items, updated online.

    Args:
        config: how the models learn.
        state: what they learned so far (from :meth:`from_bytes`); empty when omitted.
    """

    def __init__(
        self, config: ItemModelsConfig | None = None, state: ItemModelsState | None = None
    ) -> None:
        self.config = config or ItemModelsConfig()
        self.state = state or ItemModelsState(
            popularity_half_life=self.config.popularity_half_life,
            neighbour_half_life=self.config.neighbour_half_life,
        )
        self._weights = {
            VIEW: self.config.view_weight,
            CLICK: self.config.click_weight,
            ADD: self.config.add_weight,
            ORDER: self.config.purchase_weight,
        }
        if (
            self.state.popularity_half_life != self.config.popularity_half_life
            or self.state.neighbour_half_life != self.config.neighbour_half_life
        ):
            # scores re-based to the newest event are true values: new half-lives apply from there
            if self.state.latest is not None:
                self.compact(self.state.latest, rebase=True)
            self.state.popularity_half_life = self.config.popularity_half_life
            self.state.neighbour_half_life = self.config.neighbour_half_life

    # --- persistence -------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The learned state as MessagePack bytes (deterministic for a given history)."""
        return _encoder.encode(self.state)

    def to_bytes_in_steps(self) -> Generator[None, None, bytes]:
        """What :meth:`to_bytes` returns, encoded in small steps: the generator yields after
        each ~1 ms of work and returns the bytes.

        Why: a process that folds the log saves its models every 30 s (every 2 s where a
        worker shares them), and one encode of the whole state (~9 MB, ~50 ms on this
        machine for 55,000 items and 20,000 open sessions) held its event loop: every
        request in flight waited for it. Large maps are encoded a slice at a time and the
        slices' entries joined under one header, so the bytes are the same as one encode's
        when nothing changes between steps. A nested table is never split: the largest
        one (a single region's popularity, in a shop that sells in one country, can hold
        every item) is one step of its own. What the processor folds between two steps may
        reach a later slice and not an earlier one, as if those events had been folded
        during the save; a compaction meanwhile (it rescales every score) makes the state
        be encoded again at once.
        """
        state = self.state
        compacted_at = state.compacted_at
        fields = state.__struct_fields__
        parts: list[bytes | memoryview] = [_map_header(len(fields))]
        for name in fields:
            parts.append(_encoder.encode(name))
            value = getattr(state, name)
            if not isinstance(value, dict):
                parts.append(_encoder.encode(value))
                continue
            keys, values = list(value), list(value.values())  # one instant's entries
            body: list[memoryview] = []
            count = 0
            if keys:
                for entries, flat in _slices(keys, values):
                    encoded = _encoder.encode(flat)
                    # an array's header is as long as a map's of as many entries
                    body.append(memoryview(encoded)[len(_map_header(len(flat))) :])
                    count += entries
                    yield
            parts.append(_map_header(count))
            parts.extend(body)
        if state is not self.state or state.compacted_at != compacted_at:
            # rescaled (or replaced by loaded models) midway: the slices would mix two states
            return self.to_bytes()
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, config: ItemModelsConfig | None = None) -> ItemModels:
        """Models from what :meth:`to_bytes` wrote; a changed half-life applies from the
        newest folded event on.

        Raises:
            msgspec.DecodeError: the bytes are not an encoded state.
        """
        return cls(config, _decoder.decode(data))

    @classmethod
    def served_from_bytes(
        cls, data: bytes, config: ItemModelsConfig | None = None
    ) -> Generator[None, None, ItemModels]:
        """Models to serve from (not to learn with: no sessions, no order ids), decoded in
        small steps: the generator yields after each ~1 ms of work and returns the models.

        An API process takes the worker's models every few seconds; decoding the whole
        state at once (2 MB, ~80 ms) would stall every request of its event loop.

        Raises:
            msgspec.DecodeError: the bytes are not an encoded state.
        """
        fields = msgspec.structs.asdict(_lazy_decoder.decode(data))
        values: dict[str, Any] = {}
        for name, (outline, one) in _served_decoders.items():
            raw = fields.get(name)
            if raw is None:
                continue
            decoded = outline.decode(raw)
            yield
            if isinstance(decoded, dict):
                keys = list(decoded)
                for start in range(0, len(keys), _SLICE):
                    for key in keys[start : start + _SLICE]:
                        decoded[key] = one.decode(decoded[key])
                    yield
            values[name] = decoded
        return cls(config, ItemModelsState(**values))

    def snapshot(self) -> ItemModels:
        """An independent copy, for readers in another thread while this one keeps learning
        (the reads iterate dicts that ``apply`` mutates)."""
        return ItemModels(self.config, _decoder.decode(self.to_bytes()))

    # --- learning ----------------------------------------------------------------------------
    def apply(
        self,
        event: Event,
        at: float,
        session_key: str | None = None,
        region: str | None = None,
        *,
        recent_purchases: Mapping[str, float] | None = None,
        item_lookup: ItemLookup | None = None,
    ) -> None:
        """Learn from one event. Only product views, clicks, adds to cart and completed
        orders teach anything; every other event returns at once.

        Args:
            event: the event.
            at: its event time, epoch seconds (UTC).
            session_key: the person's current session (co-visitation pairs items within
                one key); None learns no co-visitation.
            region: coarse region (country code); None reads ``context.location.country``.
            recent_purchases: the person's purchased items → last purchase time, for
                bought-together across orders (``ProfileFeatures.purchased``; items of this
                very order are ignored, so it may be read before or after folding it).
            item_lookup: catalog lookup for a category the event omits.
        """
        kind = kind_of(event)
        if kind not in self._weights or not isinstance(event, Track) or not math.isfinite(at):
            return
        lines = product_lines(event.properties, item_lookup)
        self.apply_parsed(event, kind, lines, at, session_key, region, recent_purchases)

    def apply_parsed(
        self,
        event: Event,
        kind: int,
        lines: list[ProductLine],
        at: float,
        session_key: str | None = None,
        region: str | None = None,
        recent_purchases: Mapping[str, float] | None = None,
    ) -> None:
        """:meth:`apply` for an event already read: its ``kind_of`` and its
        ``product_lines`` (what :class:`~segue.features.folder.FeatureFolder` shares with
        the profile fold, so each event is read once). ``at`` must be finite."""
        weight = self._weights.get(kind)
        if weight is None or not isinstance(event, Track):
            return
        s, cfg = self.state, self.config
        if kind == ORDER:
            order_id = text(event.properties.get("order_id"))
            if order_id is not None:
                if order_id in s.orders:
                    return
                s.orders[order_id] = at
                trim_oldest(s.orders, cfg.max_orders)
        if not any(line.product_id is not None for line in lines):
            return
        anchor = self._advance(at)
        w = weight * 2.0 ** ((at - anchor) / s.popularity_half_life)
        where = region_of(event) if region is None else (region.strip().upper()[:64] or None)
        region_table = self._table(s.by_region, where, cfg.max_regions)
        overall, size = s.overall, cfg.table_size
        ids: dict[str, None] = {}
        for line in lines:
            pid = line.product_id
            if pid is None:
                continue
            stats = self._item(pid, line, at)
            stats.score += w
            _add(overall, pid, w, size)
            category_table = self._table(s.by_category, stats.category, cfg.max_categories)
            if category_table is not None:
                _add(category_table, pid, w, size)
            if region_table is not None:
                _add(region_table, pid, w, size)
            ids[pid] = None
        g = 2.0 ** ((at - anchor) / s.neighbour_half_life)
        if kind == ORDER:
            self._bought(list(ids)[: cfg.max_order_products], at, g, recent_purchases)
        elif session_key is not None:
            self._covisit(session_key, list(ids), at, g)
        if len(s.items) > cfg.max_items + cfg.max_items // 10:
            self._evict()

    def observe_item(self, item: Item, at: float) -> None:
        """Learn a catalog item before any event names it (cold start: it is fresh from
        ``at``, its catalog category and brand win over what events said)."""
        s = self.state
        stats = s.items.get(item.item_id)
        if stats is None:
            stats = ItemStats(at, at)
            s.items[item.item_id] = stats
            self._mark_fresh(item.item_id, at)
        elif at < stats.first_seen:
            stats.first_seen = at
            if item.item_id in s.fresh:
                s.fresh[item.item_id] = at
        stats.category = text(item.category) or stats.category
        stats.brand = text(item.brand) or stats.brand

    def _advance(self, at: float) -> float:
        """Move the clock of the models to ``at`` (compacting when due); return the anchor."""
        s, cfg = self.state, self.config
        if s.anchor is None or s.latest is None:
            s.anchor = s.latest = s.compacted_at = at
            return at
        if at > s.latest:
            s.latest = at
        shortest = min(s.popularity_half_life, s.neighbour_half_life)
        if (
            s.latest - s.compacted_at >= cfg.compact_every
            or (s.latest - s.anchor) / shortest > _MAX_DOUBLINGS
        ):
            self.compact(s.latest)
        return s.anchor

    def _item(self, pid: str, line: ProductLine, at: float) -> ItemStats:
        stats = self.state.items.get(pid)
        if stats is None:
            stats = ItemStats(at, at, 0.0, line.category, line.brand)
            self.state.items[pid] = stats
            self._mark_fresh(pid, at)
            return stats
        if at < stats.first_seen:
            stats.first_seen = at
        if at > stats.last_seen:
            stats.last_seen = at
        if stats.category is None:
            stats.category = line.category
        if stats.brand is None:
            stats.brand = line.brand
        return stats

    def _mark_fresh(self, pid: str, at: float) -> None:
        fresh, cap = self.state.fresh, self.config.max_fresh
        fresh[pid] = at
        if len(fresh) > cap + cap // 4:
            self.state.fresh = dict(heapq.nlargest(cap, fresh.items(), key=itemgetter(1)))

    @staticmethod
    def _table(
        tables: dict[str, dict[str, float]], key: str | None, cap: int
    ) -> dict[str, float] | None:
        if key is None:
            return None
        table = tables.get(key)
        if table is None and len(tables) < cap:
            table = tables[key] = {}
        return table

    def _covisit(self, key: str, ids: list[str], at: float, weight: float) -> None:
        s, cfg = self.state, self.config
        window = cfg.covisit_window
        low, high = at - window, at + window
        buffer = [entry for entry in s.sessions.pop(key, ()) if entry[1] >= low]
        for pid in ids:
            for n, (other, t) in enumerate(buffer):
                if other == pid:
                    buffer[n] = (pid, max(t, at))
                    break
            else:
                others = [other for other, t in buffer if t <= high]
                if others:
                    self._pair(s.covisit, pid, others, weight)
                buffer.append((pid, at))
        s.sessions[key] = buffer[-cfg.session_items :]
        trim_oldest(s.sessions, cfg.max_sessions)

    def _bought(
        self,
        ids: list[str],
        at: float,
        weight: float,
        recent_purchases: Mapping[str, float] | None,
    ) -> None:
        s, cfg = self.state, self.config
        for n, a in enumerate(ids[:-1]):
            self._pair(s.bought, a, ids[n + 1 :], weight)
        if not recent_purchases:
            return
        low = at - cfg.cross_order_window
        mine = set(ids)
        earlier = heapq.nlargest(
            cfg.cross_order_items,
            (
                (t, q)
                for q, t in recent_purchases.items()
                if low <= t <= at and q not in mine and q in s.items
            ),
        )
        if earlier:
            cross = weight * cfg.cross_order_weight
            others = [q for _, q in earlier]
            for a in ids:
                self._pair(s.bought, a, others, cross)

    def _pair(
        self, rows: dict[str, dict[str, float]], item: str, others: list[str], weight: float
    ) -> None:
        """Add ``weight`` to the pair of ``item`` with each of ``others``, both ways."""
        keep = self.config.neighbours
        cap = 2 * keep
        mine = rows.get(item)
        if mine is None:
            mine = rows[item] = {}
        for other in others:
            mine[other] = mine.get(other, 0.0) + weight
            theirs = rows.get(other)
            if theirs is None:
                theirs = rows[other] = {}
            theirs[item] = theirs.get(item, 0.0) + weight
            if len(theirs) > cap:
                _trim(theirs, keep)
        if len(mine) > cap:
            _trim(mine, keep)

    def _evict(self) -> None:
        """Forget the least popular items (and their neighbour lists) down to ``max_items``."""
        s = self.state
        keep = heapq.nlargest(
            self.config.max_items, s.items.items(), key=lambda kv: (kv[1].score, kv[1].last_seen)
        )
        gone = s.items.keys() - {pid for pid, _ in keep}
        s.items = dict(sorted(keep, key=lambda kv: kv[1].first_seen))
        for pid in gone:
            s.covisit.pop(pid, None)
            s.bought.pop(pid, None)
            s.fresh.pop(pid, None)
            s.overall.pop(pid, None)

    def compact(self, now: float, *, rebase: bool = False) -> None:
        """Drop scores that decayed below ``min_score`` by ``now``, idle sessions, stale fresh
        items and items nothing refers to any more; re-base the scores to ``now`` when asked
        or when they are due (before they could overflow).

        ``apply`` calls it once per ``compact_every`` of event time; calling it at any
        other time changes no answer (beyond dropping negligible scores).
        """
        s, cfg = self.state, self.config
        s.compacted_at = now
        if s.anchor is None:
            return
        shortest = min(s.popularity_half_life, s.neighbour_half_life)
        rebase = rebase or (now - s.anchor) / shortest > _REBASE_DOUBLINGS
        if rebase:
            pop = 2.0 ** ((s.anchor - now) / s.popularity_half_life)
            near = 2.0 ** ((s.anchor - now) / s.neighbour_half_life)
            pop_floor = near_floor = cfg.min_score
        else:
            # prune in stored units, so tables with nothing to drop are left as they are
            pop = near = 1.0
            pop_floor = cfg.min_score * 2.0 ** ((now - s.anchor) / s.popularity_half_life)
            near_floor = cfg.min_score * 2.0 ** ((now - s.anchor) / s.neighbour_half_life)
        s.overall = _rescaled(s.overall, pop, pop_floor)
        s.by_category = _rescaled_tables(s.by_category, pop, pop_floor, None)
        s.by_region = _rescaled_tables(s.by_region, pop, pop_floor, None)
        s.covisit = _rescaled_tables(s.covisit, near, near_floor, s.items)
        s.bought = _rescaled_tables(s.bought, near, near_floor, s.items)
        s.sessions = {
            key: buffer
            for key, buffer in s.sessions.items()
            if buffer and max(t for _, t in buffer) >= now - cfg.covisit_window
        }
        s.fresh = {pid: t for pid, t in s.fresh.items() if t >= now - cfg.fresh_age}
        stale = now - cfg.fresh_age
        items: dict[str, ItemStats] = {}
        for pid, stats in s.items.items():
            if pop != 1.0:
                stats.score *= pop
            if (
                stats.score >= pop_floor
                or stats.last_seen >= stale
                or pid in s.fresh
                or pid in s.covisit
                or pid in s.bought
            ):
                items[pid] = stats
        s.items = items
        if rebase:
            s.anchor = now

    # --- reads -------------------------------------------------------------------------------
    def _factor(self, now: float | None, half_life: float) -> float:
        """What a stored score is multiplied by to read it at ``now`` (default: the newest
        event)."""
        s = self.state
        when = s.latest if now is None else now
        if s.anchor is None or when is None or when <= s.anchor:
            return 1.0  # a read before the anchor reads the scores as of the anchor
        return float(2.0 ** ((s.anchor - when) / half_life))

    def top(
        self,
        n: int,
        category: str | None = None,
        region: str | None = None,
        now: float | None = None,
    ) -> list[tuple[str, float]]:
        """The ``n`` most popular items, overall or within a category and/or a region, with
        their popularity decayed to ``now`` (default: the newest event), best first, ties by
        id. Category names match exactly; regions are compared upper-cased."""
        s = self.state
        if n <= 0:
            return []
        if region is not None:
            table = s.by_region.get(region.strip().upper(), {})
        elif category is not None:
            table = s.by_category.get(category, {})
        else:
            table = s.overall
        ranked = sorted(table.items(), key=_best_first)
        if region is not None and category is not None:
            items = s.items
            ranked = [
                kv
                for kv in ranked
                if (stats := items.get(kv[0])) is not None and stats.category == category
            ]
        factor = self._factor(now, s.popularity_half_life)
        return [(pid, score * factor) for pid, score in ranked[:n]]

    def popularity(self, item_id: str, now: float | None = None) -> float:
        """One item's popularity decayed to ``now`` (default: the newest event); 0 if unknown."""
        stats = self.state.items.get(item_id)
        if stats is None:
            return 0.0
        return stats.score * self._factor(now, self.state.popularity_half_life)

    def neighbours(
        self, item_id: str, kind: str, n: int = 10, now: float | None = None
    ) -> list[tuple[str, float]]:
        """Items most often seen with ``item_id``, best first, ties by id, scores decayed to
        ``now`` (default: the newest event).

        Args:
            item_id: the item.
            kind: a :data:`NeighbourKind`: ``co_visitation`` (interacted with in the same
                session, close in time) or ``bought_together`` (in the same order, or by the
                same person within the cross-order window).
            n: how many.
            now: when to read the scores, epoch seconds.

        Raises:
            ValueError: unknown kind.
        """
        if kind == "co_visitation":
            rows = self.state.covisit
        elif kind == "bought_together":
            rows = self.state.bought
        else:
            raise ValueError(
                f"unknown neighbour kind {kind!r}; use 'co_visitation' or 'bought_together'"
            )
        row = rows.get(item_id)
        if not row or n <= 0:
            return []
        factor = self._factor(now, self.state.neighbour_half_life)
        return [(pid, score * factor) for pid, score in sorted(row.items(), key=_best_first)[:n]]

    def fresh(self, n: int, now: float, max_age: float | None = None) -> list[tuple[str, float]]:
        """Items first seen within ``max_age`` (default ``fresh_age``) before ``now``, newest
        first, each with a freshness from 1 (just seen) down to 0 (``max_age`` old) — cold
        start: new items the popularity tables do not show yet."""
        age = self.config.fresh_age if max_age is None else max_age
        if n <= 0 or age <= 0:
            return []
        found = [(pid, t) for pid, t in self.state.fresh.items() if now - age <= t <= now]
        found.sort(key=lambda kv: (-kv[1], kv[0]))
        return [(pid, 1.0 - (now - t) / age) for pid, t in found[:n]]

    def category_of(self, item_id: str) -> str | None:
        """The category the models know for an item (catalog first, else events)."""
        stats = self.state.items.get(item_id)
        return None if stats is None else stats.category

    def sizes(self) -> dict[str, int]:
        """How big each structure is (for metrics and the bounds tests)."""
        s = self.state
        return {
            "items": len(s.items),
            "overall": len(s.overall),
            "categories": len(s.by_category),
            "regions": len(s.by_region),
            "category_entries": sum(len(t) for t in s.by_category.values()),
            "region_entries": sum(len(t) for t in s.by_region.values()),
            "covisit_rows": len(s.covisit),
            "covisit_entries": sum(len(r) for r in s.covisit.values()),
            "bought_rows": len(s.bought),
            "bought_entries": sum(len(r) for r in s.bought.values()),
            "sessions": len(s.sessions),
            "fresh": len(s.fresh),
            "orders": len(s.orders),
        }


def _best_first(kv: tuple[str, float]) -> tuple[float, str]:
    return -kv[1], kv[0]


def _add(table: dict[str, float], key: str, weight: float, size: int) -> None:
    table[key] = table.get(key, 0.0) + weight
    if len(table) > size + size // 4:
        _trim(table, size)


def _trim(table: dict[str, float], size: int) -> None:
    """Keep the ``size`` strongest entries (ties: the earliest inserted), in place."""
    keep = sorted(table.items(), key=itemgetter(1), reverse=True)[:size]
    table.clear()
    table.update(keep)


def _rescaled(table: dict[str, float], factor: float, floor: float) -> dict[str, float]:
    if factor == 1.0:
        if not table or min(table.values()) >= floor:
            return table
        return {k: v for k, v in table.items() if v >= floor}
    return {k: scaled for k, v in table.items() if (scaled := v * factor) >= floor}


def _rescaled_tables(
    tables: dict[str, dict[str, float]],
    factor: float,
    floor: float,
    known: Mapping[str, object] | None,
) -> dict[str, dict[str, float]]:
    """Every table re-scaled (``factor``) and pruned (``floor``, in re-scaled units); tables
    left empty, or keyed by an item not ``known``, are dropped."""
    result: dict[str, dict[str, float]] = {}
    for key, table in tables.items():
        if known is not None and key not in known:
            continue
        kept = _rescaled(table, factor, floor)
        if kept:
            result[key] = kept
    return result
