"""Identity resolution benchmark: identify events with probabilistic matching on.

In-process (no HTTP): a SQLite event log and profile store in a fresh folder. First P
synthetic people arrive as CRM-style identify events (name, birthday, address, sometimes
email/phone; no identifier in common), then A more arrive — half of them new people, half
re-appearances of existing ones under a new anonymous id with typos, swapped day/month, a
missing field — exactly what probabilistic matching is for. Reports, for the A arrivals:
events/s through the processor and the per-event resolution time (p50/p99 of event → its
batch committed, at the processor's default batch size and at 50), plus the pairwise
precision/recall of the merges they caused.

Usage: python bench/identity.py [--profiles 100000] [--arrivals 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import machine, save

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc
from segue.core.model import Identifier, NewRecord
from segue.processor.service import Processor
from segue.runtime import SystemClock
from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore

FIRST = [
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "daniel",
    "nancy",
    "matthew",
    "lisa",
    "anthony",
    "betty",
    "mark",
    "margaret",
    "donald",
    "sandra",
    "steven",
    "ashley",
    "paul",
    "kimberly",
    "andrew",
    "emily",
    "joshua",
    "donna",
    "kenneth",
    "michelle",
    "kevin",
    "carol",
    "brian",
    "amanda",
    "george",
    "melissa",
    "timothy",
    "deborah",
    "ronald",
    "stephanie",
    "edward",
    "rebecca",
    "jason",
    "sharon",
    "jeffrey",
    "laura",
    "ryan",
    "cynthia",
    "jacob",
    "kathleen",
    "gary",
    "amy",
    "nicholas",
    "angela",
    "eric",
    "shirley",
    "jonathan",
    "anna",
    "stephen",
    "brenda",
    "larry",
    "pamela",
    "justin",
    "emma",
    "scott",
    "nicole",
    "brandon",
    "helen",
    "benjamin",
    "samantha",
    "samuel",
    "katherine",
    "gregory",
    "christine",
    "alexander",
    "debra",
    "frank",
    "rachel",
    "patrick",
    "carolyn",
    "raymond",
    "janet",
    "jack",
    "catherine",
    "dennis",
    "maria",
    "jerry",
    "heather",
    "tyler",
    "diane",
    "aaron",
    "ruth",
    "jose",
    "julie",
    "adam",
    "olivia",
    "henry",
    "joyce",
    "nathan",
    "virginia",
]
LAST = [
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
    "gomez",
    "phillips",
    "evans",
    "turner",
    "diaz",
    "parker",
    "cruz",
    "edwards",
    "collins",
    "reyes",
    "stewart",
    "morris",
    "morales",
    "murphy",
    "cook",
    "rogers",
    "gutierrez",
    "ortiz",
    "morgan",
    "cooper",
    "peterson",
    "bailey",
    "reed",
    "kelly",
    "howard",
    "ramos",
    "kim",
    "cox",
    "ward",
    "richardson",
    "watson",
    "brooks",
    "chavez",
    "wood",
    "james",
    "bennett",
    "gray",
    "mendoza",
    "ruiz",
    "hughes",
    "price",
    "alvarez",
    "castillo",
    "sanders",
    "patel",
    "myers",
    "long",
    "ross",
    "foster",
    "jimenez",
    "powell",
    "jenkins",
    "perry",
    "russell",
    "sullivan",
    "bell",
    "coleman",
    "butler",
    "henderson",
    "barnes",
    "gonzales",
    "fisher",
    "vasquez",
    "simmons",
    "romero",
    "jordan",
    "patterson",
    "alexander",
    "hamilton",
    "graham",
    "reynolds",
    "griffin",
    "wallace",
    "moreno",
    "west",
    "cole",
    "hayes",
    "bryant",
    "herrera",
    "gibson",
    "ellis",
    "tran",
    "medina",
    "aguilar",
    "stevens",
    "murray",
    "ford",
    "castro",
    "marshall",
    "owens",
    "harrison",
    "fernandez",
    "mcdonald",
    "woods",
    "washington",
    "kennedy",
]
STREETS = [
    "main",
    "oak",
    "pine",
    "maple",
    "cedar",
    "elm",
    "washington",
    "lake",
    "hill",
    "park",
    "view",
    "spring",
    "river",
    "church",
]
KINDS = ["street", "avenue", "road", "lane", "drive", "court", "place", "way"]
CITIES = [(f"city{i}", f"{10000 + i * 37:05d}", "ST" + str(i % 50)) for i in range(400)]


def person(rng: random.Random) -> dict[str, Any]:
    city, postcode, state = rng.choice(CITIES)
    return {
        "firstName": rng.choice(FIRST).title(),
        "lastName": rng.choice(LAST).title(),
        "birthday": f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": {
            "street": " ".join(
                (str(rng.randint(1, 999)), rng.choice(STREETS).title(), rng.choice(KINDS).title())
            ),
            "city": city.title(),
            "postalCode": postcode,
            "state": state,
        },
    }


def typo(text: str, rng: random.Random) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    op = rng.choice(("drop", "swap", "replace"))
    if op == "drop":
        return text[:i] + text[i + 1 :]
    if op == "swap":
        return text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    return text[:i] + rng.choice("aeiourstln") + text[i + 1 :]


def noisy(traits: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out = msgspec.json.decode(msgspec.json.encode(traits))
    change = rng.choice(("first", "last", "swap_dob", "street", "drop_dob", "none"))
    if change == "first":
        out["firstName"] = typo(out["firstName"], rng)
    elif change == "last":
        out["lastName"] = typo(out["lastName"], rng)
    elif change == "swap_dob":
        y, m, d = out["birthday"].split("-")
        if int(d) <= 12:
            out["birthday"] = f"{y}-{d}-{m}"
    elif change == "street":
        out["address"]["street"] = typo(out["address"]["street"], rng)
    elif change == "drop_dob":
        del out["birthday"]
    return out


def record(offset_hint: int, anonymous_id: str, traits: dict[str, Any], now: float) -> NewRecord:
    message = {
        "type": "identify",
        "messageId": f"m-{anonymous_id}-{offset_hint}",
        "anonymousId": anonymous_id,
        "traits": traits,
        "receivedAt": "2026-01-01T00:00:00.000Z",
    }
    return NewRecord(
        "crm",
        message["messageId"],
        now,
        f"anonymous_id:{anonymous_id}",
        msgspec.json.encode(message),
    )


async def drain(
    processor: Processor, log: SqliteEventLog, appended_at: dict[int, float], latencies: list[float]
) -> int:
    done = 0
    while True:
        before = processor.position
        n = await processor.step()
        if n == 0:
            return done
        now = time.perf_counter()
        latencies.extend(now - appended_at[o] for o in range(before + 1, before + n + 1))
        done += n


async def run(profiles: int, arrivals: int, batch: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="segue-identity-"))
    log, store = SqliteEventLog(folder), SqliteProfileStore(folder)
    await log.open()
    await store.open()
    processor = Processor(log, store, SystemClock(), b"bench-secret", batch_size=1000)
    await processor.start()
    people = [person(rng) for _ in range(profiles)]
    t0 = time.perf_counter()
    now = time.time()
    for start in range(0, profiles, 5000):
        await log.append(
            [
                record(i, f"crm-{i}", people[i], now)
                for i in range(start, min(start + 5000, profiles))
            ]
        )
        await drain(
            processor,
            log,
            {o: 0.0 for o in range(processor.position + 1, processor.position + 5001)},
            [],
        )
    load_s = time.perf_counter() - t0
    # the people generated and the loaded base stay out of the collector's walks, as a
    # processor's startup heap is (`segue serve` / `segue worker` freeze it)
    freeze_startup_heap()
    truth: dict[str, int] = {}
    incoming: list[NewRecord] = []
    for j in range(arrivals):
        if rng.random() < 0.5:
            who = rng.randrange(profiles)
            traits = noisy(people[who], rng)
        else:
            who = profiles + j
            traits = person(rng)
        truth[f"new-{j}"] = who
        incoming.append(record(j, f"new-{j}", traits, now))
    processor._batch_size = batch
    processor.live_batch = batch  # every batch as large as asked, even a live one
    latencies: list[float] = []
    t1 = time.perf_counter()
    for start in range(0, arrivals, batch):
        chunk = incoming[start : start + batch]
        offsets = await log.append(chunk)
        stamp = time.perf_counter()
        appended = {o: stamp for o in offsets if o is not None}
        await drain(processor, log, appended, latencies)
    elapsed = time.perf_counter() - t1
    # quality of the arrivals' links: each arrival should land with its person (or alone)
    found = await store.lookup([Identifier("anonymous_id", k) for k in truth])
    base = await store.lookup([Identifier("anonymous_id", f"crm-{i}") for i in range(profiles)])
    owner_of = {pid: i for ident, pid in base.items() for i in [int(ident.value[4:])]}
    tp = fp = fn = 0
    for key, who in truth.items():
        pid = found[Identifier("anonymous_id", key)]
        landed = owner_of.get(pid)
        if who < profiles:
            tp += landed == who
            fn += landed != who
            fp += landed is not None and landed != who
        else:
            fp += landed is not None
    await log.aclose()
    await store.aclose()
    shutil.rmtree(folder, ignore_errors=True)
    latencies.sort()
    return {
        "profiles": profiles,
        "arrivals": arrivals,
        "batch": batch,
        "load_events_per_s": round(profiles / load_s),
        "events_per_s": round(arrivals / elapsed),
        "resolution_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "resolution_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "per_event_cost_ms": round(elapsed / arrivals * 1000, 3),
        "returning_linked": tp,
        "returning_missed": fn,
        "wrong_links": fp,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--arrivals", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--batch", type=int, action="append", help="processor batch size (default: 1000 and 50)"
    )
    args = parser.parse_args()
    tune_gc()  # the collector settings `segue serve` and `segue worker` run with
    results = []
    for batch in args.batch or (1000, 50):
        res = asyncio.run(run(args.profiles, args.arrivals, batch, args.seed))
        results.append(res)
        print(
            f"batch {batch:>5}: {res['events_per_s']:>6} identify/s against {res['profiles']} "
            f"profiles; resolution p50 {res['resolution_p50_ms']} ms, "
            f"p99 {res['resolution_p99_ms']} ms; per-event cost {res['per_event_cost_ms']} ms; "
            f"returning linked {res['returning_linked']}, missed {res['returning_missed']}, "
            f"wrong links {res['wrong_links']} (initial load {res['load_events_per_s']}/s)",
            flush=True,
        )
    save("identity", {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
