"""The processor's third stage: real-time features per profile, item models, feedback.

After identity and matching have settled which profile each event of the batch belongs to,
every behavioural event is folded into that profile's features (counts, affinities, cart,
purchases, sessions, impressions) and into the shared item models (popularity, co-visitation,
bought-together, fresh items). Events that carry a ``decision_id`` are feedback on a decision:
exposures count towards frequency caps and, with clicks and conversions, are handed to the
decision engine to learn from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import msgspec

from segue.core.events import Event, Track
from segue.core.model import LogRecord
from segue.features._ecommerce import ItemLookup
from segue.features.aggregates import (
    ProfileFeatures,
    compact_features,
    fold_features,
    merge_features,
    relative_affinities,
)
from segue.features.folder import FeatureFolder
from segue.features.items import ItemModels

__all__ = ["Behaviour", "BehaviourStage", "Feedback", "behaviour_signals", "decode_behaviour"]

#: exposures kept per profile for frequency caps: this many items, seen within a day
_MAX_SHOWN: Final = 300
_SHOWN_WINDOW: Final = 86400.0
EXPOSURE_EVENTS: Final = frozenset(
    {
        "Decision Viewed",
        "Promotion Viewed",
        "Product List Viewed",
        "Impression",
    }
)
CLICK_EVENTS: Final = frozenset({"Product Clicked", "Promotion Clicked"})
CONVERSION_EVENTS: Final = frozenset({"Product Added", "Order Completed"})


class Behaviour(msgspec.Struct, kw_only=True):
    """What is stored per profile: its features and its recent exposures."""

    features: ProfileFeatures = msgspec.field(default_factory=ProfileFeatures)
    shown: dict[str, list[float]] = {}


class Feedback(msgspec.Struct, frozen=True):
    """One piece of feedback on a decision, for the decision engine."""

    decision_id: str
    kind: str  # exposure | click | conversion
    item_ids: tuple[str, ...]
    profile_id: str
    at: float


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Behaviour).decode


def decode_behaviour(data: bytes | None) -> Behaviour:
    return _decode(data) if data else Behaviour()


def behaviour_signals(b: Behaviour, now: float) -> dict[str, Any]:
    """The parts of a profile's behaviour that decide reads (see ``PersonSignals``)."""
    f = b.features
    recent = sorted(f.recent.items(), key=lambda kv: -kv[1])
    return {
        "purchased": frozenset(f.purchased),
        "cart": frozenset(f.cart),
        "recent": tuple(item for item, _ in recent[:20]),
        "impressions": {
            item: sum(1 for t in times if now - t <= _SHOWN_WINDOW)
            for item, times in b.shown.items()
        },
        "categories": relative_affinities(f, "category", now),
        "brands": relative_affinities(f, "brand", now),
    }


