"""Per-profile features as a pure fold: windowed counts, affinities, recency, session, cart, RFM.

``fold_features(f, event, at, item_lookup)`` updates one profile's :class:`ProfileFeatures` in
place for one event. It does no I/O and reads no clock: ``at`` is the event time in epoch
seconds (UTC), and every read (``segue.features.view``) takes ``now``.
Folding the same events in the same order into the same state always gives the same state, so
a replay or an unmerge that re-derives a profile from the event log gets the same features.

Memory per profile is bounded whatever the traffic:

- windowed counts live in time buckets — minutes for 1 h, hours for 24 h, days for 30 d — and
  buckets that fall out of their window are dropped as time moves: at most 60 + 24 + 30
  buckets of 6 counters. A window is "the current bucket and the ones before it", so the
  1 h window covers the last 59–60 minutes, 24 h the last 23–24 hours, 30 d the last 29–30
  UTC days.
- affinities keep the top ``top_n`` categories and brands. Scores decay exponentially with
  ``half_life``. They are stored relative to ``affinity_at``: an event at ``t`` adds
  ``weight * 2 ** ((t - affinity_at) / half_life)``, so an update is O(1), and everything is
  re-based (decayed to ``t``) once ``t`` is more than a half-life past ``affinity_at``.
- the cart, the purchased items, the recently viewed items and the recent order ids are
  capped lists, oldest out first.

Events are applied in log order; an event whose time is before what the profile has already
seen (a late event) still counts in its time bucket, is decayed for its age, and never opens
or closes a session.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from operator import itemgetter
from typing import Any, Final

import msgspec

from segue.core.events import Event, Track
from segue.features._ecommerce import (
    ADD,
    CART,
    CLICK,
    MAX_QUANTITY,
    NONE,
    ORDER,
    PAGE,
    REMOVE,
    VIEW,
    ItemInfo,
    ItemLookup,
    ProductLine,
    kind_of,
    order_value,
    product_lines,
    session_id_of,
    text,
)

__all__ = [
    "DAY",
    "DEFAULT_CONFIG",
    "HOUR",
    "MINUTE",
    "CartLine",
    "FeatureConfig",
    "ItemInfo",
    "ItemLookup",
    "ProfileFeatures",
    "affinities",
    "compact_features",
    "decode_features",
    "encode_features",
    "fold_features",
    "fold_parsed",
    "merge_features",
    "relative_affinities",
    "session_key",
    "window_counts",
]

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0


class FeatureConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How features are computed. Durations are in seconds, amounts in the shop's currency.

    Attributes:
        half_life: affinity scores halve after this long without new interest.
        view_weight / click_weight / add_weight / purchase_weight: what one product view,
            click, add to cart or purchased product adds to its category's and brand's
            affinity.
        top_n: categories kept, and brands kept, per profile (the strongest).
        session_timeout: inactivity that ends a session when the events carry no session id.
        session_max_idle: inactivity that ends a session even when the id stays the same (an
            SDK that never rotates its id).
        max_cart_lines / max_purchased / max_recent_items / max_order_ids: caps of the cart,
            of the purchased items, of the recently viewed items and of the order ids kept
            to recognise a repeated ``Order Completed``.
        rfm_recency_days: a purchase at most this many days ago adds 1 to the R score (which
            starts at 1), for each threshold.
        rfm_frequency: each threshold reached by the number of orders adds 1 to F.
        rfm_monetary: each threshold reached by the revenue adds 1 to M.
        currency_rates: currency code → rate to the shop's currency; amounts in a currency
            not listed are summed as sent.
    """

    half_life: float = 7 * DAY
    view_weight: float = 1.0
    click_weight: float = 2.0
    add_weight: float = 3.0
    purchase_weight: float = 5.0
    top_n: int = 20
    session_timeout: float = 30 * MINUTE
    session_max_idle: float = DAY
    max_cart_lines: int = 100
    max_purchased: int = 500
    max_recent_items: int = 20
    max_order_ids: int = 20
    rfm_recency_days: tuple[float, ...] = (180.0, 90.0, 30.0, 7.0)
    rfm_frequency: tuple[float, ...] = (2.0, 3.0, 5.0, 10.0)
    rfm_monetary: tuple[float, ...] = (50.0, 200.0, 500.0, 2000.0)
    currency_rates: dict[str, float] = {}

    def __post_init__(self) -> None:
        positive = {
            "half_life": self.half_life,
            "session_timeout": self.session_timeout,
            "session_max_idle": self.session_max_idle,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0")
        caps = {
            "top_n": self.top_n,
            "max_cart_lines": self.max_cart_lines,
            "max_purchased": self.max_purchased,
            "max_recent_items": self.max_recent_items,
            "max_order_ids": self.max_order_ids,
        }
        for name, cap in caps.items():
            if cap < 1:
                raise ValueError(f"{name} must be >= 1")


DEFAULT_CONFIG: Final = FeatureConfig()


class CartLine(msgspec.Struct, array_like=True):
    """One product in the cart: how many, at what unit price, when last added (epoch s)."""

    quantity: int
    price: float | None
    added_at: float


# counter slots of a time bucket: [bucket index, page views, product views, clicks, adds,
# orders, products purchased]
_PAGE_VIEWS: Final = 1
_PRODUCT_VIEWS: Final = 2
_CLICKS: Final = 3
_ADDS: Final = 4
_ORDERS: Final = 5
_UNITS: Final = 6
_SLOTS: Final = 7
#: the count windows: name, bucket width (s), buckets kept
_WINDOWS: Final = (("1h", MINUTE, 60), ("24h", HOUR, 24), ("30d", DAY, 30))


#: short keys in the stored form: a profile's features are persisted on every batch that
#: touches it, and field names would be a fifth of the bytes
_KEYS: Final = {
    "minutes": "m",
    "hours": "h",
    "days": "d",
    "categories": "ca",
    "brands": "br",
    "affinity_at": "aa",
    "first_seen": "fs",
    "last_seen": "ls",
    "first_purchase": "fp",
    "last_purchase": "lp",
    "session_id": "si",
    "session_start": "ss",
    "session_last": "sl",
    "session_pages": "sp",
    "session_events": "se",
    "sessions": "sn",
    "time_on_site": "ts",
    "cart": "ct",
    "recent": "rc",
    "purchased": "pu",
    "orders": "o",
    "revenue": "rv",
    "order_ids": "oi",
}


class ProfileFeatures(msgspec.Struct, kw_only=True, omit_defaults=True, rename=_KEYS):
    """One profile's features: mutable, folded in place, a few hundred bytes encoded.

    Times are epoch seconds (UTC). Read it through ``segue.features.view`` (the API view,
    the ranker's vector, counts, affinities, RFM) rather
    than field by field: counts and affinities mean something only at a given ``now``.

    Attributes:
        minutes / hours / days: time buckets ``[index, page views, product views, clicks,
            adds, orders, products purchased]`` where index is ``floor(t / width)``; oldest
            first.
        categories / brands: affinity scores relative to ``affinity_at``: the score at
            time ``t`` is ``stored * 0.5 ** ((t - affinity_at) / half_life)``.
        first_seen / last_seen: first and last behavioural event (page, screen, track).
        first_purchase / last_purchase: first and last ``Order Completed``.
        session_id / session_start / session_last / session_pages / session_events: the
            current (latest) session; ``session_id`` is the sender's, when it sent one.
        sessions: sessions so far. time_on_site: seconds between events of the same session,
            summed over all sessions.
        cart: product id → line, in the order last added.
        recent: product id → last viewed, clicked or added; oldest first.
        purchased: product id → last purchased; oldest first.
        orders / revenue: orders and their value (``revenue``, ``total``, ``value`` or the
            products' price × quantity), converted with ``currency_rates``.
        order_ids: the latest order ids, to recognise a repeated ``Order Completed``.
    """

    minutes: list[list[int]] = []
    hours: list[list[int]] = []
    days: list[list[int]] = []
    categories: dict[str, float] = {}
    brands: dict[str, float] = {}
    affinity_at: float = 0.0
    first_seen: float | None = None
    last_seen: float | None = None
    first_purchase: float | None = None
    last_purchase: float | None = None
    session_id: str | None = None
    session_start: float | None = None
    session_last: float = 0.0
    session_pages: int = 0
    session_events: int = 0
    sessions: int = 0
    time_on_site: float = 0.0
    cart: dict[str, CartLine] = {}
    recent: dict[str, float] = {}
    purchased: dict[str, float] = {}
    orders: int = 0
    revenue: float = 0.0
    order_ids: list[str] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ProfileFeatures)


