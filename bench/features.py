"""Features micro-benchmark: events/s of fold_features and ItemModels.apply, bytes per profile.

In-process and pure: a realistic shop stream (sessions of page views, product views, clicks,
adds, removals, cart views and orders of 1–4 products; Zipf-popular items in 24 categories
and 60 brands; half the events omit category and brand, so the catalog lookup is used;
countries in ``context.location``; a few events carry a session id) is generated and decoded
into typed events first. Only the folds are timed: features alone, item models alone, and
both as the processor will call them (fold, then apply with the session key and the
profile's purchases). The process is pinned to core 0.

Sizes: each profile's ``ProfileFeatures`` encoded with msgspec (MessagePack), and the item
models' ``to_bytes``.
Usage: python bench/features.py [--events 200000] [--users 5000] [--items 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, CpuWatch, cpu_busy, machine, median, percentile, pin_to, save

from segue.core.events import Event, to_event
from segue.features import (
    ItemInfo,
    ItemModels,
    ProfileFeatures,
    encode_features,
    fold_features,
    session_key,
)

START = 1_714_521_600.0  # 2024-05-01T00:00:00Z
COUNTRIES = ["DE", "FR", "US", "GB", "ES", "IT", "NL", "BR", "JP", "IN"]


def catalog(items: int, rng: random.Random) -> dict[str, ItemInfo]:
    categories = [f"Cat {c}/Sub {s}" for c in range(6) for s in range(4)]
    return {
        f"sku-{i}": ItemInfo(
            category=rng.choice(categories),
            brand=f"Brand {rng.randrange(60)}",
            price=round(rng.uniform(5, 300), 2),
        )
        for i in range(items)
    }


def make_events(
    events: int, users: int, items: int, seed: int = 42
) -> tuple[list[tuple[int, Event, float]], dict[str, ItemInfo]]:
    """(user, event, event time) in time order, over about two weeks of traffic."""
    rng = random.Random(seed)
    shop = catalog(items, rng)
    ids = list(shop)
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(items)]  # Zipf-like popularity
    country = [rng.choice(COUNTRIES) for _ in range(users)]
    rows: list[tuple[float, int, int, dict[str, Any]]] = []
    span = 14 * 86400.0
    count = 0
    while count < events:
        user = rng.randrange(users)
        t = START + rng.uniform(0, span)
        sid = f"s-{count}" if rng.random() < 0.2 else None
        cart: list[str] = []
        for _ in range(rng.randint(3, 25)):
            if count >= events:
                break
            t += rng.uniform(5, 180)
            count += 1
            rows.append(
                (t, count, user, _message(rng, ids, weights, shop, cart, sid, country[user]))
            )
    rows.sort()
    decoded = [(user, to_event(message), t) for t, _, user, message in rows]
    return decoded, shop


def _message(
    rng: random.Random,
    ids: list[str],
    weights: list[float],
    shop: dict[str, ItemInfo],
    cart: list[str],
    sid: str | None,
    country: str,
) -> dict[str, Any]:
    context: dict[str, Any] = {"location": {"country": country}}
    if sid is not None:
        context["sessionId"] = sid
    base = {"type": "track", "messageId": "m", "anonymousId": "a", "context": context}
    roll = rng.random()
    if roll < 0.33:
        return {**base, "type": "page", "name": "Home", "properties": {"path": "/"}}
    if roll < 0.36:
        return {**base, "type": "identify", "userId": "u", "traits": {"plan": "pro"}}

    def product(pid: str) -> dict[str, Any]:
        info = shop[pid]
        props: dict[str, Any] = {"product_id": pid, "price": info.price, "currency": "EUR"}
        if rng.random() < 0.5:  # half the senders omit what the catalog knows
            props.update(category=info.category, brand=info.brand)
        return props

    pid = rng.choices(ids, weights)[0]
    if roll < 0.70:
        return {**base, "event": "Product Viewed", "properties": product(pid)}
    if roll < 0.80:
        return {**base, "event": "Product Clicked", "properties": product(pid)}
    if roll < 0.89:
        cart.append(pid)
        return {**base, "event": "Product Added", "properties": {**product(pid), "quantity": 1}}
    if roll < 0.91 and cart:
        return {**base, "event": "Product Removed", "properties": product(cart.pop())}
    if roll < 0.95:
        lines = [{**product(p), "quantity": 1} for p in cart[:10]]
        return {**base, "event": "Cart Viewed", "properties": {"products": lines}}
    if roll < 0.97:
        return {**base, "event": "Products Searched", "properties": {"query": "shoes"}}
    bought = cart[:4] or [pid]
    cart.clear()
    lines = [{**product(p), "quantity": rng.randint(1, 3)} for p in bought]
    props = {
        "order_id": f"o-{rng.getrandbits(48)}",
        "revenue": round(sum(shop[p].price or 0.0 for p in bought), 2),
        "currency": "EUR",
        "products": lines,
    }
    return {**base, "event": "Order Completed", "properties": props}


def one_run(
    stream: list[tuple[int, Event, float]], shop: dict[str, ItemInfo], users: int, mode: str
) -> dict[str, Any]:
    profiles = [ProfileFeatures() for _ in range(users)]
    models = ItemModels()
    lookup = shop.get
    t0 = time.perf_counter()
    if mode == "features":
        for user, event, at in stream:
            fold_features(profiles[user], event, at, lookup)
    elif mode == "items":
        for user, event, at in stream:
            models.apply(event, at, f"{user}", None, item_lookup=lookup)
    else:
        for user, event, at in stream:
            f = profiles[user]
            fold_features(f, event, at, lookup)
            models.apply(
                event,
                at,
                session_key(str(user), f),
                None,
                recent_purchases=f.purchased,
                item_lookup=lookup,
            )
    elapsed = time.perf_counter() - t0
    result: dict[str, Any] = {
        "mode": mode,
        "seconds": elapsed,
        "events_per_s": len(stream) / elapsed,
    }
    if mode == "both":
        t1 = time.perf_counter()
        sizes = [len(encode_features(f)) for f in profiles]
        encode_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        blob = models.to_bytes()
        models_encode_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        ItemModels.from_bytes(blob)
        models_decode_s = time.perf_counter() - t1
        result.update(
            bytes_per_profile_mean=sum(sizes) / len(sizes),
            bytes_per_profile_p50=percentile([float(s) for s in sizes], 50),
            bytes_per_profile_p99=percentile([float(s) for s in sizes], 99),
            bytes_per_profile_max=max(sizes),
            encode_us_per_profile=encode_s / len(profiles) * 1e6,
            item_models_bytes=len(blob),
            item_models_encode_ms=models_encode_s * 1e3,
            item_models_decode_ms=models_decode_s * 1e3,
            item_models_sizes=models.sizes(),
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    pin_to(SERVER_CORE)
    busy = cpu_busy()
    t0 = time.perf_counter()
    stream, shop = make_events(args.events, args.users, args.items)
    print(
        f"generated {len(stream):,} events for {args.users:,} users and {args.items:,} items "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {"features": [], "items": [], "both": []}
    with CpuWatch() as watch:
        for i in range(args.runs):
            for mode in runs:
                run = one_run(stream, shop, args.users, mode)
                runs[mode].append(run)
                print(
                    f"  run {i + 1} {mode:>8}: {run['events_per_s']:>10,.0f} events/s", flush=True
                )
    last = runs["both"][-1]
    summary = {
        "events": len(stream),
        "users": args.users,
        "items": args.items,
        "features_events_per_s": median([r["events_per_s"] for r in runs["features"]]),
        "items_events_per_s": median([r["events_per_s"] for r in runs["items"]]),
        "both_events_per_s": median([r["events_per_s"] for r in runs["both"]]),
        "bytes_per_profile_mean": last["bytes_per_profile_mean"],
        "bytes_per_profile_p99": last["bytes_per_profile_p99"],
        "bytes_per_profile_max": last["bytes_per_profile_max"],
        "encode_us_per_profile": last["encode_us_per_profile"],
        "item_models_bytes": last["item_models_bytes"],
        "item_models_encode_ms": last["item_models_encode_ms"],
        "item_models_decode_ms": last["item_models_decode_ms"],
        "item_models_sizes": last["item_models_sizes"],
        "foreign_share": watch.result.get("foreign_share"),
    }
    result = {"machine": machine(), "other_cpu_busy_before": busy, "runs": runs, "summary": summary}
    print(
        f"features: fold_features {summary['features_events_per_s']:,.0f} events/s, "
        f"ItemModels.apply {summary['items_events_per_s']:,.0f} events/s, both "
        f"{summary['both_events_per_s']:,.0f} events/s (median of {args.runs}, one core)\n"
        f"ProfileFeatures: {summary['bytes_per_profile_mean']:,.0f} B mean, "
        f"{summary['bytes_per_profile_p99']:,.0f} B p99, "
        f"{summary['bytes_per_profile_max']:,} B max "
        f"per profile (msgpack; {summary['encode_us_per_profile']:.1f} µs to encode)\n"
        f"ItemModels: {summary['item_models_bytes']:,} B "
        f"(encode {summary['item_models_encode_ms']:.1f} ms, decode "
        f"{summary['item_models_decode_ms']:.1f} ms); {summary['item_models_sizes']}"
    )
    print(f"results in {save('features', result)}")
    return result


if __name__ == "__main__":
    main()
