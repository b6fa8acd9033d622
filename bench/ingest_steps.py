"""The CPU of ingest's steps for one event, in process: what an API process spends on each
message of a ``/v1/batch`` request before the event log's writer thread takes over.

Realistic Segment batches of 100 messages (``Traffic``: pages, tracks, identifies with
traits, aliases; 2,000 people, so data keys are cached as on a warm server) go through:

1. ``parse_request`` (the request body into its raw messages);
2. ``prepare_message`` and ``to_record`` (normalise, validate into the typed event, the
   log record);
3. ``SealedEventLog.append`` (the crypto envelope: each event's personal members sealed
   with its person's data key), onto a log that stores nothing, so only sealing is timed.

HTTP, the consent screen and the SQLite append are not in these figures:
``bench/ingest_http.py`` measures the whole. Each step is timed over the same 20,000
messages, best of ``--repeat`` passes (machines are noisy; the best pass is the step's own
cost), with the collector off during the timing as the server's batch work mostly is.
Pinned to core 0.

Usage: python bench/ingest_steps.py [--messages 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, Traffic, machine, pin_to, save

from segue.core.model import NewRecord
from segue.ingest.validate import Limits, parse_request, prepare_message, to_record
from segue.privacy.shredding import SealedEventLog
from segue.settings import Settings
from segue.storage.memory_keys import MemoryKeyStore


class _Nowhere:
    """A log that stores nothing: only the sealing in front of it is timed."""

    async def append(self, records: Sequence[NewRecord]) -> list[int | None]:
        return [None] * len(records)


def best_us(step: Callable[[], Any], events: int, repeat: int) -> float:
    """The fastest of ``repeat`` passes, in µs an event."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    pin_to(SERVER_CORE)
    traffic = Traffic(2000)
    bodies = [
        msgspec.json.encode({"batch": [traffic.message() for _ in range(100)]})
        for _ in range(args.messages // 100)
    ]
    events = len(bodies) * 100
    limits, received = Limits(), datetime.now(UTC)
    parsed = [parse_request(body, None) for body in bodies]

    def prepare() -> list[NewRecord]:
        records = []
        for request in parsed:
            for _, raw in request.messages:
                message, event, body = prepare_message(
                    raw, request, limits=limits, received_at=received, new_id=lambda: "x"
                )
                records.append(to_record("default", message, event, 0.0, body))
        return records

    records = prepare()
    batches = [records[i : i + 100] for i in range(0, len(records), 100)]
    sealed = SealedEventLog(
        _Nowhere(),  # type: ignore[arg-type]
        MemoryKeyStore(),
        b"bench-secret",
        Settings().privacy.personal_properties,
    )

    async def seal_all() -> None:
        for batch in batches:
            await sealed.append(batch)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(seal_all())  # every person's data key created and cached
    figures = {
        "parse_request_us": best_us(
            lambda: [parse_request(b, None) for b in bodies], events, args.repeat
        ),
        "prepare_and_record_us": best_us(prepare, events, args.repeat),
        "seal_us": best_us(lambda: loop.run_until_complete(seal_all()), events, args.repeat),
    }
    figures = {k: round(v, 2) for k, v in figures.items()}
    for name, value in figures.items():
        print(f"{name.removesuffix('_us'):>20}: {value:6.2f} µs an event")
    print(f"{'total':>20}: {sum(figures.values()):6.2f} µs an event ({events:,} events)")
    mean_body = sum(len(r.body) for r in records) / len(records)
    save(
        "ingest_steps",
        {"machine": machine(), "events": events, "mean_body_bytes": mean_body, **figures},
    )


if __name__ == "__main__":
    main()