class BehaviourStage:
    """Folds a batch's events into features and item models (pure, runs in a worker thread).

    Args:
        models: the item models, shared with decide (same process).
        item_lookup: catalog lookup for category/brand/price an event omits.
        decision_items: decision id → the items it showed (for exposures without a list).
    """

    def __init__(
        self,
        models: ItemModels,
        item_lookup: ItemLookup | None = None,
        decision_items: Callable[[str], list[str] | None] | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.models = models
        #: held while the shared item models change, so readers never see a half update
        self.lock = lock or threading.Lock()
        self.item_lookup = item_lookup
        self.decision_items = decision_items
        #: reads each event once for the profile and the item models, and asks the models
        #: (and the session key) only about events that teach them
        self._features = FeatureFolder(models, item_lookup=item_lookup, models_lock=self.lock)
        #: the last log offset whose event taught the item models (see :meth:`fold`)
        self.taught_through = 0

    def fold(
        self,
        stored: dict[str, bytes],
        landed: list[tuple[LogRecord, Event, str, float]],
        redirects: dict[str, str],
        *,
        learn: bool = True,
    ) -> tuple[dict[str, bytes], list[Feedback]]:
        """Fold events (record, event, profile id at fold time, event time) in order.

        ``learn=False`` re-derives profile features only (an unmerge): the shared item models
        saw these events already. So does an event at or before ``taught_through``: the
        models learn in memory before the batch commits, and a batch whose commit failed
        (a backend away, a stale fence, a poison record) is folded again from the same
        offsets; its events must not teach the models twice.

        Returns:
            profile id → its new behaviour bytes, and the feedback seen.
        """
        state: dict[str, Behaviour] = {}

        def resolve(pid: str) -> str:
            hops = 0
            while pid in redirects and hops < 64:
                pid, hops = redirects[pid], hops + 1
            return pid

        def get(pid: str) -> Behaviour:
            b = state.get(pid)
            if b is None:
                b = state[pid] = decode_behaviour(stored.get(pid))
            return b

        for old in redirects:  # merged-away profiles bring their behaviour to the survivor
            if old in stored:
                survivor = get(resolve(old))
                victim = decode_behaviour(stored[old])
                merge_features(survivor.features, victim.features)
                for item, times in victim.shown.items():
                    survivor.shown[item] = sorted(survivor.shown.get(item, []) + times)[-20:]
        feedback: list[Feedback] = []
        taught = self.taught_through
        for record, event, landed_in, at in landed:
            pid = resolve(landed_in)
            b = get(pid)
            if learn and record.offset > taught:  # the models' lock: around their update
                self._features.fold(pid, b.features, event, at, _region(event))
                self.taught_through = max(self.taught_through, record.offset)
            else:
                fold_features(b.features, event, at, self.item_lookup)
            if isinstance(event, Track):
                found = self._feedback(event, pid, at)
                if found is not None:
                    feedback.append(found)
                    if found.kind == "exposure":
                        _remember_shown(b, found.item_ids, at)
        latest = max((at for _, _, _, at in landed), default=0.0)
        out: dict[str, bytes] = {}
        for pid, b in state.items():
            if pid not in redirects:
                compact_features(b.features, latest)
                out[pid] = _encode(b)
        return out, feedback

    def count_unattached(self, events: list[tuple[Event, float]]) -> int:
        """Consent-neutral aggregate counting: events that arrived without analytics consent
        teach item popularity only — no person, no session, no co-visitation."""
        for event, at in events:
            with self.lock:
                self.models.apply(event, at, None, _region(event), item_lookup=self.item_lookup)
        return len(events)

    def _feedback(self, event: Track, pid: str, at: float) -> Feedback | None:
        decision_id = event.properties.get("decision_id")
        if not isinstance(decision_id, str) or not decision_id:
            return None
        name = event.event
        if name in EXPOSURE_EVENTS:
            kind = "exposure"
        elif name in CLICK_EVENTS:
            kind = "click"
        elif name in CONVERSION_EVENTS:
            kind = "conversion"
        else:
            return None
        items = _items_of(event.properties)
        if not items and kind == "exposure" and self.decision_items is not None:
            items = tuple(self.decision_items(decision_id) or ())
        return Feedback(decision_id, kind, items, pid, at)


def _items_of(props: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key in ("product_id", "item_id", "sku"):
        value = props.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            found.append(str(value))
            break
    products = props.get("products")
    if isinstance(products, list):
        for product in products[:100]:
            if isinstance(product, dict):
                value = product.get("product_id", product.get("item_id"))
                if isinstance(value, str | int) and not isinstance(value, bool):
                    found.append(str(value))
    items = props.get("item_ids")
    if isinstance(items, list):
        found.extend(str(i) for i in items[:100] if isinstance(i, str | int))
    return tuple(dict.fromkeys(found))


def _remember_shown(b: Behaviour, items: tuple[str, ...], at: float) -> None:
    for item in items:
        times = b.shown.setdefault(item, [])
        times.append(at)
        del times[:-20]
    if len(b.shown) > _MAX_SHOWN:
        oldest = sorted(b.shown, key=lambda i: b.shown[i][-1])
        for item in oldest[: len(b.shown) - _MAX_SHOWN]:
            del b.shown[item]


def _region(event: Event) -> str | None:
    location = event.context.get("location")
    if isinstance(location, dict):
        country = location.get("country")
        if isinstance(country, str) and country.strip():
            return country.strip().upper()[:8]
    return None
