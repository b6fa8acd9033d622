"""Decide latency in process: 100,000 items, 100,000 profiles' worth of signals, 500 candidates.

Builds the engine on in-memory parts exactly as the server wires it (catalog mirror, item
models behind the snapshot view, the Thompson-sampling ranker, the SQLite decision log),
with item models trained on synthetic traffic so neighbour and popularity lists are full,
then times ``DecideEngine.decide`` for a mix of known people (with cart, purchases and
affinities) and strangers, each request with 500 candidates. The candidates are decoded from
JSON just before each call, outside the timing: fresh strings whose hashes are not computed
yet, as a server has them (reusing one set of string objects made lookups look cheaper than
they are over HTTP), in a request that dies after the call. Prints p50/p99, decisions/s
(the inverse of the mean decide time) and the collector's time over the loop.

With ``--catalog-writes N`` one item's stock changes before every Nth decision, as a shop's
stock updates arrive between decisions.

With ``--gap-ms G`` the process sleeps G ms before each decision (outside the timing), as a
server does between requests at a low rate: back to back, the catalog columns, the row
table and the interpreter's own working set stay in the CPU's caches; after a pause other
work on the machine has evicted part of them, and a decision pays to bring them back
(2026-12-08, this VM: p50 0.40 → 0.88 ms with 10 ms gaps, the same when the gap is spent
spinning instead of sleeping).

Usage: python bench/decide.py [--items 100000] [--requests 20000] [--catalog-writes N]
    [--gap-ms G]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import CollectorWatch, machine, save

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc
from segue.core.events import to_event
from segue.core.model import Item
from segue.decide.catalog_view import CatalogView
from segue.decide.engine import DecideEngine, DecideRequest
from segue.decide.item_view import ItemView
from segue.decide.signals import PersonSignals
from segue.features.items import ItemModels
from segue.privacy.policy import RegionPolicy
from segue.privacy.service import ConsentService
from segue.privacy.signals import Signal
from segue.storage.memory_consent import MemoryConsentStore
from segue.storage.sqlite_decisions import SqliteDecisionStore


class Clock:
    def now(self) -> float:
        return 1_800_000_000.0


def build(n_items: int, seed: int) -> tuple[CatalogView, ItemModels]:
    rng = random.Random(seed)
    categories = [f"cat{c}" for c in range(40)]
    view = CatalogView()
    view.upsert(
        Item(
            item_id=f"i{j}",
            title=f"Item {j}",
            category=categories[j % 40],
            brand=f"brand{j % 300}",
            price=float(5 + j % 400),
            tags=[f"t{j % 50}"],
            stock=None if j % 97 else 0,
            content={"web": {"title": f"Item {j}"}},
        )
        for j in range(n_items)
    )
    models = ItemModels()
    now = 1_800_000_000.0 - 3600
    for s in range(20_000):  # sessions: a few views in one category, sometimes an order
        cat = rng.randrange(40)
        viewed = [f"i{rng.randrange(n_items // 40) * 40 + cat}" for _ in range(4)]
        key = f"s{s}"
        for pid in viewed:
            event = to_event(
                {
                    "type": "track",
                    "messageId": "m",
                    "userId": key,
                    "event": "Product Viewed",
                    "properties": {"product_id": pid, "category": f"cat{cat}"},
                }
            )
            models.apply(event, now, key, "DE")
        if s % 5 == 0:
            event = to_event(
                {
                    "type": "track",
                    "messageId": "m",
                    "userId": key,
                    "event": "Order Completed",
                    "properties": {
                        "order_id": f"o{s}",
                        "products": [{"product_id": p, "price": 10.0} for p in viewed[:2]],
                    },
                }
            )
            models.apply(event, now, key, "DE")
        now += 0.1
    return view, models


async def run(
    n_items: int, requests: int, seed: int, catalog_writes: int = 0, gap_ms: float = 0.0
) -> dict[str, Any]:
    view, models = build(n_items, seed)
    rng = random.Random(seed)
    people = {
        f"u{p}": PersonSignals(
            purchased=frozenset(f"i{rng.randrange(n_items)}" for _ in range(20)),
            cart=frozenset(f"i{rng.randrange(n_items)}" for _ in range(2)),
            recent=tuple(f"i{rng.randrange(n_items)}" for _ in range(10)),
            categories=dict([(f"cat{rng.randrange(40)}", 1.0), (f"cat{rng.randrange(40)}", 0.5)]),
            brands={f"brand{rng.randrange(300)}": 1.0},
        )
        for p in range(2000)
    }

    async def find(user: dict[str, str]) -> tuple[str | None, list[str]]:
        uid = user.get("user_id")
        return (uid, [f"user_id:{uid}"]) if uid in people else (None, [])

    async def signals(pid: str) -> PersonSignals | None:
        return people.get(pid)

    consent = ConsentService(MemoryConsentStore(), RegionPolicy({}), Clock())
    await consent.start()
    for p in range(0, 2000, 10):
        await consent.record(
            [f"user_id:u{p}"], Signal(purposes={"personalization": True}), source="api", actor="b"
        )
    folder = Path(tempfile.mkdtemp(prefix="segue-decide-"))
    decisions = SqliteDecisionStore(folder)
    await decisions.open()
    engine = DecideEngine(
        view,
        ItemView(models, threading.Lock()),
        find,
        signals,
        # the real consent gate, over a ledger that holds a choice for a tenth of the people
        consent.gate,
        # the store `segue serve` writes the decision log to: its writes (on a thread of
        # its own, the same core here) are part of a decision's cost
        decisions,
        Clock(),
        seed=seed,
    )
    pool = [f"i{j}" for j in range(n_items)]
    reqs = []
    raw_candidates: list[bytes] = []
    for r in range(requests):
        user = {"user_id": f"u{rng.randrange(2000)}"} if r % 4 else {"anonymous_id": f"a{r}"}
        reqs.append(
            DecideRequest(
                placement="home",
                user=user,
                k=10,
                context={"item_id": f"i{rng.randrange(n_items)}"},
                candidates=rng.sample(pool, 500),
            )
        )
        raw_candidates.append(msgspec.json.encode(reqs[-1].candidates))
    for r in reqs[:200]:  # warm up
        await engine.decide(r)
    # as `segue serve` freezes its startup heap (catalog, models) once it has started
    freeze_startup_heap()
    times = []
    decode = msgspec.json.Decoder(list[str]).decode
    inside = 0.0  # the collector's time within the timed calls
    write = 0
    with CollectorWatch() as collector:
        for n, (r, raw) in enumerate(zip(reqs, raw_candidates, strict=True)):
            if catalog_writes and n % catalog_writes == 0:
                # a stock change, as `PUT /v1/catalog/items/{id}` makes it (outside the
                # timing: what it costs the next decision is timed)
                item = view.items[f"i{write % n_items}"]
                view.upsert([msgspec.structs.replace(item, stock=(write % 5) or None)])
                write += 1
            # the candidates as a server has them: strings just decoded from the request
            # body, their hashes not computed yet (decoded outside the timing, as HTTP does)
            # and a request of its own that dies after it, as a server's does: kept on the
            # prepared requests, the decoded lists piled up in the young generation and
            # made each young collection walk ~300,000 references (4–8 ms)
            request = msgspec.structs.replace(r, candidates=decode(raw))
            if gap_ms:
                time.sleep(gap_ms / 1000)  # idle, as a server between requests
            before = collector.seconds
            t0 = time.perf_counter()
            await engine.decide(request)
            times.append(time.perf_counter() - t0)
            inside += collector.seconds - before
            del request
    elapsed = sum(times)
    await engine.aclose()
    await decisions.aclose()
    shutil.rmtree(folder, ignore_errors=True)
    times.sort()
    return {
        "items": n_items,
        "requests": requests,
        "catalog_write_every": catalog_writes or None,
        "gap_ms": gap_ms,
        "candidates": 500,
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 3),
        "decisions_per_s": round(requests / elapsed),
        # all of the collector's time over the timed loop, in and between the calls: a
        # collection moved out of a call still counts here
        "collector_ms_per_1000": round(collector.seconds / requests * 1e6, 2),
        "collector_inside_ms_per_1000": round(inside / requests * 1e6, 2),
        "collections": collector.collections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--catalog-writes",
        type=int,
        default=0,
        metavar="N",
        help="change one item's stock before every Nth decision (0: no catalog writes)",
    )
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        metavar="G",
        help="sleep G ms before each decision, outside the timing (a server at a low rate)",
    )
    args = parser.parse_args()
    tune_gc()  # the collector settings `segue serve` runs with
    result = asyncio.run(
        run(args.items, args.requests, args.seed, args.catalog_writes, args.gap_ms)
    )
    writes = f", a stock change every {args.catalog_writes}" if args.catalog_writes else ""
    if args.gap_ms:
        writes += f", {args.gap_ms:g} ms idle before each"
    print(
        f"decide in process: {result['items']} items, 500 candidates{writes}: "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['decisions_per_s']} decisions/s; collector "
        f"{result['collector_ms_per_1000']} ms per 1,000 decisions "
        f"({result['collector_inside_ms_per_1000']} inside them; collections per generation "
        f"{result['collections']})"
    )
    save("decide_gap" if args.gap_ms else "decide", {"machine": machine(), "result": result})


if __name__ == "__main__":
    main()
