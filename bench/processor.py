"""Processor benchmark: how fast the event log is folded into profiles, and storage per item.

In-process, no HTTP and no Runtime: a ``SqliteEventLog`` and a ``SqliteProfileStore`` in a
fresh folder, N realistic messages for U users (anonymous browsing, identify with traits that
stitches the anonymous profile into the user's, new devices stitched again, a few aliases)
normalised by the real ingest code (``prepare_message`` + ``to_record``) and appended to the
log, then a ``Processor`` draining it with ``step()`` until it returns 0. Only the drain is
timed. The process is pinned to core 0 (its SQLite threads inherit the pinning).

Sizes are measured after ``PRAGMA wal_checkpoint(TRUNCATE)`` on both files, so the WAL is
empty and everything is in the main database files.
Usage: python bench/processor.py [--events 200000] [--users 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    SERVER_CORE,
    CollectorWatch,
    CpuWatch,
    Traffic,
    cpu_busy,
    machine,
    median,
    pin_to,
    save,
)

from segue.cli.gc_tuning import freeze_startup_heap, tune_gc
from segue.core.model import NewRecord
from segue.ingest.validate import Limits, parse_request, prepare_message, to_record
from segue.processor.service import Processor
from segue.runtime import SystemClock
from segue.storage.sqlite import SqliteEventLog, SqliteProfileStore


def make_records(events: int, users: int) -> list[NewRecord]:
    """Messages as the ingest pipeline would store them (normalised, receivedAt stamped)."""
    traffic = Traffic(users=users, seed=42, prefix="p")
    limits = Limits()
    records: list[NewRecord] = []
    # received over the last events/10,000 s (100 every 10 ms): a log that is behind, as the
    # drain finds it (stamped into the future, the processor would take the last seconds of
    # it for live traffic, in its shorter live batches)
    now = time.time() - events / 100 * 0.01
    for start in range(0, events, 100):
        body = traffic.batch(min(100, events - start))
        parsed = parse_request(body, None)
        received = datetime.fromtimestamp(now, UTC)
        for _, raw in parsed.messages:
            message, event, body = prepare_message(
                raw, parsed, limits=limits, received_at=received, new_id=lambda: "unused"
            )
            records.append(to_record("default", message, event, now, body))
        now += 0.01
    return records


def checkpoint_and_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def table_sizes(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    return {str(name): int(size) for name, size in rows}


async def one_run(records: list[NewRecord], folder: Path) -> dict[str, Any]:
    log = SqliteEventLog(folder)
    store = SqliteProfileStore(folder)
    await log.open()
    await store.open()
    t0 = time.perf_counter()
    for start in range(0, len(records), 1000):
        await log.append(records[start : start + 1000])
    append_s = time.perf_counter() - t0
    processor = Processor(log, store, SystemClock(), b"bench-secret")
    await processor.start()
    steps = 0
    step_s: list[float] = []
    step_n: list[int] = []
    with CpuWatch() as watch, CollectorWatch() as collector:
        t0 = time.perf_counter()
        while True:
            t1 = time.perf_counter()
            if not (n := await processor.step()):
                break
            step_s.append(time.perf_counter() - t1)
            step_n.append(n)
            steps += 1
        drain_s = time.perf_counter() - t0
    tenth = max(1, len(step_s) // 10)
    counts = await store.counts()
    await log.aclose()
    await store.aclose()
    events_bytes = checkpoint_and_size(folder / "events.db")
    state_bytes = checkpoint_and_size(folder / "state.db")
    return {
        "events": processor.processed,
        "batches": steps,
        "drain_s": drain_s,
        "events_per_s": processor.processed / drain_s,
        # the first and last tenth of the batches show how the fold slows down as the state
        # grows (the first batch is a live one: the processor does not know the lag yet)
        "first_tenth_events_per_s": sum(step_n[:tenth]) / sum(step_s[:tenth]),
        "last_tenth_events_per_s": sum(step_n[-tenth:]) / sum(step_s[-tenth:]),
        "events_per_cpu_s": processor.processed / max(0.01, watch.result["own_cpu_s"]),
        "append_s": append_s,
        "append_events_per_s": len(records) / append_s,
        "profiles": counts["profiles"],
        "identities": counts["identities"],
        "events_db_bytes": events_bytes,
        "state_db_bytes": state_bytes,
        "bytes_per_event": events_bytes / len(records),
        "bytes_per_profile": state_bytes / max(1, counts["profiles"]),
        "cpu": watch.result,
        "collector_s": collector.seconds,
        "collections": collector.collections,
        "state_tables": table_sizes(folder / "state.db"),
        "events_tables": table_sizes(folder / "events.db"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    pin_to(SERVER_CORE)
    tune_gc()  # the collector settings `segue serve` and `segue worker` run with
    busy = cpu_busy()
    t0 = time.perf_counter()
    records = make_records(args.events, args.users)
    body_bytes = sum(len(r.body) for r in records) / len(records)
    print(
        f"generated {len(records):,} records for {args.users:,} users in "
        f"{time.perf_counter() - t0:.1f} s (mean JSON body {body_bytes:.0f} B)",
        flush=True,
    )
    # the generated records are the bench's own, not the processor's: out of the collector's
    # reach, as a worker's startup heap is
    freeze_startup_heap()
    runs = []
    for i in range(args.runs):
        folder = Path(tempfile.mkdtemp(prefix="segue-bench-proc-"))
        try:
            run = asyncio.run(one_run(records, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"  run {i + 1}: {run['events_per_s']:,.0f} events/s "
            f"({run['events_per_cpu_s']:,.0f} per CPU-second; first tenth "
            f"{run['first_tenth_events_per_s']:,.0f}/s, last tenth "
            f"{run['last_tenth_events_per_s']:,.0f}/s) "
            f"({run['events']:,} events in {run['drain_s']:.1f} s, {run['profiles']:,} "
            f"profiles, {run['identities']:,} identities); collector "
            f"{run['collector_s']:.2f} s (collections per generation {run['collections']})",
            flush=True,
        )
        runs.append(run)
    last = runs[-1]
    summary = {
        "events": len(records),
        "users": args.users,
        "events_per_s": median([r["events_per_s"] for r in runs]),
        "events_per_cpu_s": median([r["events_per_cpu_s"] for r in runs]),
        "foreign_share": max(r["cpu"]["foreign_share"] for r in runs),
        "profiles": last["profiles"],
        "identities": last["identities"],
        "mean_body_bytes": body_bytes,
        "bytes_per_event": last["bytes_per_event"],
        "bytes_per_profile": last["bytes_per_profile"],
        "timeline_bytes_per_event": last["state_tables"].get("timeline", 0) / len(records),
        "profile_doc_bytes_per_profile": last["state_tables"].get("profiles", 0)
        / max(1, last["profiles"]),
    }
    result = {"machine": machine(), "other_cpu_busy_before": busy, "runs": runs, "summary": summary}
    print(
        f"processor: {summary['events_per_s']:,.0f} events/s (median of {args.runs}); "
        f"{summary['bytes_per_event']:,.0f} B per stored event (mean body "
        f"{body_bytes:.0f} B); {summary['bytes_per_profile']:,.0f} B of state.db per profile "
        f"({summary['profiles']:,} profiles; includes identities and the per-event timeline)"
    )
    print(f"results in {save('processor', result)}")
    return result


if __name__ == "__main__":
    main()
