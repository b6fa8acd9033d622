"""The SQLite event log's append in process: CPU per record, and the latency of each
group commit, with the random UUID messageIds SDKs send or with ordered ones.

Groups of ``--group`` records (the shape of a ``/v1/batch`` request), ``--concurrent`` of
them in flight at once so group commit shares transactions as it does under HTTP load,
onto a fresh log. De-duplication is part of the cost: the in-memory tier, the lookups in
``dedupe.db`` and the merges into it (``storage/_seen_ids.py``) all run, the merges on their
own thread, counted in the process's CPU. Pinned to core 0. HTTP, validation and sealing are
not in these figures (``bench/ingest_http.py``, ``bench/ingest_steps.py``).

Usage: python bench/log_append.py [--records 600000] [--ids uuid|sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SERVER_CORE, machine, percentile, pin_to, save

from segue.core.model import NewRecord
from segue.storage.sqlite import SqliteEventLog


async def run(records: int, group: int, concurrent: int, ids: str) -> dict[str, float]:
    body = os.urandom(300).hex().encode()  # about the size of a sealed page event
    counter = 0

    def message_id() -> str:
        nonlocal counter
        counter += 1
        return str(uuid.uuid4()) if ids == "uuid" else f"msg-{counter:012d}"

    groups = [
        [NewRecord("web", message_id(), 1.0, "user_id:1", body) for _ in range(group)]
        for _ in range(records // group)
    ]
    folder = Path(tempfile.mkdtemp(prefix="segue-log-append-"))
    log = SqliteEventLog(folder)
    await log.open()
    latencies: list[float] = []

    async def append(records: list[NewRecord]) -> None:
        started = time.perf_counter()
        await log.append(records)
        latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(groups), concurrent):
        await asyncio.gather(*(append(g) for g in groups[start : start + concurrent]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    merges = log._seen.merges  # what the figure includes
    await log.aclose()
    shutil.rmtree(folder, ignore_errors=True)  # ~0.3 GB at the default size
    stored = len(groups) * group
    return {
        "records": stored,
        "cpu_us_per_record": cpu / stored * 1e6,
        "records_per_s": stored / wall,
        "append_p50_ms": percentile(latencies, 50) * 1e3,
        "append_p99_ms": percentile(latencies, 99) * 1e3,
        "merges": merges,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--group", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=10)
    parser.add_argument("--ids", choices=["uuid", "sequential"], default="uuid")
    args = parser.parse_args()
    pin_to(SERVER_CORE)
    result = asyncio.run(run(args.records, args.group, args.concurrent, args.ids))
    print(
        f"log append ({args.ids} ids): {result['cpu_us_per_record']:.2f} µs of CPU a record, "
        f"{result['records_per_s']:,.0f} records/s; group commit p50 "
        f"{result['append_p50_ms']:.2f} ms, p99 {result['append_p99_ms']:.2f} ms; "
        f"{result['merges']} merges into dedupe.db"
    )
    path = save("log_append", {"machine": machine(), "ids": args.ids, **result})
    print(f"results in {path}")


if __name__ == "__main__":
    main()
