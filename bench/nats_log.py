"""NATS JetStream event log benchmark: append and read throughput, append latency.

In-process against the local nats-server (``nats://127.0.0.1:4222``), on a fresh stream that
is deleted afterwards. Records carry a realistic 600-byte Segment body and 5,000 distinct
keys (so every partition is used). Measured:

- sequential appends of batches of 100 (one caller): records/s, p50/p99 per call;
- appends of a single record (one caller): p50/p99 per call, the latency a lone
  ``POST /v1/track`` adds;
- 8 concurrent callers appending batches of 100: records/s (what the API processes of one
  host produce under load);
- ``read(after, 1000)`` over the whole log, as the processor scans it: records/s;
- ``get`` of 1,000 random offsets (timelines): records/s;
- the SQLite log on the same appends, for comparison (``--no-sqlite`` skips it).

The client runs pinned to core 1 when the machine has two cores; the server runs where it
runs. Usage: python bench/nats_log.py [--records 50000] [--url nats://127.0.0.1:4222]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CLIENT_CORE, percentile, pin_to

from segue.core.model import NewRecord
from segue.storage.nats_log import NatsEventLog
from segue.storage.sqlite import SqliteEventLog

BODY = (
    b'{"type":"track","event":"Product Viewed","userId":"%s","anonymousId":"a-%s",'
    b'"properties":{"product_id":"sku-1234","category":"shoes","price":89.5,"currency":"EUR",'
    b'"name":"Trail runner","brand":"Acme","variant":"blue","position":3},'
    b'"context":{"ip":"198.51.100.7","userAgent":"Mozilla/5.0 (X11; Linux x86_64) '
    b'Firefox/128.0","page":{"path":"/shoes","url":"https://shop.example/shoes",'
    b'"referrer":"https://search.example/?q=shoes"},"locale":"de-DE"},'
    b'"timestamp":"2026-11-27T10:00:00.000Z","receivedAt":"2026-11-27T10:00:00.120Z"}'
)


def records(prefix: str, n: int) -> list[NewRecord]:
    out = []
    for i in range(n):
        user = f"u{i % 5000}"
        body = BODY % (user.encode(), user.encode())
        out.append(NewRecord("web", f"{prefix}-{i}", time.time(), f"user_id:{user}", body))
    return out


async def appends(log: Any, batches: list[list[NewRecord]]) -> tuple[float, list[float]]:
    """Append the batches one after another: records/s and per-call seconds."""
    took: list[float] = []
    started = time.perf_counter()
    for batch in batches:
        t = time.perf_counter()
        await log.append(batch)
        took.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed, took


async def concurrent(log: Any, batches: list[list[NewRecord]], callers: int) -> float:
    queue = list(reversed(batches))

    async def caller() -> None:
        while queue:
            await log.append(queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


async def bench_nats(url: str, n: int) -> dict[str, Any]:
    stream = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    log = NatsEventLog(f"{url}?stream={stream}")
    await log.open()
    try:
        out: dict[str, Any] = {}
        recs = records("seq", n)
        rate, took = await appends(log, [recs[i : i + 100] for i in range(0, n, 100)])
        out["append_100_records_per_s"] = rate
        out["append_100_p50_ms"] = percentile(took, 50) * 1000
        out["append_100_p99_ms"] = percentile(took, 99) * 1000
        singles = records("one", 2000)
        _, took = await appends(log, [[r] for r in singles])
        out["append_1_p50_ms"] = percentile(took, 50) * 1000
        out["append_1_p99_ms"] = percentile(took, 99) * 1000
        recs = records("conc", n)
        out["append_100_x8_records_per_s"] = await concurrent(
            log, [recs[i : i + 100] for i in range(0, n, 100)], 8
        )
        dupes = records("seq", n)  # every one already stored
        rate, _ = await appends(log, [dupes[i : i + 100] for i in range(0, n, 100)])
        out["append_100_duplicates_per_s"] = rate
        head = await log.last_offset()
        started = time.perf_counter()
        at, seen = 0, 0
        while page := await log.read(at, 1000):
            seen += len(page)
            at = page[-1].offset
        out["read_1000_records_per_s"] = seen / (time.perf_counter() - started)
        wanted = random.sample(range(1, head + 1), 1000)
        started = time.perf_counter()
        got = await log.get(wanted)
        out["get_1000_random_records_per_s"] = len(got) / (time.perf_counter() - started)
        out["records_stored"] = head
        return out
    finally:
        nc = log._client
        await nc.jetstream().delete_stream(stream)
        await log.aclose()


async def bench_sqlite(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        log = SqliteEventLog(Path(folder))
        await log.open()
        recs = records("seq", n)
        rate, took = await appends(log, [recs[i : i + 100] for i in range(0, n, 100)])
        recs = records("conc", n)
        conc = await concurrent(log, [recs[i : i + 100] for i in range(0, n, 100)], 8)
        started = time.perf_counter()
        at, seen = 0, 0
        while page := await log.read(at, 1000):
            seen += len(page)
            at = page[-1].offset
        read = seen / (time.perf_counter() - started)
        await log.aclose()
    return {
        "append_100_records_per_s": rate,
        "append_100_p50_ms": percentile(took, 50) * 1000,
        "append_100_p99_ms": percentile(took, 99) * 1000,
        "append_100_x8_records_per_s": conc,
        "read_1000_records_per_s": read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--url", default=os.environ.get("SEGUE_TEST_NATS", "nats://127.0.0.1:4222"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    pin_to(CLIENT_CORE)
    results = {"nats": asyncio.run(bench_nats(args.url, args.records))}
    if not args.no_sqlite:
        results["sqlite"] = asyncio.run(bench_sqlite(args.records))
    for backend, figures in results.items():
        print(f"{backend}:")
        for name, value in figures.items():
            print(
                f"  {name:34s} {value:12,.1f}"
                if isinstance(value, float)
                else f"  {name:34s} {value:12,}"
            )


if __name__ == "__main__":
    main()
