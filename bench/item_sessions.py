"""Item models with their tables full: what a product view in a new session costs once the
open-session table holds its cap (50,000 by default) and the oldest must make way.

A long-running processor sees new visitors all day, so its session table is full most of
the time. ``ItemModels.apply`` is fed product views, each in a session never seen before
(the worst case for the table), then orders with new order ids (the 10,000 remembered ids).
It prints, per phase of 50,000 views, the views/s and the p50/p99 of the time per 1,000
views; pinned to core 0. Usage: python bench/item_sessions.py [--phases 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, machine, percentile, pin_to, save

from segue.core.events import Event, to_event
from segue.features import ItemModels

START = 1_800_000_000.0
CHUNK = 1000


def track(name: str, **props: Any) -> Event:
    body = {"type": "track", "messageId": "m", "anonymousId": "a", "event": name}
    return to_event({**body, "properties": props})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--views", type=int, default=50_000, help="views per phase")
    args = parser.parse_args()
    pin_to(SERVER_CORE)
    models = ItemModels()
    views = [track("Product Viewed", product_id=f"sku-{i % 2000}") for i in range(CHUNK)]
    n = 0
    phases = []
    for phase in range(args.phases):
        chunks = []
        for _ in range(args.views // CHUNK):
            t = time.perf_counter()
            for view in views:
                models.apply(view, START + n * 0.01, session_key=f"s{n}")
                n += 1
            chunks.append(time.perf_counter() - t)
        per_view = [c / CHUNK * 1e6 for c in chunks]
        result = {
            "phase": phase + 1,
            "sessions_held": len(models.state.sessions),
            "views_per_s": round(args.views / sum(chunks)),
            "p50_us_per_view": round(percentile(per_view, 50), 2),
            "p99_us_per_view": round(percentile(per_view, 99), 2),
        }
        phases.append(result)
        print(
            f"phase {phase + 1}: {result['views_per_s']:,} views/s, per view p50 "
            f"{result['p50_us_per_view']} µs, p99 {result['p99_us_per_view']} µs "
            f"({result['sessions_held']:,} sessions held)",
            flush=True,
        )
    orders = [
        track("Order Completed", order_id=f"o{i}", products=[{"product_id": "sku-1"}])
        for i in range(30_000)
    ]
    t = time.perf_counter()
    for order in orders:
        models.apply(order, START + n * 0.01, session_key=f"s{n}")
        n += 1
    order_us = (time.perf_counter() - t) / len(orders) * 1e6
    print(f"orders with new ids: {order_us:.2f} µs each ({len(models.state.orders):,} ids held)")
    save("item_sessions", {"machine": machine(), "phases": phases, "order_us": order_us})


if __name__ == "__main__":
    main()
