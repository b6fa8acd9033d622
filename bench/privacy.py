"""Privacy-request benchmark: erasure and access export of a person with 10,000 events, and the
per-event cost of crypto-shredding (sealing on append, opening on read).

In-process, no HTTP: a real ``Runtime`` on SQLite in a fresh folder (processor running,
encryption on), background traffic from other people, then P people with E events each
(an identify with name, email and phone, then page views and product events with context).
For each person, ``access`` (the whole export, serialised) and then ``erase`` (every store,
WAL truncations included) are timed; p50 and p99 over the people (with few people, p99 is
the slowest). The sealing cost is timed on the same realistic bodies: ``seal_body`` and
``open_body`` per event, with the data key cached as it is on the hot path. Pinned to core 0.

The same in context: the bench/processor.py traffic appended to a SQLite log in requests of
100 and folded by the processor, with and without sealing (median of 3 runs each).

Usage: python bench/privacy.py [--people 5] [--events 10000] [--background 20000]
    [--drain-events 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, Traffic, machine, percentile, pin_to, save

from segue.core.model import Identifier
from segue.ingest.validate import Limits, ParsedRequest, prepare_message, to_record
from segue.privacy.envelope import open_body, seal_body
from segue.runtime import Runtime
from segue.settings import Settings


def person_batches(p: int, events: int) -> list[bytes]:
    """One person's events as collection request bodies of 100 messages."""
    uid, aid = f"bench-person-{p}", f"bench-anon-{p}"
    context = {
        "ip": "198.51.100.7",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        "page": {"path": "/shoes", "url": "https://shop.example/shoes"},
        "library": {"name": "analytics.js", "version": "5.2.0"},
    }
    messages: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": f"bp{p}-0",
            "userId": uid,
            "anonymousId": aid,
            "traits": {
                "email": f"bench.person{p}@example.org",
                "phone": f"+1415555{p:04d}",
                "firstName": f"Bench{p}",
                "lastName": f"Person{p}",
            },
            "context": context,
        }
    ]
    for i in range(1, events):
        if i % 3 == 0:
            messages.append(
                {
                    "type": "page",
                    "messageId": f"bp{p}-{i}",
                    "userId": uid,
                    "name": "Shoes",
                    "properties": {"path": "/shoes"},
                    "context": context,
                }
            )
        else:
            messages.append(
                {
                    "type": "track",
                    "messageId": f"bp{p}-{i}",
                    "userId": uid,
                    "event": "Product Viewed" if i % 3 == 1 else "Product Added",
                    "properties": {"product_id": f"sku-{i % 500}", "price": 10.0 + i % 90},
                    "context": context,
                }
            )
    return [orjson.dumps({"batch": messages[i : i + 100]}) for i in range(0, len(messages), 100)]


async def ingest(runtime: Runtime, bodies: list[bytes]) -> None:
    for body in bodies:
        await runtime.ingest.collect("default", runtime.ingest.parse(body, None))


async def caught_up(runtime: Runtime) -> None:
    while (await runtime.processor.lag())[0] > 0:
        await asyncio.sleep(0.05)


