"""Features micro-benchmark: events/s of fold_features and ItemModels.apply, bytes per profile.

In-process and pure: a realistic shop stream (sessions of page views, product views, clicks,
adds, removals, cart views and orders of 1–4 products; Zipf-popular items in 24 categories
and 60 brands; half the events omit category and brand, so the catalog lookup is used;
countries in ``context.location``; a few events carry a session id) is generated and decoded
into typed events first. Only the folds are timed: features alone, item models alone, and
both as the processor will call them — two calls (fold, then apply with the session key and
the profile's purchases) or ``FeatureFolder.fold``, which reads each event once. The process
is pinned to core 0; throughput is given per wall-clock second and per CPU-second (the
latter holds up better on a shared machine). The generated stream is frozen out of the
garbage collector's reach (``gc.freeze``), as a processor holds one batch, not 200k events.

Sizes: each profile's ``ProfileFeatures`` encoded with msgspec (MessagePack), and the item
models' ``to_bytes``.
Usage: python bench/features.py [--events 200000] [--users 5000] [--items 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, CpuWatch, cpu_busy, machine, median, percentile, pin_to, save

from segue.core.events import Event, to_event
from segue.features import (
    FeatureFolder,
    ItemInfo,
    ItemModels,
    ProfileFeatures,
    compact_features,
    decode_features,
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
    """Fold the whole stream into fresh state; ``mode`` says which folds."""
    profiles = [ProfileFeatures() for _ in range(users)]
    names = [f"p_{user:06d}" for user in range(users)]
    models = ItemModels()
    lookup = shop.get
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "features":
        for user, event, at in stream:
            fold_features(profiles[user], event, at, lookup)
    elif mode == "items":
        for user, event, at in stream:
            models.apply(event, at, names[user], None, item_lookup=lookup)
    elif mode == "two_calls":
        for user, event, at in stream:
            f = profiles[user]
            fold_features(f, event, at, lookup)
            models.apply(
                event,
                at,
                session_key(names[user], f),
                None,
                recent_purchases=f.purchased,
                item_lookup=lookup,
            )
    else:
        fold = FeatureFolder(models, item_lookup=lookup).fold
        for user, event, at in stream:
            fold(names[user], profiles[user], event, at)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    result: dict[str, Any] = {
        "mode": mode,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "events_per_s": len(stream) / elapsed,
        "events_per_cpu_s": len(stream) / cpu,
    }
    if mode == "folder":
        end = stream[-1][2]
        for f in profiles:
            compact_features(f, end)
        c1 = time.process_time()
        blobs = [encode_features(f) for f in profiles]
        encode_s = time.process_time() - c1
        c1 = time.process_time()
        for blob in blobs:
            decode_features(blob)
        decode_s = time.process_time() - c1
        sizes = [float(len(blob)) for blob in blobs]
        c1 = time.process_time()
        state = models.to_bytes()
        models_encode_s = time.process_time() - c1
        c1 = time.process_time()
        ItemModels.from_bytes(state)
        models_decode_s = time.process_time() - c1
        result.update(
            bytes_per_profile_mean=sum(sizes) / len(sizes),
            bytes_per_profile_p50=percentile(sizes, 50),
            bytes_per_profile_p99=percentile(sizes, 99),
            bytes_per_profile_max=max(sizes),
            encode_us_per_profile=encode_s / len(profiles) * 1e6,
            decode_us_per_profile=decode_s / len(profiles) * 1e6,
            item_models_bytes=len(state),
            item_models_encode_ms=models_encode_s * 1e3,
            item_models_decode_ms=models_decode_s * 1e3,
            item_models_sizes=models.sizes(),
        )
    return result


MODES = ("features", "items", "two_calls", "folder")


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
    # the pre-decoded stream is millions of objects the processor never holds at once (it
    # decodes a batch at a time): keep the garbage collector from re-scanning them
    gc.freeze()
    print(
        f"generated {len(stream):,} events for {args.users:,} users and {args.items:,} items "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with CpuWatch() as watch:
        for i in range(args.runs):
            for mode in MODES:
                run = one_run(stream, shop, args.users, mode)
                runs[mode].append(run)
                print(
                    f"  run {i + 1} {mode:>9}: {run['events_per_s']:>9,.0f} events/s, "
                    f"{run['events_per_cpu_s']:>9,.0f} per CPU-second",
                    flush=True,
                )
    last = runs["folder"][-1]
    summary: dict[str, Any] = {"events": len(stream), "users": args.users, "items": args.items}
    for mode in MODES:
        summary[f"{mode}_events_per_s"] = median([r["events_per_s"] for r in runs[mode]])
        summary[f"{mode}_events_per_cpu_s"] = median([r["events_per_cpu_s"] for r in runs[mode]])
    for key in (
        "bytes_per_profile_mean",
        "bytes_per_profile_p50",
        "bytes_per_profile_p99",
        "bytes_per_profile_max",
        "encode_us_per_profile",
        "decode_us_per_profile",
        "item_models_bytes",
        "item_models_encode_ms",
        "item_models_decode_ms",
        "item_models_sizes",
    ):
        summary[key] = last[key]
    summary["foreign_share"] = watch.result.get("foreign_share")
    result = {"machine": machine(), "other_cpu_busy_before": busy, "runs": runs, "summary": summary}
    print(f"events/s (median of {args.runs}, one core; wall clock / per CPU-second):")
    labels = {
        "features": "fold_features",
        "items": "ItemModels.apply",
        "two_calls": "both, as two calls",
        "folder": "both, FeatureFolder.fold",
    }
    for mode, label in labels.items():
        print(
            f"  {label:<26} {summary[f'{mode}_events_per_s']:>9,.0f} / "
            f"{summary[f'{mode}_events_per_cpu_s']:>9,.0f}"
        )
    print(
        f"ProfileFeatures (msgpack): {summary['bytes_per_profile_mean']:,.0f} B mean, "
        f"{summary['bytes_per_profile_p50']:,.0f} B p50, "
        f"{summary['bytes_per_profile_p99']:,.0f} B p99, "
        f"{summary['bytes_per_profile_max']:,.0f} B max; encode "
        f"{summary['encode_us_per_profile']:.1f} µs, decode "
        f"{summary['decode_us_per_profile']:.1f} µs\n"
        f"ItemModels: {summary['item_models_bytes']:,} B, encode "
        f"{summary['item_models_encode_ms']:.1f} ms, decode "
        f"{summary['item_models_decode_ms']:.1f} ms; {summary['item_models_sizes']}"
    )
    print(f"results in {save('features', result)}")
    return result


if __name__ == "__main__":
    main()
