"""Candidate scoring benchmark: the probabilistic matcher's inner loop, full versus pruned.

The same synthetic people as ``bench/identity.py`` (P held, A arriving: half new, half
returning with typos), blocked as the processor blocks them (a key shared by more than 100
records yields nothing), term frequencies over the held records, the default model. Every
arrival's candidates are scored twice, as the processor's linker scores them: with
``MatchModel.weigh`` on every pair, and with ``MatchModel.weigh_above``, which stops comparing
a pair once it can no longer reach the review threshold. Prints, per arrival, p50/p99 of the
time to score its candidates, pairs scored per second, the share of pairs pruned, and checks
that both ways keep the same pairs with the same weights.

Then the arrivals are taken in batches of 1, 4, 16, 64 and 1,000 records, and each batch's
pairs are weighed at once (``MatchModel.weigh_many``, what the linker does for batches of
16 records or more) against one by one with ``weigh_above``: µs a pair both ways, with the
same check. The arrays cost about the same whatever the count, so they only pay from a
few hundred pairs.

Usage: python bench/matching.py [--profiles 100000] [--arrivals 5000] [--repeat 3]
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

import numpy as np
from _common import machine, percentile, save
from identity import noisy, person

from segue.identity.matching import (
    MatchModel,
    MatchRecord,
    TermFrequencies,
    blocking_keys,
    presence,
    record_from_traits,
)

_CAP = 100


def _record(traits: dict[str, Any]) -> MatchRecord:
    found = record_from_traits(traits)
    assert found is not None
    return found


def build(
    profiles: int, arrivals: int, seed: int
) -> tuple[list[tuple[MatchRecord, list[MatchRecord]]], TermFrequencies]:
    """Each arrival with the held records its blocking keys bring."""
    rng = random.Random(seed)
    people = [person(rng) for _ in range(profiles)]
    held = [_record(p) for p in people]
    index: dict[str, list[int]] = {}
    tf = TermFrequencies()
    for i, r in enumerate(held):
        tf.add(r)
        for key in blocking_keys(r):
            index.setdefault(key, []).append(i)
    out = []
    for _ in range(arrivals):
        traits = noisy(people[rng.randrange(profiles)], rng) if rng.random() < 0.5 else person(rng)
        query = _record(traits)
        found: dict[int, None] = {}
        for key in blocking_keys(query):
            ids = index.get(key, ())
            if len(ids) <= _CAP:
                found.update(dict.fromkeys(ids))
        out.append((query, [held[i] for i in found]))
    return out, tf


def score_full(
    model: MatchModel, tf: TermFrequencies, query: MatchRecord, cands: list[MatchRecord]
) -> list[float]:
    frequency, floor = tf.frequency, model.possible_weight
    weights = (model.weigh(query, c, frequency) for c in cands)
    return [w for w in weights if w >= floor]


def score_pruned(
    model: MatchModel, tf: TermFrequencies, query: MatchRecord, cands: list[MatchRecord]
) -> list[float]:
    frequency, floor = tf.frequency, model.possible_weight
    mine = presence(query)
    kept = []
    for c in cands:
        w = model.weigh_above(query, c, floor, frequency, mine & presence(c))
        if w is not None and w >= floor:
            kept.append(w)
    return kept


def score_batch(
    model: MatchModel, tf: TermFrequencies, batch: list[tuple[MatchRecord, list[MatchRecord]]]
) -> list[list[float]]:
    """The kept weights of each arrival of ``batch``, its pairs weighed at once."""
    mine = [query for query, _ in batch]
    theirs = [c for _, cands in batch for c in cands]
    first = np.repeat(np.arange(len(batch)), [len(cands) for _, cands in batch])
    exact = np.array([model.exact_weights(q, tf.frequency) for q in mine], dtype=np.float64)
    weights = model.weigh_many(
        mine, first, theirs, np.arange(len(theirs)), exact, model.possible_weight
    ).tolist()
    kept: list[list[float]] = [[] for _ in batch]
    for at, w in zip(first.tolist(), weights, strict=True):
        if w >= model.possible_weight:
            kept[at].append(w)
    return kept


def batches(
    model: MatchModel,
    tf: TermFrequencies,
    work: list[tuple[MatchRecord, list[MatchRecord]]],
    kept: list[list[float]],
    repeat: int,
) -> dict[int, dict[str, float]]:
    """µs a pair, weighed at once per batch against one by one, per batch size."""
    out: dict[int, dict[str, float]] = {}
    pairs = sum(len(c) for _, c in work)
    for size in (1, 4, 16, 64, 1000):
        groups = [work[i : i + size] for i in range(0, len(work), size)]
        found = [k for group in groups for k in score_batch(model, tf, group)]
        assert found == kept, "weighing at once changed what is kept"
        at_once: list[float] = []
        one_by_one: list[float] = []
        for _ in range(repeat):  # alternating, so a drift of the machine hits both
            t0 = time.perf_counter()
            for group in groups:
                score_batch(model, tf, group)
            at_once.append((time.perf_counter() - t0) / pairs * 1e6)
            t0 = time.perf_counter()
            for group in groups:
                for query, cands in group:
                    score_pruned(model, tf, query, cands)
            one_by_one.append((time.perf_counter() - t0) / pairs * 1e6)
        out[size] = {
            "pairs_per_batch": round(pairs / len(groups)),
            "at_once_us_per_pair": round(sorted(at_once)[len(at_once) // 2], 2),
            "one_by_one_us_per_pair": round(sorted(one_by_one)[len(one_by_one) // 2], 2),
        }
        print(
            f"batches of {size:>4} records (~{out[size]['pairs_per_batch']} pairs): at once "
            f"{out[size]['at_once_us_per_pair']} µs a pair, one by one "
            f"{out[size]['one_by_one_us_per_pair']} (median of {repeat})",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--arrivals", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work, tf = build(args.profiles, args.arrivals, args.seed)
    model = MatchModel.default()
    pairs = sum(len(c) for _, c in work)
    pruned = sum(
        model.weigh_above(q, c, model.possible_weight, tf.frequency) is None
        for q, cands in work
        for c in cands
    )
    kept_full = [score_full(model, tf, q, c) for q, c in work]
    kept_pruned = [score_pruned(model, tf, q, c) for q, c in work]
    assert kept_full == kept_pruned, "pruning changed what is kept"
    results: dict[str, Any] = {
        "profiles": args.profiles,
        "arrivals": args.arrivals,
        "pairs": pairs,
        "pairs_per_arrival": round(pairs / len(work), 1),
        "pruned_share": round(pruned / pairs, 3),
        "kept_pairs": sum(len(k) for k in kept_full),
    }
    print(
        f"{args.arrivals} arrivals against {args.profiles} held records: {pairs} candidate "
        f"pairs ({results['pairs_per_arrival']} per arrival), {results['kept_pairs']} at or "
        f"above the review threshold, {results['pruned_share']:.1%} pruned",
        flush=True,
    )
    gc.collect()
    gc.disable()
    for name, scorer in (("weigh", score_full), ("weigh_above", score_pruned)):
        runs = []
        for _ in range(args.repeat):
            per_arrival = []
            t0 = time.perf_counter()
            for query, cands in work:
                start = time.perf_counter()
                scorer(model, tf, query, cands)
                per_arrival.append(time.perf_counter() - start)
            elapsed = time.perf_counter() - t0
            runs.append(
                {
                    "pairs_per_s": round(pairs / elapsed),
                    "us_per_pair": round(elapsed / pairs * 1e6, 2),
                    "arrival_p50_ms": round(percentile(per_arrival, 50) * 1000, 3),
                    "arrival_p99_ms": round(percentile(per_arrival, 99) * 1000, 3),
                }
            )
        best = sorted(runs, key=lambda r: r["us_per_pair"])[len(runs) // 2]
        results[name] = {"median_run": best, "runs": runs}
        print(
            f"{name:>12}: {best['pairs_per_s']:>8} pairs/s ({best['us_per_pair']} µs a pair); "
            f"per arrival p50 {best['arrival_p50_ms']} ms, p99 {best['arrival_p99_ms']} ms "
            f"(median of {args.repeat} runs)",
            flush=True,
        )
    results["batches"] = batches(model, tf, work, kept_pruned, args.repeat)
    gc.enable()
    save("matching", {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
