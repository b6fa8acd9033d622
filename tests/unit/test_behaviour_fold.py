"""The behaviour stage reads each event once for the profile's features and the item models,
and gives the same features and models as folding each half on its own; an unmerge's
re-derivation (``learn=False``) leaves the shared item models as they were."""

from __future__ import annotations

import random
from typing import Any

from segue.core.events import Event, to_event
from segue.core.model import LogRecord
from segue.features import ItemModels
from segue.features._ecommerce import ItemInfo
from segue.features.aggregates import compact_features, fold_features, session_key
from segue.processor.behaviour import BehaviourStage, decode_behaviour

T = 1_714_521_600.0
CATALOG = {
    f"i{n}": ItemInfo(category=f"cat{n % 4}", brand=f"brand{n % 3}", price=10.0 + n)
    for n in range(30)
}


def lookup(item_id: str) -> ItemInfo | None:
    return CATALOG.get(item_id)


def events(n: int, seed: int) -> list[tuple[LogRecord, Event, str, float]]:
    """Views, clicks, adds, removals, orders, pages and identifies of a few people, some
    from a country, over a few hours (new sessions among them)."""
    rng = random.Random(seed)
    out = []
    at = T
    for k in range(n):
        at += rng.choice((5.0, 60.0, 3600.0))
        who = f"p{rng.randrange(4)}"
        item = f"i{rng.randrange(30)}"
        roll = rng.random()
        message: dict[str, Any] = {"messageId": f"m{k}", "userId": who, "type": "track"}
        if rng.random() < 0.5:
            message["context"] = {"location": {"country": rng.choice(("de", "US", "fr"))}}
        if roll < 0.35:
            message.update(event="Product Viewed", properties={"product_id": item})
        elif roll < 0.45:
            message.update(event="Product Clicked", properties={"product_id": item})
        elif roll < 0.6:
            message.update(event="Product Added", properties={"product_id": item, "quantity": 1})
        elif roll < 0.65:
            message.update(event="Product Removed", properties={"product_id": item})
        elif roll < 0.75:
            products = [{"product_id": f"i{rng.randrange(30)}"} for _ in range(2)]
            message.update(
                event="Order Completed", properties={"order_id": f"o{k}", "products": products}
            )
        elif roll < 0.9:
            message.update(type="page", name="Home")
        else:
            message.update(type="identify", traits={"plan": "gold"})
        record = LogRecord(k + 1, "web", f"m{k}", at, who, b"")
        out.append((record, to_event(message), who, at))
    return out


def test_one_read_of_each_event_gives_what_each_half_gives_alone() -> None:
    landed = events(400, seed=3)
    stage = BehaviourStage(ItemModels(), item_lookup=lookup)
    folded, _ = stage.fold({}, landed, {})

    reference = ItemModels()
    features = {pid: decode_behaviour(None).features for _, _, pid, _ in landed}
    for _, event, pid, at in landed:
        f = features[pid]
        fold_features(f, event, at, lookup)
        country = event.context.get("location", {}).get("country")
        region = country.strip().upper()[:8] if isinstance(country, str) else None
        reference.apply(
            event,
            at,
            session_key(pid, f),
            region,
            recent_purchases=f.purchased,
            item_lookup=lookup,
        )
    assert stage.models.to_bytes() == reference.to_bytes()
    latest = max(at for *_, at in landed)
    for pid, f in features.items():
        compact_features(f, latest)  # as the stage leaves each profile's features
        assert decode_behaviour(folded[pid]).features == f, pid


def test_rederiving_features_leaves_the_item_models_alone() -> None:
    landed = events(200, seed=5)
    taught = BehaviourStage(ItemModels(), item_lookup=lookup)
    learned, _ = taught.fold({}, landed, {})
    untouched = ItemModels()
    rederived = BehaviourStage(untouched, item_lookup=lookup)
    again, _ = rederived.fold({}, landed, {}, learn=False)
    assert untouched.to_bytes() == ItemModels().to_bytes()
    assert again == learned  # the same features either way