def encode_features(f: ProfileFeatures) -> bytes:
    """The compact binary form (MessagePack) to persist next to the profile."""
    return _encoder.encode(f)


def decode_features(data: bytes) -> ProfileFeatures:
    """Read back what :func:`encode_features` wrote.

    Raises:
        msgspec.DecodeError: the bytes are not an encoded ProfileFeatures.
    """
    return _decoder.decode(data)


# --- the fold --------------------------------------------------------------------------------
def fold_features(
    f: ProfileFeatures,
    event: Event,
    at: float,
    item_lookup: ItemLookup | None = None,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> None:
    """Fold one event into a profile's features, in place.

    Page and screen events count as page views; ``Product Viewed``, ``Product Clicked``,
    ``Product Added`` and ``Order Completed`` count and feed affinities; ``Product Added``,
    ``Product Removed``, ``Cart Viewed`` (with ``products[]``) and ``Order Completed``
    maintain the cart. Identify, group and alias change nothing. An ``Order Completed``
    whose ``order_id`` was already folded counts only as activity.

    Args:
        f: the profile's features, updated in place.
        event: the event.
        at: when it happened, epoch seconds (UTC) — the event time, not the processing time.
        item_lookup: catalog lookup for the category, brand and price an event omits.
        config: how features are computed.
    """
    kind = kind_of(event)
    if kind == NONE or not math.isfinite(at):
        return
    lines = (
        product_lines(event.properties, item_lookup)
        if VIEW <= kind <= ORDER and isinstance(event, Track)
        else []
    )
    fold_parsed(f, event, kind, lines, at, config)


def fold_parsed(
    f: ProfileFeatures,
    event: Event,
    kind: int,
    lines: list[ProductLine],
    at: float,
    config: FeatureConfig = DEFAULT_CONFIG,
) -> None:
    """:func:`fold_features` for an event already read: its ``kind_of`` and its
    ``product_lines`` (what :class:`~segue.features.folder.FeatureFolder` shares with the
    item models, so each event is read once). ``at`` must be finite."""
    if kind == NONE:
        return
    in_session = _see(f, event, at, config)
    if kind == PAGE:
        _count(f, at, _PAGE_VIEWS, 1)
        if in_session:
            f.session_pages += 1
        return
    if not isinstance(event, Track) or kind > ORDER:
        return
    props = event.properties
    if kind == VIEW:
        _count(f, at, _PRODUCT_VIEWS, 1)
        _affinity(f, at, lines, config.view_weight, config)
        _remember(f, lines, at, config)
    elif kind == CLICK:
        _count(f, at, _CLICKS, 1)
        _affinity(f, at, lines, config.click_weight, config)
        _remember(f, lines, at, config)
    elif kind == ADD:
        _count(f, at, _ADDS, 1)
        _affinity(f, at, lines, config.add_weight, config)
        _remember(f, lines, at, config)
        _cart_add(f, lines, at, config)
    elif kind == REMOVE:
        _cart_remove(f, lines)
    elif kind == CART:
        if isinstance(props.get("products"), list):
            _cart_replace(f, lines, at, config)
    else:
        _order(f, props, lines, at, config)


def _see(f: ProfileFeatures, event: Event, at: float, config: FeatureConfig) -> bool:
    """Recency and sessions; True when the event belongs to the current session."""
    if f.first_seen is None or at < f.first_seen:
        f.first_seen = at
    if f.last_seen is None or at > f.last_seen:
        f.last_seen = at
    sid = session_id_of(event)
    if f.session_start is None:
        _new_session(f, sid, at)
        return True
    if at >= f.session_last:
        gap = at - f.session_last
        if sid is not None and f.session_id is not None:
            new = sid != f.session_id or gap > config.session_max_idle
        else:
            new = gap > config.session_timeout
        if new:
            _new_session(f, sid, at)
            return True
        f.time_on_site += gap
        f.session_last = at
        if f.session_id is None:
            f.session_id = sid
        f.session_events += 1
        return True
    if at >= f.session_start and (sid is None or sid == f.session_id):
        f.session_events += 1
        return True
    return False


def _new_session(f: ProfileFeatures, sid: str | None, at: float) -> None:
    f.sessions += 1
    f.session_id = sid
    f.session_start = f.session_last = at
    f.session_pages = 0
    f.session_events = 1


def _count(f: ProfileFeatures, at: float, slot: int, amount: int) -> None:
    minute = int(at // MINUTE)
    _bump(f.minutes, minute, 60, slot, amount)
    _bump(f.hours, minute // 60, 24, slot, amount)
    _bump(f.days, minute // 1440, 30, slot, amount)


def _bump(buckets: list[list[int]], index: int, keep: int, slot: int, amount: int) -> None:
    """Add to one counter of the bucket ``index``; keep only the ``keep`` newest indexes."""
    if buckets:
        head = buckets[-1][0]
        if index == head:
            buckets[-1][slot] += amount
            return
        if index < head:
            if index <= head - keep:
                return  # older than the window
            pos = bisect_left(buckets, index, key=itemgetter(0))
            if buckets[pos][0] != index:
                buckets.insert(pos, [index, 0, 0, 0, 0, 0, 0])
            buckets[pos][slot] += amount
            return
    bucket = [index, 0, 0, 0, 0, 0, 0]
    bucket[slot] = amount
    buckets.append(bucket)
    if buckets[0][0] <= index - keep:
        cut = index - keep
        drop = 0
        while buckets[drop][0] <= cut:
            drop += 1
        del buckets[:drop]


def _affinity(
    f: ProfileFeatures, at: float, lines: list[ProductLine], weight: float, config: FeatureConfig
) -> None:
    if not lines:
        return
    half_life = config.half_life
    ahead = at - f.affinity_at
    if ahead > half_life:
        # re-base at most once per half-life: decay everything to ``at``
        if f.categories or f.brands:
            factor = 0.5 ** (ahead / half_life)
            for scores in (f.categories, f.brands):
                for key in scores:
                    scores[key] *= factor
        f.affinity_at = at
    elif ahead:
        weight *= 2.0 ** (ahead / half_life)
    for line in lines:
        if line.category is not None:
            _add_top(f.categories, line.category, weight, config.top_n)
        if line.brand is not None:
            _add_top(f.brands, line.brand, weight, config.top_n)


def _add_top(scores: dict[str, float], key: str, weight: float, limit: int) -> None:
    """Add to a score, keeping at most ``limit`` keys: a new key displaces the weakest only
    when it starts stronger."""
    current = scores.get(key)
    if current is not None:
        scores[key] = current + weight
        return
    if len(scores) >= limit:
        weakest = min(scores, key=scores.__getitem__)
        if scores[weakest] >= weight:
            return
        del scores[weakest]
    scores[key] = weight


def _remember(
    f: ProfileFeatures, lines: list[ProductLine], at: float, config: FeatureConfig
) -> None:
    recent = f.recent
    for line in lines:
        if line.product_id is not None:
            seen = recent.pop(line.product_id, at)
            recent[line.product_id] = max(seen, at)
    while len(recent) > config.max_recent_items:
        del recent[next(iter(recent))]


def _cart_add(
    f: ProfileFeatures, lines: list[ProductLine], at: float, config: FeatureConfig
) -> None:
    cart = f.cart
    for line in lines:
        if line.product_id is None:
            continue
        quantity = line.quantity or 1
        held = cart.pop(line.product_id, None)
        if held is None:
            held = CartLine(quantity, line.price, at)
        else:
            held.quantity = min(held.quantity + quantity, MAX_QUANTITY)
            held.added_at = max(held.added_at, at)
            if line.price is not None:
                held.price = line.price
        cart[line.product_id] = held
    while len(cart) > config.max_cart_lines:
        del cart[next(iter(cart))]


def _cart_remove(f: ProfileFeatures, lines: list[ProductLine]) -> None:
    for line in lines:
        if line.product_id is None:
            continue
        held = f.cart.get(line.product_id)
        if held is None:
            continue
        if line.quantity is None or line.quantity >= held.quantity:
            del f.cart[line.product_id]
        else:
            held.quantity -= line.quantity


def _cart_replace(
    f: ProfileFeatures, lines: list[ProductLine], at: float, config: FeatureConfig
) -> None:
    """``Cart Viewed`` with ``products[]`` says what the cart holds: it replaces ours."""
    cart: dict[str, CartLine] = {}
    for line in lines:
        pid = line.product_id
        if pid is None:
            continue
        quantity = line.quantity or 1
        same = cart.get(pid)
        if same is not None:
            same.quantity = min(same.quantity + quantity, MAX_QUANTITY)
            continue
        if len(cart) >= config.max_cart_lines:
            continue
        prior = f.cart.get(pid)
        price = line.price if line.price is not None else (prior.price if prior else None)
        cart[pid] = CartLine(quantity, price, prior.added_at if prior else at)
    f.cart = cart


def _order(
    f: ProfileFeatures,
    props: dict[str, Any],
    lines: list[ProductLine],
    at: float,
    config: FeatureConfig,
) -> None:
    order_id = text(props.get("order_id"))
    if order_id is not None:
        if order_id in f.order_ids:
            return  # the same order sent again (a retry with a new messageId)
        f.order_ids.append(order_id)
        del f.order_ids[: -config.max_order_ids]
    _count(f, at, _ORDERS, 1)
    units = sum(line.quantity or 1 for line in lines if line.product_id is not None)
    if units:
        _count(f, at, _UNITS, units)
    _affinity(f, at, lines, config.purchase_weight, config)
    purchased = f.purchased
    for line in lines:
        pid = line.product_id
        if pid is None:
            continue
        before = purchased.pop(pid, at)
        purchased[pid] = max(before, at)
        f.cart.pop(pid, None)
    while len(purchased) > config.max_purchased:
        del purchased[next(iter(purchased))]
    amount = order_value(props, lines)
    if config.currency_rates:
        currency = text(props.get("currency"))
        rate = config.currency_rates.get(currency.upper()) if currency else None
        if rate is not None:
            amount *= rate
    f.orders += 1
    f.revenue += amount
    if f.last_purchase is None or at > f.last_purchase:
        f.last_purchase = at
    if f.first_purchase is None or at < f.first_purchase:
        f.first_purchase = at


# --- merge -----------------------------------------------------------------------------------
def merge_features(
    into: ProfileFeatures, other: ProfileFeatures, config: FeatureConfig = DEFAULT_CONFIG
) -> None:
    """Fold the features of a merged-away profile into the survivor's, in place.

    Counts add up bucket by bucket, affinities add up at a common time, recency takes the
    extremes, carts and purchase histories are united (quantities of the same product add
    up). Two current sessions that overlap or touch (within ``session_timeout``) become one
    — the usual case of an anonymous visitor who logs in — otherwise the later one is
    current. An order present in both order-id lists is counted once in ``orders``; its
    revenue cannot be told apart and stays counted twice.
    """
    into.minutes = _merge_buckets(into.minutes, other.minutes, 60)
    into.hours = _merge_buckets(into.hours, other.hours, 24)
    into.days = _merge_buckets(into.days, other.days, 30)
    _merge_affinities(into, other, config)
    into.first_seen = _pick(min, into.first_seen, other.first_seen)
    into.last_seen = _pick(max, into.last_seen, other.last_seen)
    into.first_purchase = _pick(min, into.first_purchase, other.first_purchase)
    into.last_purchase = _pick(max, into.last_purchase, other.last_purchase)
    _merge_sessions(into, other, config)
    cart = dict(into.cart)
    for pid, line in other.cart.items():
        held = cart.get(pid)
        if held is None:
            cart[pid] = CartLine(line.quantity, line.price, line.added_at)
        else:
            cart[pid] = CartLine(
                min(held.quantity + line.quantity, MAX_QUANTITY),
                held.price if held.added_at >= line.added_at else line.price,
                max(held.added_at, line.added_at),
            )
    into.cart = _newest(cart, config.max_cart_lines, key=lambda item: item[1].added_at)
    into.recent = _newest(
        _union_max(into.recent, other.recent), config.max_recent_items, key=itemgetter(1)
    )
    into.purchased = _newest(
        _union_max(into.purchased, other.purchased), config.max_purchased, key=itemgetter(1)
    )
    twice = len(set(into.order_ids) & set(other.order_ids))
    into.orders += other.orders - twice
    into.revenue += other.revenue
    ids = list(dict.fromkeys([*into.order_ids, *other.order_ids]))
    into.order_ids = ids[-config.max_order_ids :]


def compact_features(f: ProfileFeatures, now: float) -> None:
    """Drop the time buckets that no window counts at ``now`` any more (call before
    persisting; folds only prune relative to the profile's own newest event, so an idle
    profile keeps its last hour of minute buckets until then). Changes no read at or after
    ``now``."""
    for name, (_, width, keep) in zip(("minutes", "hours", "days"), _WINDOWS, strict=True):
        buckets: list[list[int]] = getattr(f, name)
        low = int(now // width) - keep
        if buckets and buckets[0][0] <= low:
            setattr(f, name, [bucket for bucket in buckets if bucket[0] > low])


def _pick(choose: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(choose(a, b))


def _merge_buckets(a: list[list[int]], b: list[list[int]], keep: int) -> list[list[int]]:
    if not b:
        return a
    merged: dict[int, list[int]] = {bucket[0]: list(bucket) for bucket in a}
    for bucket in b:
        held = merged.get(bucket[0])
        if held is None:
            merged[bucket[0]] = list(bucket)
        else:
            for slot in range(1, _SLOTS):
                held[slot] += bucket[slot]
    head = max(merged)
    return [merged[i] for i in sorted(merged) if i > head - keep]


def _merge_affinities(into: ProfileFeatures, other: ProfileFeatures, config: FeatureConfig) -> None:
    at = max(into.affinity_at, other.affinity_at)
    mine = 0.5 ** ((at - into.affinity_at) / config.half_life)
    theirs = 0.5 ** ((at - other.affinity_at) / config.half_life)
    for kind in ("categories", "brands"):
        scores = {k: v * mine for k, v in getattr(into, kind).items()}
        for key, value in getattr(other, kind).items():
            scores[key] = scores.get(key, 0.0) + value * theirs
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: config.top_n]
        setattr(into, kind, dict(best))
    into.affinity_at = at


def _merge_sessions(into: ProfileFeatures, other: ProfileFeatures, config: FeatureConfig) -> None:
    into.time_on_site += other.time_on_site
    if other.session_start is None:
        return
    if into.session_start is None:
        into.sessions = other.sessions
        _copy_session(into, other)
        return
    touching = (
        other.session_start <= into.session_last + config.session_timeout
        and into.session_start <= other.session_last + config.session_timeout
    )
    into.sessions += other.sessions
    if touching:
        into.sessions -= 1
        later = other if other.session_last > into.session_last else into
        into.session_id = later.session_id or into.session_id or other.session_id
        into.session_start = min(into.session_start, other.session_start)
        into.session_last = max(into.session_last, other.session_last)
        into.session_pages += other.session_pages
        into.session_events += other.session_events
    elif other.session_last > into.session_last:
        _copy_session(into, other)


def _copy_session(into: ProfileFeatures, other: ProfileFeatures) -> None:
    into.session_id = other.session_id
    into.session_start = other.session_start
    into.session_last = other.session_last
    into.session_pages = other.session_pages
    into.session_events = other.session_events


def _union_max(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    merged = dict(a)
    for key, value in b.items():
        held = merged.get(key)
        merged[key] = value if held is None else max(held, value)
    return merged


def _newest(items: dict[str, Any], limit: int, key: Any) -> dict[str, Any]:
    """The ``limit`` newest entries, oldest first (the order the folds keep)."""
    return dict(sorted(items.items(), key=key)[-limit:])


def session_key(profile_id: str, f: ProfileFeatures) -> str | None:
    """An opaque key for the profile's current session (what co-visitation groups by), None
    before any event. A hash, so the item models hold no profile id."""
    if f.session_start is None:
        return None
    raw = f"{profile_id}@{f.session_start!r}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


# --- reads -----------------------------------------------------------------------------------
def window_counts(f: ProfileFeatures, now: float) -> dict[str, dict[str, int]]:
    """Counts per window (``1h``, ``24h``, ``30d``) as of ``now``.

    Each window holds ``views`` (page and product views), ``page_views``, ``product_views``,
    ``clicks``, ``adds`` (to cart), ``orders`` and ``products_purchased`` (units).
    """
    result: dict[str, dict[str, int]] = {}
    for (name, width, keep), buckets in zip(_WINDOWS, (f.minutes, f.hours, f.days), strict=True):
        top = int(now // width)
        low = top - keep
        sums = [0] * _SLOTS
        for bucket in buckets:
            if low < bucket[0] <= top:
                for slot in range(1, _SLOTS):
                    sums[slot] += bucket[slot]
        result[name] = {
            "views": sums[_PAGE_VIEWS] + sums[_PRODUCT_VIEWS],
            "page_views": sums[_PAGE_VIEWS],
            "product_views": sums[_PRODUCT_VIEWS],
            "clicks": sums[_CLICKS],
            "adds": sums[_ADDS],
            "orders": sums[_ORDERS],
            "products_purchased": sums[_UNITS],
        }
    return result


def affinities(
    f: ProfileFeatures, kind: str, now: float, config: FeatureConfig = DEFAULT_CONFIG
) -> list[tuple[str, float]]:
    """Affinity scores of ``kind`` (``category`` or ``brand``) decayed to ``now``, strongest
    first (ties by name).

    Raises:
        ValueError: unknown kind.
    """
    if kind == "category":
        scores = f.categories
    elif kind == "brand":
        scores = f.brands
    else:
        raise ValueError(f"unknown affinity kind {kind!r}; use 'category' or 'brand'")
    factor = 0.5 ** (max(0.0, now - f.affinity_at) / config.half_life)
    return sorted(((k, v * factor) for k, v in scores.items()), key=lambda kv: (-kv[1], kv[0]))


def relative_affinities(
    f: ProfileFeatures, kind: str, now: float, config: FeatureConfig = DEFAULT_CONFIG
) -> dict[str, float]:
    """Affinities of ``kind`` in (0, 1], the strongest being 1, strongest first: what decide
    compares across items (the absolute scale depends on how active the person is).

    Raises:
        ValueError: unknown kind.
    """
    ranked = affinities(f, kind, now, config)
    if not ranked or ranked[0][1] <= 0:
        return {}
    top = ranked[0][1]
    return {name: score / top for name, score in ranked if score > 0}
