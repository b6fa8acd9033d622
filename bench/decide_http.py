"""Decide over HTTP on one server process: maximum throughput, latency at 2,000 decisions/s,
and the ratio to a trivial endpoint on the same stack.

The server is pinned to core 0 and the load generators to core 1. It gets a 100,000-item
catalog and a few thousand people with behaviour; each request carries 500 random candidates
(a known person three times out of four). ``wrk`` (bench/wrk_decide.lua, a fresh body per
request) measures the maximum; ``hey -q`` holds 2,000 requests/s for the latency figure;
``wrk`` on ``GET /healthz`` is the ceiling.

Usage: python bench/decide_http.py [--items 100000] [--duration 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_KEY, BASIC, CLIENT_CORE, Server, machine, save
from ingest_http import wrk


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


def hey(server: Server, rate: int, seconds: float, items: int) -> dict[str, float]:
    rng = random.Random(2)
    body = {
        "placement": "home",
        "k": 10,
        "user": {"user_id": "u7"},
        "context": {"item_id": "i3", "region": "US"},
        "candidates": [f"i{rng.randrange(items)}" for _ in range(500)],
    }
    tmp = Path(tempfile.mkdtemp()) / "body.json"
    tmp.write_text(json.dumps(body))
    workers = 20
    cmd = [
        "taskset",
        "-c",
        str(CLIENT_CORE),
        "hey",
        "-z",
        f"{seconds:g}s",
        "-c",
        str(workers),
        "-q",
        str(rate / workers),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-H",
        f"Authorization: Bearer {ADMIN_KEY}",
        "-D",
        str(tmp),
        server.url + "/v1/decide",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    shutil.rmtree(tmp.parent, ignore_errors=True)
    text = out.stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        found = re.search(rf"{pct}%% in ([\d.]+) secs".replace("%%", "%"), text)
        result[f"p{pct}_ms"] = float(found.group(1)) * 1000 if found else float("nan")
    ok = re.search(r"\[200\]\s+(\d+) responses", text)
    result["ok"] = int(ok.group(1)) if ok else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with Server() as server:
        load(server, args.items, args.users)
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
            steady = hey(server, 2000, args.duration, args.items)
            runs.append(
                {
                    "max_rps": top["rps"],
                    "max_p50_ms": top["latency_us"]["p50"] / 1000,
                    "max_p99_ms": top["latency_us"]["p99"] / 1000,
                    "errors": sum(top["errors"].values()),
                    "healthz_rps": ceiling["rps"],
                    "ratio": top["rps"] / ceiling["rps"],
                    "at_2000": steady,
                }
            )
    med = {
        k: statistics.median(r[k] for r in runs)
        for k in ("max_rps", "max_p50_ms", "max_p99_ms", "healthz_rps", "ratio")
    }
    at = {k: statistics.median(r["at_2000"][k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
    print(
        f"decide over HTTP ({args.items} items, 500 candidates): max {med['max_rps']:.0f}/s "
        f"(p50 {med['max_p50_ms']:.2f} ms, p99 {med['max_p99_ms']:.2f} ms), "
        f"/healthz {med['healthz_rps']:.0f}/s, ratio {med['ratio']:.2f}; "
        f"at {at['rps']:.0f}/s: p50 {at['p50_ms']:.2f} ms, p99 {at['p99_ms']:.2f} ms "
        f"(median of {args.runs})"
    )
    save("decide_http", {"machine": machine(), "runs": runs, "median": med, "at_2000": at})


if __name__ == "__main__":
    main()