def sealing_cost(samples: int = 20000) -> dict[str, float]:
    """Microseconds per event to seal and to open realistic bodies (key cached)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    traffic = Traffic(users=2000, seed=11, prefix="s")
    parsed = ParsedRequest(
        write_key=None, messages=[], context=None, integrations=None, sent_at=None, kind=None
    )
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    bodies = []
    for message in traffic.messages(samples):
        msg, event, body = prepare_message(
            orjson.dumps(message), parsed, limits=Limits(), received_at=now, new_id=lambda: "x"
        )
        bodies.append(to_record("default", msg, event, time.time(), body).body)
    aead = AESGCM(os.urandom(32))
    needles = (b'"email"', b'"phone"')
    start = time.perf_counter()
    sealed = [seal_body(b, "k" * 32, aead, needles) for b in bodies]
    seal_us = (time.perf_counter() - start) / samples * 1e6
    keys = {"k" * 32: aead}.get
    start = time.perf_counter()
    for s in sealed:
        open_body(s, keys)
    open_us = (time.perf_counter() - start) / samples * 1e6
    mean_plain = sum(map(len, bodies)) / samples
    mean_sealed = sum(map(len, sealed)) / samples
    return {
        "seal_us_per_event": round(seal_us, 2),
        "open_us_per_event": round(open_us, 2),
        "mean_body_bytes": round(mean_plain, 1),
        "mean_sealed_bytes": round(mean_sealed, 1),
    }


async def drain(records: list[Any], sealed: bool) -> dict[str, float]:
    """Append ``records`` and fold them with the processor, with or without sealing."""
    from segue.privacy.shredding import SealedEventLog
    from segue.processor.service import Processor
    from segue.runtime import SystemClock
    from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore
    from segue.storage.sqlite_keys import SqliteKeyStore

    folder = Path(tempfile.mkdtemp(prefix="segue-bench-seal-"))
    try:
        log: Any = SqliteEventLog(folder)
        if sealed:
            log = SealedEventLog(log, SqliteKeyStore(folder), b"bench-secret", ["email"])
        store = SqliteProfileStore(folder)
        await log.open()
        await store.open()
        start = time.perf_counter()
        for i in range(0, len(records), 100):  # collection-sized appends
            await log.append(records[i : i + 100])
        append_s = time.perf_counter() - start
        processor = Processor(log, store, SystemClock(), b"bench-secret")
        await processor.start()
        start = time.perf_counter()
        while await processor.step():
            pass
        drain_s = time.perf_counter() - start
        await log.aclose()
        await store.aclose()
        n = len(records)
        return {
            "append_us_per_event": round(append_s / n * 1e6, 2),
            "process_us_per_event": round(drain_s / n * 1e6, 2),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def sealing_in_context(events: int) -> dict[str, Any]:
    """Append and processing cost per event with and without sealing (median of 3)."""
    from processor import make_records

    records = make_records(events, max(events // 10, 1))
    out: dict[str, Any] = {}
    for sealed in (False, True, False, True, False, True):
        name = "sealed" if sealed else "plain"
        out.setdefault(name, []).append(await drain(records, sealed))
    return {name: {k: sorted(r[k] for r in runs)[1] for k in runs[0]} for name, runs in out.items()}


async def run(people: int, events: int, background: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="segue-bench-privacy-"))
    try:
        runtime = Runtime(Settings(data=str(folder), admin_key="bench-admin-key-0123456789"))
        await runtime.start()
        traffic = Traffic(users=max(background // 10, 1), seed=3, prefix="bg")
        await ingest(runtime, [traffic.batch(100) for _ in range(background // 100)])
        for p in range(people):
            await ingest(runtime, person_batches(p, events))
        await caught_up(runtime)
        service = runtime.privacy_requests
        access_s: list[float] = []
        erase_s: list[float] = []
        removed: list[int] = []
        sizes: list[int] = []
        for p in range(people):
            who = [Identifier("user_id", f"bench-person-{p}")]
            start = time.perf_counter()
            receipt, export = await service.access(who)
            access_s.append(time.perf_counter() - start)
            sizes.append(len(export))
            assert receipt["events"] == events, receipt
            start = time.perf_counter()
            receipt = await service.erase(who)
            erase_s.append(time.perf_counter() - start)
            removed.append(receipt["stores"]["event_log"]["events"])
            assert removed[-1] == events, receipt
        await runtime.aclose()
        return {
            "people": people,
            "events_per_person": events,
            "background_events": background,
            "access_p50_s": round(percentile(access_s, 50), 3),
            "access_p99_s": round(percentile(access_s, 99), 3),
            "export_bytes_mean": round(sum(sizes) / len(sizes)),
            "erase_p50_s": round(percentile(erase_s, 50), 3),
            "erase_p99_s": round(percentile(erase_s, 99), 3),
            "access_s": [round(x, 3) for x in access_s],
            "erase_s": [round(x, 3) for x in erase_s],
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--background", type=int, default=20_000)
    parser.add_argument("--drain-events", type=int, default=30_000)
    args = parser.parse_args()
    pin_to(SERVER_CORE)
    result = asyncio.run(run(args.people, args.events, args.background))
    result["sealing"] = sealing_cost()
    result["sealing_in_context"] = asyncio.run(sealing_in_context(args.drain_events))
    result["machine"] = machine()
    print(
        f"access export of a person with {args.events:,} events: "
        f"p50 {result['access_p50_s']:.3f} s, p99 {result['access_p99_s']:.3f} s "
        f"({result['export_bytes_mean']:,} B)"
    )
    print(
        f"erasure of a person with {args.events:,} events: "
        f"p50 {result['erase_p50_s']:.3f} s, p99 {result['erase_p99_s']:.3f} s "
        f"({args.people} people, {args.background:,} background events)"
    )
    s = result["sealing"]
    print(
        f"crypto-shredding: seal {s['seal_us_per_event']} µs/event, open "
        f"{s['open_us_per_event']} µs/event (body {s['mean_body_bytes']} B → "
        f"{s['mean_sealed_bytes']} B)"
    )
    c = result["sealing_in_context"]
    print(
        f"append to the SQLite log: {c['plain']['append_us_per_event']} µs/event plain, "
        f"{c['sealed']['append_us_per_event']} µs/event sealed; processor: "
        f"{c['plain']['process_us_per_event']} µs/event plain, "
        f"{c['sealed']['process_us_per_event']} µs/event sealed "
        f"({args.drain_events:,} events, median of 3)"
    )
    print(f"results in {save('privacy', result)}")


if __name__ == "__main__":
    main()
