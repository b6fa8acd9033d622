"""Decide over HTTP on one server process: maximum throughput, latency at 2,000 decisions/s,
and the ratio to a trivial endpoint on the same stack.

The server is pinned to core 0 and the load generators to core 1. It gets a 100,000-item
catalog and a few thousand people with behaviour; each request carries 500 random candidates
(a known person three times out of four). ``wrk`` (bench/wrk_decide.lua, a fresh body per
request) measures the maximum; ``wrk`` on ``GET /healthz`` is the ceiling. The latency
figures come from an open-loop client (the fixed-rate generator of ``ingest_http.py``) that
sends evenly spaced requests, each with fresh candidates, at ``--rate`` (2,000/s, the
issue's load) and at half the measured maximum, and counts latency from each request's
scheduled send time, so queueing is not hidden. (``hey -q`` held the rate before: each of
its workers sends on its own ticker, all in step, so requests came in bursts of 20 and
waited for one another: at 200/s, 10 workers gave p50 10.2 ms where one gave 2.2 ms.)

Usage: python bench/decide_http.py [--items 100000] [--duration 10] [--runs 3] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_KEY, BASIC, CLIENT_CORE, Server, machine, pin_to, save
from ingest_http import fixed_rate, wrk


def post(url: str, path: str, body: dict[str, Any], auth: str) -> None:
    request = urllib.request.Request(
        url + path,
        data=orjson.dumps(body),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": auth},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200, response.status


def load(server: Server, items: int, users: int) -> None:
    rng = random.Random(1)
    for start in range(0, items, 1000):
        post(
            server.url,
            "/v1/catalog/items",
            {
                "items": [
                    {
                        "item_id": f"i{j}",
                        "title": f"Item {j}",
                        "category": f"cat{j % 40}",
                        "brand": f"brand{j % 300}",
                        "price": 5.0 + j % 400,
                        "content": {"web": {"title": f"Item {j}", "url": f"/p/{j}"}},
                    }
                    for j in range(start, min(start + 1000, items))
                ]
            },
            f"Bearer {ADMIN_KEY}",
        )
    for start in range(0, users, 50):
        batch = []
        for u in range(start, min(start + 50, users)):
            for _ in range(6):
                batch.append(
                    {
                        "type": "track",
                        "userId": f"u{u}",
                        "event": "Product Viewed",
                        "properties": {"product_id": f"i{rng.randrange(items)}"},
                    }
                )
            batch.append(
                {
                    "type": "track",
                    "userId": f"u{u}",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": f"o{u}",
                        "products": [{"product_id": f"i{rng.randrange(items)}", "price": 10.0}],
                    },
                }
            )
        post(server.url, "/v1/batch", {"batch": batch}, BASIC)
    server.wait_caught_up()


def bodies(count: int, items: int, users: int, seed: int) -> list[bytes]:
    """Decide requests as the wrk script makes them: 500 random candidates each, a known
    person three times out of four, a random item in the context."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        user = {"user_id": f"u{rng.randrange(users)}"} if n % 4 else {}
        out.append(
            orjson.dumps(
                {
                    "placement": "home",
                    "k": 10,
                    "user": user,
                    "context": {"item_id": f"i{rng.randrange(items)}", "region": "US"},
                    "candidates": [f"i{rng.randrange(items)}" for _ in range(500)],
                }
            )
        )
    return out


def at_rate(server: Server, rate: float, seconds: float, items: int, users: int) -> dict[str, Any]:
    """Decisions at a fixed rate, open loop, from core 1: latency from each scheduled send."""
    requests = bodies(max(1, round(rate * seconds)), items, users, seed=round(rate))
    return asyncio.run(
        fixed_rate(
            server.port,
            requests,
            rate,
            64,
            path="/v1/decide",
            auth=f"Bearer {ADMIN_KEY}",
            answered=lambda payload: payload.startswith(b'{"decision_id":'),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="decisions/s of the fixed-rate run"
    )
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with Server() as server:
        load(server, args.items, args.users)
        pin_to(CLIENT_CORE)  # this process is the fixed-rate client; wrk is pinned there too
        for _ in range(args.runs):
            top = wrk(
                server,
                "/v1/decide",
                "wrk_decide.lua",
                args.duration,
                16,
                args=[str(args.items), str(args.users), ADMIN_KEY],
            )
            ceiling = wrk(server, "/healthz", "wrk_get.lua", args.duration, 16)
            target = at_rate(server, args.rate, args.duration, args.items, args.users)
            half = at_rate(server, top["rps"] / 2, args.duration, args.items, args.users)
            runs.append(
                {
                    "max_rps": top["rps"],
                    "max_p50_ms": top["latency_us"]["p50"] / 1000,
                    "max_p99_ms": top["latency_us"]["p99"] / 1000,
                    "errors": sum(top["errors"].values()),
                    "healthz_rps": ceiling["rps"],
                    "ratio": top["rps"] / ceiling["rps"],
                    "at_rate": target,
                    "at_half_max": half,
                }
            )
    med = {
        k: statistics.median(r[k] for r in runs)
        for k in ("max_rps", "max_p50_ms", "max_p99_ms", "healthz_rps", "ratio")
    }
    keys = ("target_rps", "achieved_rps", "p50_ms", "p99_ms")
    at = {k: statistics.median(r["at_rate"][k] for r in runs) for k in keys}
    half = {k: statistics.median(r["at_half_max"][k] for r in runs) for k in keys}
    print(
        f"decide over HTTP ({args.items} items, 500 candidates): max {med['max_rps']:.0f}/s "
        f"(p50 {med['max_p50_ms']:.2f} ms, p99 {med['max_p99_ms']:.2f} ms), "
        f"/healthz {med['healthz_rps']:.0f}/s, ratio {med['ratio']:.2f}; "
        f"{at['target_rps']:.0f}/s offered: {at['achieved_rps']:.0f}/s answered, "
        f"p50 {at['p50_ms']:.2f} ms, p99 {at['p99_ms']:.2f} ms; "
        f"at half the maximum ({half['target_rps']:.0f}/s): p50 {half['p50_ms']:.2f} ms, "
        f"p99 {half['p99_ms']:.2f} ms (median of {args.runs})"
    )
    save(
        "decide_http",
        {"machine": machine(), "runs": runs, "median": med, "at_rate": at, "at_half_max": half},
    )


if __name__ == "__main__":
    main()
